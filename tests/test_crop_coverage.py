"""benchmarks.crop_coverage: where a predicted mask ends in the crop, on hand-made masks and through the runtime on a
masked and an unmasked astronaut with a real (tiny) .tflite."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mask2face.benchmarks import crop_coverage
from mask2face.edge_runtime.safeio import save_image
from test_inpaint import masked_astronaut
from test_model import make_tiny_tflite

skimage_data = pytest.importorskip("skimage.data")


def test_mask_extent_says_where_the_mask_ends_and_whether_the_crop_cuts_it():
    m = np.zeros((100, 100), bool)
    assert crop_coverage.mask_extent(m, 3) is None
    m[60:90, 20:80] = True
    assert crop_coverage.mask_extent(m, 3) == {"bottom": 0.9, "left": 0.2, "right": 0.8, "touches_bottom": False,
                                               "touches_side": False}
    m[60:100, 1:80] = True
    e = crop_coverage.mask_extent(m, 3)
    assert e["bottom"] == 1.0 and e["touches_bottom"] and e["touches_side"]
    s = crop_coverage.summarize([e, crop_coverage.mask_extent(m[:, ::-1] & (np.arange(100) < 90)[:, None], 3)])
    assert s["faces"] == 2 and s["touches_bottom"] == 0.5 and s["touches_side"] == 1.0
    assert crop_coverage.summarize([]) == {"faces": 0}


def test_the_bench_measures_restored_faces_only_and_writes_one_row(tmp_path):
    photos = tmp_path / "photos"
    save_image(photos / "masked.png", masked_astronaut())
    save_image(photos / "bare.png", skimage_data.astronaut())
    model = make_tiny_tflite(tmp_path)
    assert crop_coverage.main(["--photos", str(photos), "--model", str(model), "--results", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "crop_coverage.jsonl").read_text())
    assert row["faces"] == 1 and row["photos"] == 2        # the bare astronaut is not restored, so not measured
    assert row["touches_bottom"] == 0.0 and 0.5 < row["bottom_quantiles"]["p50"] < 1.0   # the ellipse sits inside
    assert row["machine"]["cores"] >= 1 and row["crop"] > 0


def test_an_empty_folder_is_one_clear_line(tmp_path, capsys):
    assert crop_coverage.main(["--photos", str(tmp_path), "--no-save"]) == 2
    assert "no .jpg/.png photos" in capsys.readouterr().err
