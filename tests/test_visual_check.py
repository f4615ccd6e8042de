"""benchmarks.visual_check: the sheet and JSON from a real (tiny) .tflite on photos with a masked, an unmasked and
no face, plus an unreadable file; the output guard; no TensorFlow import."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from mask2face.benchmarks import visual_check
from mask2face.edge_runtime.safeio import load_image, save_image
from test_inpaint import masked_astronaut
from test_model import make_tiny_tflite

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def sheet(tmp_path_factory):
    root = tmp_path_factory.mktemp("vc")
    photos = root / "photos"
    save_image(photos / "a_masked.png", masked_astronaut())
    save_image(photos / "b_unmasked.png", skimage_data.astronaut())
    save_image(photos / "c_coffee.jpg", skimage_data.coffee())
    (photos / "d_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    model = make_tiny_tflite(root)
    out = root / "out" / "grid.png"
    records = visual_check.run(model, photos, out, n=0, cols=2, cell=100)
    return out, records


def test_records_count_faces_pasted_and_low_confidence(sheet):
    out, records = sheet
    assert json.loads(out.with_suffix(".json").read_text()) == records
    by = {r["file"]: r for r in records}
    assert by["a_masked.png"]["faces"] == 1 and by["a_masked.png"]["pasted"] == 1
    assert by["a_masked.png"]["low_confidence"] == 0 and by["a_masked.png"]["reasons"] == []
    assert by["b_unmasked.png"]["faces"] == 1 and by["b_unmasked.png"]["pasted"] == 0
    assert by["b_unmasked.png"]["low_confidence"] == 1 and by["b_unmasked.png"]["reasons"][0]
    assert by["c_coffee.jpg"]["faces"] == 0 and by["c_coffee.jpg"]["pasted"] == 0
    assert "error" in by["d_broken.jpg"]


def test_sheet_layout_and_content(sheet):
    out, _ = sheet
    img = load_image(out)
    cell_h, cell_w = 100 + visual_check.LABEL_H, 200
    assert img.shape == (2 * cell_h, 2 * cell_w, 3)                     # 3 readable photos, 2 per row
    masked = img[visual_check.LABEL_H:cell_h, :cell_w]
    before, after = masked[:, :100].astype(int), masked[:, 100:].astype(int)
    blue = lambda x: ((x[..., 2] > 200) & (x[..., 0] < 60) & (x[..., 1] < 60)).sum()
    assert blue(before) > 50 and blue(after) < blue(before) / 10     # the mask is gone in the output half
    near = lambda x, c: np.all(x == c, axis=-1).sum()                 # boxes are drawn on the shrunk photo
    assert near(masked[:, :100], visual_check.PASTED) > 20             # the pasted face's box, green
    unmasked = img[visual_check.LABEL_H:cell_h, cell_w:]
    assert near(unmasked[:, :100], visual_check.SKIPPED) > 20          # the untouched face's box, orange
    assert near(unmasked[:, :100], visual_check.PASTED) == 0
    # Its output half is the photo itself, exactly (nothing pasted; PNG is lossless); 2 px of white gutter.
    ref = visual_check._fit(skimage_data.astronaut(), 100, 100)[0]
    assert np.array_equal(unmasked[:, 100:198], ref[:, :98])


def test_out_inside_repo_is_refused(tmp_path, capsys):
    inside = visual_check.REPO / "grid.png"
    rc = visual_check.main(["--model", str(tmp_path / "m.tflite"), "--photos", str(tmp_path), "--out", str(inside)])
    assert rc == 2 and "inside the repository" in capsys.readouterr().err and not inside.exists()
    rc = visual_check.main(["--model", str(tmp_path / "m.tflite"), "--photos", str(tmp_path / "none"),
                            "--out", str(tmp_path / "g.png")])
    assert rc == 2 and "not a folder" in capsys.readouterr().err


def test_sample_is_seeded(tmp_path):
    for i in range(10):
        (tmp_path / f"{i}.jpg").write_bytes(b"")
    a = visual_check.pick_photos(tmp_path, 4, seed=1)
    assert a == visual_check.pick_photos(tmp_path, 4, seed=1) and a == sorted(a) and len(a) == 4
    assert len(visual_check.pick_photos(tmp_path, 0, 0)) == 10


def test_imports_no_tensorflow(tmp_path):
    code = ("import sys, mask2face.benchmarks.visual_check; "
            "sys.exit(any(m.split('.')[0] in ('tensorflow', 'tf_keras') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path).returncode == 0
