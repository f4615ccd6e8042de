"""End to end, as a user runs it: `mask2face pipeline` on the smoke preset, then `mask2face remove` with the
exported student. Faces come from skimage.data.astronaut() (ships in a dependency), so CI needs no data."""

from __future__ import annotations

import json
import subprocess

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _faces_folder(root):
    """24 photos of 'people' (folders): the astronaut under different scales, shifts, tilts and brightness."""
    from skimage import data

    base = data.astronaut()  # RGB 512x512, one face
    rng = np.random.default_rng(0)
    for person in range(8):
        folder = root / f"person_{person:02d}"
        folder.mkdir(parents=True)
        for k in range(3):
            angle, scale = rng.uniform(-12, 12), rng.uniform(0.8, 1.1)
            m = cv2.getRotationMatrix2D((256 + rng.uniform(-20, 20), 200), angle, scale)
            img = cv2.warpAffine(base, m, (512, 512), borderMode=cv2.BORDER_REFLECT101)
            img = np.clip(img * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"person_{person:02d}_{k:04d}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return root


def test_pipeline_smoke_then_remove(tmp_path):
    faces = _faces_folder(tmp_path / "faces")
    run = tmp_path / "run"
    r = subprocess.run(["mask2face", "pipeline", "--preset", "smoke", "--faces", str(faces), "--run", str(run)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    # Every stage left its manifest, and the export folder holds every precision with embedded metadata.
    for stage in ("data", "teacher", "student", "qat", "export"):
        assert (run / stage / "manifest.json").is_file(), stage
    assert json.loads((run / "config.json").read_text())["preset"] == "smoke"
    exported = {p.name for p in (run / "export").glob("*.tflite")}
    for name in ("teacher-fp32", "student-fp32", "student-fp16", "student-dynamic", "student-int8",
                 "student-qat-int8"):
        assert f"{name}.tflite" in exported
    from mask2face.edge_runtime import tflite_file
    meta = json.loads(tflite_file.read(run / "export" / "student-qat-int8.tflite").metadata["mask2face"])
    assert meta["input_size"] == [32, 32] and meta["output_channels"] == ["r", "g", "b", "mask"]
    # the framing the pairs were made in (the smoke preset's: align.WIDE_FRAMING) travels with the model file
    assert meta["framing"] == {"eye_line": 0.30, "eye_distance": 0.25}
    assert json.loads((run / "data" / "dataset.json").read_text())["config"]["eye_line"] == 0.30

    # The benchmark table was made from rows, one per artifact.
    rows = [json.loads(line) for line in (run / "bench" / "rows.jsonl").read_text().splitlines()]
    assert len(rows) >= len(exported)

    # A second run of the same command skips finished work and still succeeds.
    r2 = subprocess.run(["mask2face", "pipeline", "--preset", "smoke", "--faces", str(faces), "--run", str(run),
                         "--until", "train"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r2.returncode == 0, r2.stderr[-3000:]

    # The exported student runs in the TensorFlow-free runtime on a whole photo.
    photo = next(faces.rglob("*.jpg"))
    out = tmp_path / "restored"
    r3 = subprocess.run(["mask2face", "remove", str(photo), "--out", str(out), "--model",
                         str(run / "export" / "student-fp32.tflite")], capture_output=True, text=True, cwd=tmp_path,
                        timeout=300)
    assert r3.returncode == 0, r3.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 1
    assert list(out.rglob("*.jpg")), "remove wrote no image"
