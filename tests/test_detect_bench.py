"""benchmarks.detect_bench --generated: pairs written in the real pairs format (from scikit-image's astronaut, dlib
landmarks, train.masks) are pasted back into their source photo and the runtime detector must find the face where
the pair's crop says it is; a pair whose source holds no face must count as a miss."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from mask2face.benchmarks import detect_bench
from mask2face.train import pairs
from mask2face.edge_runtime import align, detect
from mask2face.edge_runtime.safeio import load_image, save_image

skimage_data = pytest.importorskip("skimage.data")
pytest.importorskip("dlib")
SIZE = 128


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory):
    """photos/{astro,astro_flip,coffee}.png and data/test/shard-00000.{npz,json}: 3 pairs, the last one pointing at
    a face-free photo (its masked crop pasted there adds mask pixels but no face)."""
    from mask2face.train import faces, masks

    root = tmp_path_factory.mktemp("gen")
    rng = np.random.default_rng(0)
    astro = skimage_data.astronaut()
    photos = {"astro.png": astro, "astro_flip.png": astro[:, ::-1].copy(), "coffee.png": skimage_data.coffee()}
    for name, im in photos.items():
        save_image(root / "photos" / name, im)
    masked, clean, mask, meta = [], [], [], []
    for name, kind in (("astro.png", "surgical"), ("astro_flip.png", "cloth")):
        det = faces.detect(photos[name], "hog")
        assert det.landmarks is not None
        m = align.jitter(align.similarity_from_eyes(*align.eye_centers_from_68(det.landmarks), SIZE), SIZE, 0.04, rng)
        c = align.crop(photos[name], m, SIZE)
        lm = align.transform_points(m, det.landmarks)
        mk, ms, info = masks.render(c, lm, kind, int(rng.integers(2 ** 31)))
        masked.append(mk), clean.append(c), mask.append(ms)
        meta.append({"source": f"photos/{name}", "landmarks": np.round(lm, 2), "matrix": np.round(m, 5), **info})
    # The face-free photo: reuse the first pair's crop, placed mid-picture.
    m = np.array([[0.5, 0, -100.0], [0, 0.5, -50.0]])
    masked.append(masked[0]), clean.append(clean[0]), mask.append(mask[0])
    meta.append({**meta[0], "source": "photos/coffee.png", "matrix": m})
    pairs.write_shard(root / "data" / "test" / pairs.shard_name(0), np.stack(masked), np.stack(clean),
                      np.stack(mask), meta)
    return root


def test_rebuild_pastes_only_the_mask(pair_dir):
    masked, mask, meta = next(detect_bench.iter_pairs(pair_dir / "data", "test"))
    photo = load_image(pair_dir / meta["source"])
    out = detect_bench.rebuild_photo(photo, masked, mask, np.array(meta["matrix"]))
    changed = np.any(out != photo, axis=-1)
    # The mask warped into the photo (nearest) covers what changed, and the crop's masked pixels come back.
    inv = align.invert(np.array(meta["matrix"]))
    region = cv2.warpAffine(cv2.dilate(mask, np.ones((3, 3), np.uint8)), inv, photo.shape[1::-1]) > 0
    assert changed.any() and not (changed & ~region).any()
    back = align.crop(out, np.array(meta["matrix"]), SIZE)
    inner = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
    assert np.abs(back[inner].astype(int) - masked[inner].astype(int)).mean() < 6


def test_generated_records_find_the_pair_face(pair_dir):
    det = detect.FaceDetector(threads=2)
    recs = detect_bench.generated_records(pair_dir / "data", "test", pair_dir, det)
    assert [r["source"] for r in recs] == ["photos/astro.png", "photos/astro_flip.png", "photos/coffee.png"]
    for r in recs[:2]:
        assert r["faces"] == 1 and r["processed"], r
        # Jitter (<= 0.04 shift, 4% scale, 0.04 rad) plus detector error, well inside the 0.15 tolerance ...
        assert r["offset"] < 0.1
        # ... and against the pair's own dlib eyes (no jitter) the calibrated BlazeFace eyes are close.
        assert r["landmark_offset"] < 0.06
    assert recs[2]["faces"] == 0 and not recs[2]["processed"]
    s = detect_bench.summarise_generated(recs, 0.15)
    assert s["photos"] == 3 and s["found"] == pytest.approx(2 / 3) and s["processed"] == pytest.approx(2 / 3)
    assert s["failures"] == [{"source": "photos/coffee.png", "faces": 0, "offset": None, "stage": None}]


def test_tolerance_decides_processed(pair_dir):
    det = detect.FaceDetector(threads=2)
    recs = detect_bench.generated_records(pair_dir / "data", "test", pair_dir, det, limit=1, tolerance=1e-4)
    assert len(recs) == 1 and recs[0]["faces"] == 1 and not recs[0]["processed"]


def test_cli_row_and_dump_guard(pair_dir, tmp_path, capsys):
    with pytest.raises(SystemExit, match="inside the repository"):
        detect_bench.main(["--generated", str(pair_dir / "data"), "--photos-root", str(pair_dir), "--no-save",
                           "--dump", str(detect_bench.REPO / "dump")])
    assert not (detect_bench.REPO / "dump").exists()
    assert detect_bench.main(["--generated", str(pair_dir / "data"), "--photos-root", str(pair_dir), "--no-save",
                              "--dump", str(tmp_path / "fails")]) == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert summary["photos"] == 3 and summary["processed"] == pytest.approx(2 / 3)
    assert [p.name for p in (tmp_path / "fails").iterdir()] == ["0002-coffee.jpg"]   # only the miss is dumped


def _voc(boxes) -> str:
    objects = "".join(f"<object><name>con_mascarilla</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
                      f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for b in boxes)
    return f"<annotation>{objects}</annotation>"


def test_bench_what_detect_hands_over_and_writes_where_told(tmp_path, repo_root):
    """`mask2face bench --what detect --data D --out R` (a real subprocess) runs the shipped cascade on D's photos
    against D/annotations and appends its row to R, not to the source tree: one annotated box on the astronaut's
    face and one on empty sky gives recall 1/2 exactly. Options that mean nothing there are one-line errors."""
    import subprocess
    import sys

    from test_inpaint import astronaut_with_drawn_mask
    _, masked, _ = astronaut_with_drawn_mask()
    face = detect.FaceDetector(threads=1).detect(masked)[0]
    folder = tmp_path / "photos"
    (folder / "annotations").mkdir(parents=True)
    save_image(folder / "astro.png", masked)
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    (folder / "annotations" / "astro.xml").write_text(_voc([(x0, y0, x1, y1), (400, 10, 480, 90)]))
    shipped = (repo_root / "benchmarks" / "results" / "detect.jsonl").read_bytes()
    cmd = [sys.executable, "-m", "mask2face.cli", "bench", "--what", "detect"]
    r = subprocess.run(cmd + ["--data", str(folder), "--out", str(tmp_path / "res")], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads((tmp_path / "res" / "detect.jsonl").read_text().splitlines()[-1])
    assert row["photos"] == 1 and row["found"] == 1.0 and row["recall_boxes"] == 2 and row["recall"] == 0.5
    assert (repo_root / "benchmarks" / "results" / "detect.jsonl").read_bytes() == shipped
    for extra, message in ((["--models", "m.tflite"], "drop --models"), (["--model", "m.tflite"], "unrecognized")):
        r = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


def test_uncorrect_eyes_inverts_the_eye_correction():
    from mask2face.benchmarks.photo_bench import uncorrect_eyes
    left, right = np.array([101.3, 87.2]), np.array([161.9, 95.4])
    raw = uncorrect_eyes(left, right)
    assert np.abs(raw - np.stack([left, right])).max() > 0.5            # the correction moves eyes by ~1-2 px here
    np.testing.assert_allclose(np.stack(detect.correct_eyes(raw[0], raw[1])), np.stack([left, right]), atol=1e-6)


def test_photo_bench_scores_whole_photos_against_the_bare_source(pair_dir):
    """Input scores are the masked photo against its bare source over the drawn mask's region (checked here by
    hand); aligned by the pair's own crop, every masked crop (even the one pasted into the coffee picture) is
    restored and beats the input by a wide margin; the detector finds the two astronauts, not the pasted crop."""
    from mask2face.benchmarks import photo_bench
    from mask2face.train import metrics
    from mask2face.edge_runtime.inpaint import Inpainter
    inpainter = Inpainter.from_file(None, threads=1)
    by_pair = photo_bench.measure(inpainter, pair_dir / "data", 0, photos_root=pair_dir, align_by="pair")
    assert by_pair["photos"] == 3 and by_pair["restored"] == 1.0
    inputs = []
    for masked, mask, meta in detect_bench.iter_pairs(pair_dir / "data", "test"):
        truth = load_image(pair_dir / meta["source"])
        matrix = np.asarray(meta["matrix"], np.float64)
        region = photo_bench.mask_in_photo(mask, matrix, truth.shape[:2])
        assert 0.5 < region.sum() / (mask > 127).sum() * (matrix[0, 0] ** 2 + matrix[0, 1] ** 2) < 2
        inputs.append(metrics.psnr(detect_bench.rebuild_photo(truth, masked, mask, matrix), truth, region[..., None]))
    assert by_pair["input_psnr_masked"] == pytest.approx(np.mean(inputs), abs=1e-9)
    assert by_pair["psnr_masked"] > by_pair["input_psnr_masked"] + 3
    by_detector = photo_bench.measure(inpainter, pair_dir / "data", 0, photos_root=pair_dir)
    assert by_detector["faces_found"] == pytest.approx(2 / 3), by_detector


def test_stage_lists_are_checked_by_argparse():
    import argparse

    from mask2face.benchmarks.detect_bench import stages_arg
    assert stages_arg("centerface, full") == ("centerface", "full")
    for bad in ("full,bogus", "", ","):
        with pytest.raises(argparse.ArgumentTypeError, match="unknown detector stage"):
            stages_arg(bad)


def test_a_calibration_writes_its_correction_where_the_runtime_reads_it(tmp_path):
    import shutil

    from mask2face.benchmarks.detect_bench import write_eye_correction
    from mask2face.edge_runtime.detectors import face
    table = tmp_path / "eye_corrections.json"
    shutil.copy(face.CORRECTIONS_FILE, table)
    row = {"correction": {"left": (0.01, -0.002), "right": (-0.04, -0.008)}, "stages": ["full"], "refined": True,
           "pairs_used": 12, "mean_error_before": 0.05, "mean_error_after": 0.04, "created": "2026-12-04T00:00:00"}
    write_eye_correction("full_range", row, table)
    loaded = face.load_eye_corrections(table)
    assert loaded["full_range"] == {"left": (0.01, -0.002), "right": (-0.04, -0.008)}
    assert loaded["centerface"] == face.CENTERFACE_EYE_CORRECTION          # the other model's entry is kept
    assert face.load_eye_corrections() == face.EYE_CORRECTIONS == detect.EYE_CORRECTIONS   # what the runtime uses
