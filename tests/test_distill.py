"""The whole compress chain on synthetic smoke pairs: train -> distill (loss goes down) -> qat -> export -> bench."""
import functools
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from pathlib import Path

import numpy as np
import pytest


def synth_pairs(data_dir: Path, size=32, counts=(("train", 32), ("val", 8), ("test", 8)), seed=0):
    """Smooth synthetic faces-like images with a rectangular 'mask': no shared data needed, nothing copied."""
    from mask2face.train import pairs
    from mask2face.runs import write_json
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for split, n in counts:
        clean = np.empty((n, size, size, 3), np.uint8)
        masked, mask = clean.copy(), np.zeros((n, size, size), np.uint8)
        for i in range(n):
            c, g = rng.uniform(0.2, 0.8, 3), rng.uniform(-0.3, 0.3, (2, 3))
            img = c + xx[..., None] * g[0] + yy[..., None] * g[1] + 0.15 * np.sin(
                xx[..., None] * rng.uniform(3, 9) + rng.uniform(0, 6))
            clean[i] = np.clip(img * 255, 0, 255)
            top = rng.integers(size // 2, size * 3 // 4)
            m = np.zeros((size, size), bool)
            m[top:size - 2, size // 5:size * 4 // 5] = True
            mask[i] = m * 255
            masked[i] = clean[i]
            masked[i][m] = rng.integers(0, 255, 3)
        pairs.write_shard(Path(data_dir) / split / pairs.shard_name(0), masked, clean, mask,
                          [{"identity": f"{split}{i}"} for i in range(n)])
    write_json(Path(data_dir) / "dataset.json", {"splits": dict(counts), "config_hash": f"synthetic-{seed}-{size}"})


def cli(*argv):
    from mask2face.cli import main
    assert main(list(argv)) == 0, argv


@functools.lru_cache(maxsize=1)
def smoke_run() -> Path:
    """One run directory shared by the slow tests of this process (train/distill/qat/export take ~2 min)."""
    import tempfile
    run = Path(tempfile.mkdtemp(prefix="m2f-compress-"))
    synth_pairs(run / "data")
    cli("train", "--preset", "smoke", "--run", str(run))
    cli("distill", "--preset", "smoke", "--run", str(run), "distill.epochs=3")
    cli("qat", "--preset", "smoke", "--run", str(run))
    cli("export", "--preset", "smoke", "--run", str(run))
    return run


@pytest.mark.slow
def test_distill_lowers_its_loss_and_logs_components():
    from mask2face.runs import read_json
    run = smoke_run()
    rep = read_json(run / "student" / "distill_report.json")
    before, after = rep["components_before"], rep["components_after"]
    assert set(before) >= {"task_ssim", "task_l1", "task_mask_bce", "teacher_match", "total"}
    assert after["total"] < before["total"], (before, after)
    assert (run / "student" / "teacher_cache-train.npz").exists()
    assert (run / "student" / "manifest.json").exists()


@pytest.mark.slow
def test_distill_start_from_fine_tunes_a_trained_student(tmp_path):
    """Fine-tuning on your own faces: the student starts from a trained one (its loss before the first step is the
    trained student's, not an untrained model's), and the manifest names it as a parent."""
    from mask2face.runs import read_json
    run = smoke_run()
    source = run / "student" / "best.keras"
    mine = tmp_path / "mine"
    mine.mkdir()
    for part in ("data", "teacher"):
        (mine / part).symlink_to(run / part)
    cli("distill", "--preset", "smoke", "--run", str(mine), "distill.epochs=1", f"distill.start_from={source}")
    trained = read_json(run / "student" / "distill_report.json")["components_after"]["total"]
    untrained = read_json(run / "student" / "distill_report.json")["components_before"]["total"]
    before = read_json(mine / "student" / "distill_report.json")["components_before"]["total"]
    assert before == pytest.approx(trained, rel=1e-3) and before < untrained
    assert str(source) in read_json(mine / "student" / "manifest.json")["parents"]


@pytest.mark.slow
def test_distill_resume_is_a_no_op_when_finished(capsys):
    run = smoke_run()
    mtime = (run / "student" / "best.keras").stat().st_mtime
    cli("distill", "--preset", "smoke", "--run", str(run), "distill.epochs=3")
    assert (run / "student" / "best.keras").stat().st_mtime == mtime


def test_u8_targets_scale():
    from mask2face.compress.distill import U8Targets
    t = U8Targets(np.array([[0, 255, 51]], np.uint8))
    assert len(t) == 1 and t.shape == (1, 3)
    np.testing.assert_allclose(t[np.array([0])], [[0, 1, 0.2]], atol=1e-6)


@pytest.mark.slow
def test_feature_matching_trains_and_saves_a_plain_student():
    """distill.feature_weight>0: 1x1 adapters match teacher features during training; best.keras is the student
    alone (same layers as a plain student), and the feature term is among the logged components' effect."""
    from mask2face.runs import read_json
    from mask2face.train.models import load_model
    run = smoke_run()
    out = run / "student-features"
    cli("distill", "--preset", "smoke", "--run", str(run), "--out", str(out), "distill.epochs=2",
        "distill.feature_weight=0.5")
    plain = load_model(run / "student" / "best.keras")
    featured = load_model(out / "best.keras")
    assert [w.shape for w in featured.get_weights()] == [w.shape for w in plain.get_weights()]
    rep = read_json(out / "distill_report.json")
    assert rep["finished"] and rep["result"]["global_step"] == 2 * 8
    # the saved student is the trained one inside the wrapper (weights copied back, adapters left out)
    import tf_keras as keras
    wrapper = keras.models.load_model(out / "wrapper" / "best.keras", compile=False, safe_mode=False)
    taps = wrapper.get_layer("student_taps").get_weights()
    for a, b in zip(featured.get_weights(), taps):
        np.testing.assert_array_equal(a, b)
    assert any(l.name.startswith("adapter") for l in wrapper.layers)
    assert not any(l.name.startswith("adapter") for l in featured.layers)
    x = np.full((1, 32, 32, 3), 0.5, np.float32)
    assert np.isfinite(featured(x).numpy()).all()
