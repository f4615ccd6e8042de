"""`mask2face web`: serve the browser page and the shipped models on localhost, with no Python dependency beyond
the edge runtime's.

    mask2face web                       # prints http://127.0.0.1:8765/ ; open it, drop a photo
    mask2face web --port 0 --no-open    # any free port (tests)

Paths served: the page (this folder), /models/ (the .tflite files that ship in edge_runtime/assets), /runtime.json
(edge_runtime.runtime_spec: every threshold and blend setting the page uses) and /litert/ (LiteRT.js from npm,
found in LITERTJS_DIRS; the page works offline once it is there). Every response is sent cross-origin isolated
(COOP/COEP), which lets LiteRT.js run its multi-threaded WASM build.
"""

from __future__ import annotations

import http.server
import json
import os
import threading
import webbrowser
from functools import partial
from pathlib import Path

from mask2face.edge_runtime.errors import Mask2FaceError
from mask2face.edge_runtime.inpaint import ASSETS
from mask2face.edge_runtime.runtime_spec import runtime_spec

PAGE = Path(__file__).resolve().parent
LITERTJS_VERSION = "2.5.3"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mask2face" / "web"
# Where an `npm ci` / `npm install` put @litertjs: beside the page (a clone: `npm ci --prefix web`) or in the user's
# cache (an installed package: `mask2face web --install`).
LITERTJS_DIRS = (PAGE / "node_modules" / "@litertjs", CACHE / "node_modules" / "@litertjs")
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
         ".html": "text/html; charset=utf-8", ".tflite": "application/octet-stream", ".png": "image/png"}


def litertjs_dir(explicit: Path | None = None) -> Path:
    """The @litertjs folder (holding core/ and wasm-utils/) to serve, or an error that says how to get it."""
    for d in ([explicit] if explicit else []) + [Path(p) for p in os.environ.get("MASK2FACE_LITERTJS", "").split(os.pathsep) if p] + list(LITERTJS_DIRS):
        if (d / "core" / "dist" / "index.js").is_file() and (d / "wasm-utils" / "dist" / "index.js").is_file():
            return d
    raise Mask2FaceError(f"LiteRT.js is not installed: run `mask2face web --install` (npm, once: puts @litertjs/core "
                         f"{LITERTJS_VERSION} in {CACHE}), or from a clone `npm ci --prefix web`")


def install_litertjs() -> Path:
    """npm install @litertjs/core into the user's cache (the one step that needs the npm registry)."""
    import shutil
    import subprocess
    npm = shutil.which("npm")
    if npm is None:
        raise Mask2FaceError("npm is not on PATH: install Node.js (which brings npm), then run `mask2face web --install`")
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run([npm, "install", "--prefix", str(CACHE), "--no-audit", "--no-fund",
                    f"@litertjs/core@{LITERTJS_VERSION}"], check=True)
    return litertjs_dir()


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, litertjs: Path, spec: bytes, **kwargs):
        self.litertjs, self.spec = litertjs, spec
        super().__init__(*args, directory=str(PAGE), **kwargs)

    def translate_path(self, path: str) -> str:
        clean = path.split("?", 1)[0].split("#", 1)[0]
        for prefix, root in (("/models/", ASSETS), ("/litert/", self.litertjs)):
            if clean.startswith(prefix):
                target = (root / clean[len(prefix):]).resolve()
                return str(target) if target.is_relative_to(root.resolve()) else str(root / "missing")
        return super().translate_path(path)

    def do_GET(self):
        if self.path.split("?", 1)[0] == "/runtime.json":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.spec)))
            self.end_headers()
            self.wfile.write(self.spec)
            return
        super().do_GET()

    def guess_type(self, path):
        return TYPES.get(Path(str(path)).suffix, super().guess_type(path))

    def end_headers(self):
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, fmt, *args):   # quiet: one line per request would bury the URL
        pass


def make_server(host: str = "127.0.0.1", port: int = 8765, litertjs: Path | None = None) -> http.server.ThreadingHTTPServer:
    spec = json.dumps(runtime_spec()).encode("utf-8")
    handler = partial(Handler, litertjs=litertjs_dir(litertjs), spec=spec)
    return http.server.ThreadingHTTPServer((host, port), handler)


def cli_main(cfg, args) -> int:
    if args.install:
        print(f"mask2face web: LiteRT.js in {install_litertjs()}")
    try:
        server = make_server(args.host, args.port, args.litertjs)
    except OSError as exc:
        raise Mask2FaceError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}): pick another --port "
                             "(0: any free one)") from exc
    url = f"http://{args.host}:{server.server_address[1]}/"
    print(f"mask2face web: serving the page and the shipped models at {url} (Ctrl-C stops)", flush=True)
    if not args.no_open:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

