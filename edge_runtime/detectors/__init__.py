"""The face detectors of the runtime, a module per job; `edge_runtime/detect.py` is their public face."""
