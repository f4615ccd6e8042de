"""benchmarks.face_sheets: blind sheets from real (tiny) .tflite files on a masked and an unmasked astronaut, the
column key, the tally of a review, and the guards (output inside the repository, a folder with sheets, bad lines)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mask2face.benchmarks import face_sheets
from mask2face.benchmarks.visual_check import REPO
from mask2face.edge_runtime.errors import Mask2FaceError
from mask2face.edge_runtime.inpaint import FaceReport
from mask2face.edge_runtime.safeio import load_image, save_image
from test_inpaint import masked_astronaut
from test_model import make_tiny_tflite

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def sheets(tmp_path_factory):
    root = tmp_path_factory.mktemp("fs")
    photos = root / "photos"
    save_image(photos / "a_masked.png", masked_astronaut())
    save_image(photos / "b_unmasked.png", skimage_data.astronaut())
    model = make_tiny_tflite(root)
    out = root / "sheets"
    key = face_sheets.make_sheets([model, model], photos, out, min_eye_distance=0, rows=2, seed=3)
    return out, key


def test_only_faces_every_model_restores_get_a_row_and_the_key_says_the_order(sheets):
    out, key = sheets
    assert json.loads((out / "key.json").read_text()) == key
    assert [f["photo"] for f in key["faces"]] == ["a_masked.png"]          # the bare astronaut is left alone
    assert sorted(key["faces"][0]["columns"]) == [0, 1]
    sheet = load_image(out / "sheet-001.png")
    assert sheet.shape == (20 + face_sheets.CELL, face_sheets.LABEL_W + 3 * face_sheets.CELL, 3)
    cells = [sheet[20:, face_sheets.LABEL_W + k * face_sheets.CELL:][:, :face_sheets.CELL].astype(int) for k in range(3)]
    blue = lambda x: ((x[..., 2] > 200) & (x[..., 0] < 60) & (x[..., 1] < 60)).sum()
    assert blue(cells[0]) > 50 and blue(cells[1]) < blue(cells[0]) / 10     # input masked, output restored
    np.testing.assert_array_equal(cells[1], cells[2])                       # the same model twice


def test_a_folder_with_sheets_or_inside_the_repository_is_refused(sheets, tmp_path):
    out, key = sheets
    with pytest.raises(Mask2FaceError, match="already holds sheets"):
        face_sheets.make_sheets([tmp_path / "m.tflite"], tmp_path, out)
    assert face_sheets.main(["--model", "m.tflite", "--photos", str(tmp_path),
                             "--out", str(REPO / "faces")]) == 2
    assert not (REPO / "faces").exists()


def test_tally_maps_columns_back_to_models():
    key = {"models": ["old", "new"], "faces": [{"face": 1, "columns": [1, 0]}, {"face": 2, "columns": [0, 1]}]}
    review = [{"face": 1, "column": "A", "lips": True, "nose": True, "rim_or_seam": False, "plausible": True},   # new
              {"face": 1, "column": "B", "lips": True, "nose": True, "rim_or_seam": True},                      # old
              {"face": 2, "column": "A", "lips": False, "nose": True, "colour_blob": True},                      # old
              {"face": 2, "column": "B", "lips": True, "nose": True}]                                           # new
    old, new = face_sheets.tally(review, key)
    assert (old["model"], old["faces"], old["lips_nose_no_rim"], old["rim_or_seam"], old["colour_blob"]) == \
        ("old", 2, 0, 1, 1)
    assert (new["model"], new["faces"], new["lips_nose_no_rim"], new["plausible"]) == ("new", 2, 2, 1)
    assert "**2 (100.0%)**" in face_sheets.tally_table([old, new])
    with pytest.raises(Mask2FaceError, match="no such face or column"):
        face_sheets.tally([{"face": 1, "column": "C"}], key)
    for line in ([1], {"face": [1], "column": "A"}):
        with pytest.raises(Mask2FaceError):
            face_sheets.tally([line], key)
    for bad_key in ([], {"models": ["a"]}, {"models": ["a", "b"], "faces": [{"face": 1, "columns": [0, 2]}]}):
        with pytest.raises(Mask2FaceError, match="--key"):
            face_sheets.tally(review, bad_key)


def test_faces_all_restore_matches_boxes_across_models():
    def report(box, pasted=True, eyes=50.0):
        return FaceReport(box=list(box), score=0.9, stage="full", pasted=pasted, eye_distance=eyes)

    class Result:
        def __init__(self, faces):
            self.faces = faces
    first = Result([report((0, 0, 100, 100)), report((200, 0, 300, 100)), report((400, 0, 500, 100), eyes=20.0)])
    other = Result([report((5, 5, 104, 104)), report((200, 0, 300, 100), pasted=False), report((400, 0, 500, 100))])
    assert face_sheets.faces_all_restore([first, other], min_eye_distance=40) == [0]


def test_blend_settings_are_given_per_model_by_index():
    assert face_sheets.parse_blends(["1:chroma_limit=0.04", "0:rim_clean=0"], 2) == [{"rim_clean": 0.0},
                                                                                    {"chroma_limit": 0.04}]
    for bad in ("2:chroma_limit=0.04", "-1:chroma_limit=0", "x:rim_clean=0", "0:rim_clean=wide", "0:rim_clean=nan"):
        with pytest.raises(Mask2FaceError, match="INDEX:FIELD=VALUE"):
            face_sheets.parse_blends([bad], 2)
