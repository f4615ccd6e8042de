"""The edge runtime runs a full inference without TensorFlow, tf_keras, train or compress ever being imported."""

from __future__ import annotations

import json
import subprocess
import sys

from test_model import make_tiny_tflite

SCRIPT = r"""
import json, sys
import numpy as np
import skimage.data
from mask2face.edge_runtime.inpaint import Inpainter
img = skimage.data.astronaut().copy()
import cv2
cv2.ellipse(img, (226, 150), (38, 26), 0, 0, 360, (0, 0, 255), -1)
res = Inpainter.from_file(sys.argv[1]).remove_detailed(img)
bad = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf_keras", "keras")
             or m.startswith(("mask2face.train", "mask2face.compress")))
print(json.dumps({"pasted": res.pasted, "forbidden": bad}))
"""


def test_full_inference_imports_no_tensorflow(tmp_path):
    model = make_tiny_tflite(tmp_path)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(model)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["pasted"] == 1                     # a real inference ran and blended
    assert result["forbidden"] == []
