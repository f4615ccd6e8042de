"""The browser page: the shipped models run by LiteRT.js (web/index.html, web/mask2face.js), served by `mask2face web`
(web/server.py). The page is a second implementation of the runtime in edge_runtime/; tests/test_web.py holds the
two to the same output."""
