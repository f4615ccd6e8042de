"""Load each .tflite named on the command line through the API, one JSON line per file on stdout.

Run in a subprocess by test_model_fuzz.py: a crash (a negative return code) is then observed, not suffered, and the
"start" line printed before each file names the one that killed the process. `--inpainter` loads through
Inpainter.from_file (with its face detector) instead of Model.from_file.
"""

import json
import sys

import numpy as np

from mask2face.edge_runtime.errors import Mask2FaceError


def load(path: str, inpainter: bool) -> dict:
    if inpainter:
        from mask2face.edge_runtime.inpaint import Inpainter
        model = Inpainter.from_file(path, threads=1).model
    else:
        from mask2face.edge_runtime.model import Model
        model = Model.from_file(path, threads=1)
    y = model.run(np.zeros((1, *model.input_size, 3), np.uint8))
    return {"outcome": "loaded", "verified": model.verified, "finite": bool(np.isfinite(y).all())}


def main(argv: list[str]) -> int:
    inpainter = "--inpainter" in argv
    for path in (a for a in argv if a != "--inpainter"):
        print(json.dumps({"start": path}), flush=True)
        try:
            row = load(path, inpainter)
        except Mask2FaceError as exc:
            row = {"outcome": "rejected", "message": str(exc)}
        except Exception as exc:  # noqa: BLE001 - the test counts these as failures
            row = {"outcome": "exception", "message": f"{type(exc).__name__}: {exc}"}
        print(json.dumps({"file": path, **row}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
