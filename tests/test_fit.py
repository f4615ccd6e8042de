"""train.fit: input order/flip, loss goes down, NaN guard, kill -9 + resume, mirrored strategy, CLI."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import hashlib  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mask2face.train.pairs import write_shard  # noqa: E402
from mask2face.config import ModelConfig, TrainConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def make_fake_pairs(root: Path, size: int = 32, counts=(("train", 24), ("val", 8), ("test", 8)), shard: int = 8,
                    seed: int = 0) -> Path:
    """Smooth random colour patterns as 'faces'; a gray rectangle over the lower part as the 'mask'."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    for split, n in counts:
        for s in range(0, n, shard):
            k = min(shard, n - s)
            clean = np.zeros((k, size, size, 3), np.uint8)
            mask = np.zeros((k, size, size), np.uint8)
            for i in range(k):
                c, f = rng.random(3), rng.uniform(1, 3)
                img = 0.5 + 0.4 * np.sin(f * (xx[..., None] * c + yy[..., None] * (1 - c)) * 6.28)
                clean[i] = (img * 255).astype(np.uint8)
                mask[i, rng.integers(size // 2, size * 3 // 4):, size // 8: size * 7 // 8] = 255
            masked = clean.copy()
            masked[mask > 0] = 128
            write_shard(root / split / f"shard-{s // shard:05d}", masked, clean, mask, [{"i": j} for j in range(k)])
    (root / "dataset.json").write_text(json.dumps({"config_hash": "fake", "splits": [c[0] for c in counts]}))
    return root


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return make_fake_pairs(tmp_path_factory.mktemp("pairs"))


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_order_is_deterministic_and_resume_skips_exactly(pairs_dir):
    from mask2face.train.fit import PairsInput
    a = PairsInput(pairs_dir, "train", 4, flip=True, seed=3)
    b = PairsInput(pairs_dir, "train", 4, flip=True, seed=3)
    assert a.steps_per_epoch == 6
    i0, f0 = a.order(0)
    np.testing.assert_array_equal(i0, b.order(0)[0])
    assert not np.array_equal(i0, a.order(1)[0])             # a new order every epoch
    assert sorted(i0.ravel()) == list(range(24))             # a permutation
    full = [(x.numpy(), y.numpy()) for x, y in a.dataset(1)]
    tail = [(x.numpy(), y.numpy()) for x, y in a.dataset(1, start_step=4)]
    assert len(full) == 6 and len(tail) == 2
    np.testing.assert_array_equal(full[4][0], tail[0][0])
    np.testing.assert_array_equal(full[5][1], tail[1][1])


def test_flip_applies_to_input_and_targets_together(pairs_dir):
    from mask2face.train.fit import PairsInput
    p = PairsInput(pairs_dir, "train", 4, flip=True, seed=0)
    idx, flips = p.order(0)
    assert flips.any() and not flips.all()
    x, y = next(iter(p.dataset(0)))
    x, y = x.numpy(), y.numpy()
    arr = p.arrays
    for j in range(4):
        src = idx[0, j]
        ex = arr["masked"][src].astype(np.float32) / 255
        ey = arr["clean"][src].astype(np.float32) / 255
        em = arr["mask"][src].astype(np.float32) / 255
        if flips[0, j]:
            ex, ey, em = ex[:, ::-1], ey[:, ::-1], em[:, ::-1]
        np.testing.assert_allclose(x[j], ex, atol=1e-6)
        np.testing.assert_allclose(y[j, ..., :3], ey, atol=1e-6)
        np.testing.assert_allclose(y[j, ..., 3], em, atol=1e-6)
    assert set(np.unique(y[..., 3])) <= {0.0, 1.0}


def _fit(pairs_dir, out, epochs=3, lr=3e-3, loss=None, **kw):
    from mask2face.train.fit import PairsInput, fit_model
    from mask2face.train.losses import build_loss
    from mask2face.train.models import build_model
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    tc = TrainConfig(batch_size=4, mask_loss_weight=0.1)
    model = build_model(ModelConfig(filters=(8, 16), kernels=(3, 3)), 32)
    train = PairsInput(pairs_dir, "train", 4, flip=True, seed=0)
    val = PairsInput(pairs_dir, "val", 4, shuffle=False)
    return fit_model(model, train, val, loss or build_loss(tc), out, epochs=epochs, learning_rate=lr,
                     schedule="constant", verbose=False, **kw)


def test_training_lowers_the_loss_and_writes_checkpoints(pairs_dir, tmp_path):
    out = tmp_path / "t"
    result = _fit(pairs_dir, out, epochs=4)
    state = json.loads((out / "state.json").read_text())
    hist = state["history"]
    assert result.finished and result.global_step == 24 and state["global_step"] == 24
    assert hist["4"]["train_loss"] < 0.8 * hist["1"]["train_loss"]
    assert min(h["val_loss"] for h in hist.values()) == pytest.approx(state["best_val_loss"], abs=1e-6)
    for name in ("best.keras", "last.keras", "log.csv", "train_report.json"):
        assert (out / name).is_file(), name
    assert len((out / "log.csv").read_text().splitlines()) == 5
    assert list((out / "logs").glob("events.out.tfevents.*"))
    report = json.loads((out / "train_report.json").read_text())
    assert report["images_per_s"] > 0
    # The saved last.keras carries the optimizer: step counter and Adam moments.
    from mask2face.train.models import load_model
    reloaded = load_model(out / "last.keras", compile=True)
    assert int(reloaded.optimizer.iterations.numpy()) == 24
    # Running again is a no-op: nothing left to do.
    before = _sha(out / "last.keras")
    again = _fit(pairs_dir, out, epochs=4)
    assert again.resumed_from_step == 24 and _sha(out / "last.keras") == before


@pytest.mark.slow
def test_other_settings_refuse_to_resume(pairs_dir, tmp_path):
    from mask2face.edge_runtime.errors import Mask2FaceError
    out = tmp_path / "t"
    _fit(pairs_dir, out, epochs=1)
    with pytest.raises(Mask2FaceError, match="other settings"):
        _fit(pairs_dir, out, epochs=1, lr=1e-2)


def test_nan_guard_keeps_the_last_good_checkpoint(pairs_dir, tmp_path):
    import tensorflow as tf
    from mask2face.train.fit import TrainingDivergedError
    from mask2face.train.losses import build_loss
    base = build_loss(TrainConfig(batch_size=4))
    poison = {"on": False}

    def loss(y_true, y_pred):
        value = base(y_true, y_pred)
        return value * np.nan if poison["on"] else value  # read at trace time: each fit_model traces anew
    loss.__name__ = base.__name__

    out = tmp_path / "t"
    _fit(pairs_dir, out, epochs=3, loss=loss, max_steps=6)      # one good epoch
    good_last, good_best, good_state = _sha(out / "last.keras"), _sha(out / "best.keras"), \
        json.loads((out / "state.json").read_text())
    poison["on"] = True
    with pytest.raises(TrainingDivergedError, match="nan.*last good checkpoint"):
        _fit(pairs_dir, out, epochs=3, loss=loss)
    assert _sha(out / "last.keras") == good_last and _sha(out / "best.keras") == good_best
    state = json.loads((out / "state.json").read_text())
    assert state["global_step"] == good_state["global_step"] == 6
    del tf


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume(tmp_path):
    """SIGKILL a real `mask2face train` after a mid-epoch checkpoint; the same command resumes from it."""
    data = make_fake_pairs(tmp_path / "run" / "data", counts=(("train", 64), ("val", 8), ("test", 8)))
    cmd = [sys.executable, "-m", "mask2face.cli", "train", "--preset", "smoke", "--run", str(tmp_path / "run"),
           "--checkpoint-steps", "3", "train.epochs=6", "teacher.filters=8,16", "teacher.kernels=3,3"]
    state_path = tmp_path / "run" / "teacher" / "state.json"
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed_at = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            st = json.loads(state_path.read_text())
        except (OSError, ValueError):
            st = None
        # Wait for a mid-epoch checkpoint in the second epoch or later.
        if st and st["global_step"] >= 19 and st["step_in_epoch"] and not st["finished"]:
            proc.send_signal(signal.SIGKILL)
            killed_at = st
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert killed_at is not None, "training finished (or failed) before it could be killed: " + \
        proc.stdout.read().decode()[-2000:]
    assert proc.returncode == -signal.SIGKILL
    # The files on disk are complete and consistent after the kill.
    from mask2face.train.models import load_model
    saved = load_model(tmp_path / "run" / "teacher" / "last.keras", compile=True)
    saved_step = int(saved.optimizer.iterations.numpy())
    assert saved_step >= killed_at["global_step"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"resuming from" in out.stderr and f"at step {saved_step} " in out.stderr
    final = json.loads(state_path.read_text())
    assert final["finished"] and final["global_step"] == 6 * 16
    assert sorted(final["history"], key=int) == [str(i) for i in range(1, 7)]
    report = json.loads((tmp_path / "run" / "teacher" / "train_report.json").read_text())
    assert report["sessions"][-1]["from_step"] == saved_step
    manifest = json.loads((tmp_path / "run" / "teacher" / "manifest.json").read_text())
    assert manifest["stage"] == "teacher" and any(o["path"].endswith("best.keras") for o in manifest["outputs"])


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_with_the_adversarial_term(tmp_path):
    data = make_fake_pairs(tmp_path / "data")
    script = textwrap.dedent(f"""
        import os, json
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from mask2face.config import AdversarialConfig, ModelConfig, TrainConfig
        from mask2face.train.fit import PairsInput, fit_model, make_strategy
        from mask2face.train.losses import build_loss
        from mask2face.train.models import build_model
        strategy = make_strategy("mirrored")
        assert strategy.num_replicas_in_sync == 2, strategy.num_replicas_in_sync
        with strategy.scope():
            model = build_model(ModelConfig(filters=(8, 16), kernels=(3, 3)), 32)
        train = PairsInput({str(data)!r}, "train", 4, flip=True)
        val = PairsInput({str(data)!r}, "val", 4, shuffle=False)
        r = fit_model(model, train, val, build_loss(TrainConfig()), {str(tmp_path / 'out')!r}, epochs=3,
                      learning_rate=3e-3, schedule="constant", strategy=strategy, verbose=False,
                      adversarial=AdversarialConfig(weight=0.05, filters=(8, 8)))
        print(json.dumps(r.as_dict()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "train_report.json").read_text())
    assert report["replicas"] == 2 and report["strategy"] == "MirroredStrategy"
    assert (tmp_path / "out" / "discriminator.keras").is_file()   # the adversarial loop ran on both replicas
    hist = report["history"]
    assert hist["3"]["train_loss"] < hist["1"]["train_loss"]


@pytest.mark.slow
def test_cli_main_trains_smoke_run(tmp_path):
    import argparse
    from mask2face import config
    from mask2face.train import fit
    make_fake_pairs(tmp_path / "run" / "data")
    cfg = config.load("smoke", ["train.epochs=1", "teacher.filters=8,16", "teacher.kernels=3,3"])
    args = argparse.Namespace(run=tmp_path / "run", data=None, out=None, strategy=None, checkpoint_minutes=5.0,
                              checkpoint_steps=0)
    assert fit.cli_main(cfg, args) == 0
    teacher = tmp_path / "run" / "teacher"
    assert json.loads((teacher / "config.json").read_text())["preset"] == "smoke"
    assert (tmp_path / "run" / "config.json").is_file()
    assert json.loads((teacher / "manifest.json").read_text())["result"]["finished"]


def test_missing_data_is_a_clear_error(tmp_path):
    import argparse
    from mask2face import config
    from mask2face.edge_runtime.errors import Mask2FaceError
    from mask2face.train import fit
    args = argparse.Namespace(run=tmp_path / "run", data=None, out=None, strategy=None)
    with pytest.raises(Mask2FaceError, match="mask2face data"):
        fit.cli_main(config.load("smoke"), args)


def test_extra_targets_are_appended_for_distillation(pairs_dir):
    from mask2face.train.fit import DataError, PairsInput
    base = PairsInput(pairs_dir, "train", 4)
    teacher_u8 = np.full((24, 32, 32, 4), 51, np.uint8)
    p = PairsInput(None, "train", 4, arrays=base.arrays, extra=teacher_u8)
    x, y = p._gather(np.array([0, 1]), np.array([False, True]))
    assert y.shape == (2, 32, 32, 8) and np.allclose(y[..., 4:], 0.2)
    with pytest.raises(DataError, match="extra targets"):
        PairsInput(None, "train", 4, arrays=base.arrays, extra=teacher_u8[:3])


def test_bare_share_serves_unmasked_pairs_with_identity_targets(pairs_dir):
    from mask2face.train.fit import DataError, PairsInput
    base = PairsInput(pairs_dir, "train", 4, flip=True, seed=5)
    teacher_u8 = np.full((24, 32, 32, 4), 51, np.uint8)
    p = PairsInput(None, "train", 4, flip=True, seed=5, arrays=base.arrays, extra=teacher_u8, bare_share=0.5)
    idx, code = p.order(0)
    np.testing.assert_array_equal(idx, base.order(0)[0])            # same order and flips as without bare pairs
    np.testing.assert_array_equal(code & PairsInput.FLIP, base.order(0)[1])
    bare = (code & PairsInput.BARE) > 0
    assert 0.2 < bare.mean() < 0.8
    x, y = p._gather(idx.ravel(), code.ravel())
    b = bare.ravel()
    np.testing.assert_array_equal(x[b], y[b][..., :3])               # input = truth
    assert y[b][..., 3].max() == 0.0 and y[b][..., 7].max() == 0.0   # nothing masked, for truth and teacher
    np.testing.assert_array_equal(y[b][..., 4:7], y[b][..., :3])     # teacher target = the input itself
    assert np.allclose(y[~b][..., 4:], 0.2)                           # other pairs keep the teacher's output
    assert (x[~b] != y[~b][..., :3]).any()                            # ... and their masked input
    with pytest.raises(DataError, match="bare_share"):
        PairsInput(None, "train", 4, arrays=base.arrays, bare_share=1.0)


def test_degrade_turns_input_and_targets_into_the_same_low_quality_photo(pairs_dir):
    import cv2
    from mask2face.train.fit import DataError, PairsInput, degradation, degrade_image
    base = PairsInput(pairs_dir, "train", 4, flip=True, seed=5, bare_share=0.3)
    teacher_u8 = np.full((24, 32, 32, 4), 51, np.uint8)
    p = PairsInput(None, "train", 4, flip=True, seed=5, arrays=base.arrays, extra=teacher_u8, bare_share=0.3,
                   degrade=0.5)
    idx, code = p.order(0)
    np.testing.assert_array_equal(idx, base.order(0)[0])             # order, flips and bare draws unchanged
    np.testing.assert_array_equal(code & 3, base.order(0)[1])
    deg = ((code & PairsInput.DEGRADE) > 0).ravel()
    assert 0.2 < deg.mean() < 0.8
    x, y = p._gather(idx.ravel(), code.ravel())
    x0, y0 = base._gather(idx.ravel(), code.ravel() & 3)
    np.testing.assert_array_equal(x[~deg], x0[~deg])                  # untouched pairs stay bit-identical
    np.testing.assert_array_equal(y[..., 3], y0[..., 3])              # the mask is never degraded
    assert (np.abs(x[deg] - x0[deg]).max(axis=(1, 2, 3)) > 0).all()
    # input and truth went through the same degradation: outside the mask they agree up to JPEG blocks
    outside = y0[deg][..., 3] == 0
    assert np.abs(x[deg] - y[deg][..., :3]).max(axis=-1)[outside].mean() < 0.02
    # a reference case: scale 0.5 -> INTER_AREA down + bilinear up, then JPEG; less high-frequency energy
    i = int(np.flatnonzero(deg & ((code.ravel() & PairsInput.FLIP) == 0))[0])  # flips come after the degradation
    scale, quality = degradation(int(code.ravel()[i]))
    assert 0.3 <= scale <= 1.0 and 30 <= quality <= 90
    np.testing.assert_array_equal(y[i, ..., :3], degrade_image(y0[i, ..., :3], scale, quality))
    sharp = (np.random.default_rng(0).random((32, 32, 3)) > 0.5).astype(np.float32)
    soft = degrade_image(sharp, 0.5, 90)
    lap = lambda a: np.abs(cv2.Laplacian(a.mean(-1), cv2.CV_32F)).mean()  # noqa: E731
    assert lap(soft) < 0.5 * lap(sharp)
    with pytest.raises(DataError, match="degrade"):
        PairsInput(None, "train", 4, arrays=base.arrays, degrade=1.5)


def test_grow_mask_is_a_disc_max_filter():
    from mask2face.train.fit import grow_mask
    soft = np.zeros((21, 21), np.float32)
    soft[10, 10], soft[3, 15] = 1.0, 0.4
    np.testing.assert_array_equal(grow_mask(soft, 0), soft)
    grown = grow_mask(soft, 3)
    # reference: the maximum over every offset (dy, dx) of the radius-3 disc OpenCV draws
    disc = np.array([[0, 0, 0, 1, 0, 0, 0], [0, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1],
                     [1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 0], [0, 0, 0, 1, 0, 0, 0]], bool)
    padded = np.pad(soft, 3)
    ref = np.max([padded[dy:dy + 21, dx:dx + 21] for dy, dx in zip(*np.nonzero(disc))], axis=0)
    np.testing.assert_array_equal(grown, ref)
    assert (grown >= soft).all() and (grown == 1.0).sum() == disc.sum() and grown[3, 15] == np.float32(0.4)


def test_mask_grow_grows_the_true_and_the_teacher_mask_targets_only(pairs_dir):
    from mask2face.train.fit import DataError, PairsInput, grow_mask
    base = PairsInput(pairs_dir, "train", 4, flip=True, seed=5)
    teacher = np.zeros((24, 32, 32, 4), np.uint8)
    teacher[..., 3] = base.arrays["mask"]                             # the teacher's mask = the true mask
    plain = PairsInput(None, "train", 4, flip=True, seed=5, arrays=base.arrays, extra=teacher)
    grown = PairsInput(None, "train", 4, flip=True, seed=5, arrays=base.arrays, extra=teacher, mask_grow=0.1)
    assert grown.mask_grow_px == 3                                    # 0.1 of a 32 px crop
    idx, code = grown.order(0)
    np.testing.assert_array_equal(idx, plain.order(0)[0])            # same order and flips
    x0, y0 = plain._gather(idx.ravel(), code.ravel())
    x1, y1 = grown._gather(idx.ravel(), code.ravel())
    np.testing.assert_array_equal(x1, x0)                             # inputs untouched
    np.testing.assert_array_equal(y1[..., :3], y0[..., :3])           # RGB targets untouched
    np.testing.assert_array_equal(y1[..., 4:7], y0[..., 4:7])
    for c in (3, 7):
        assert (y1[..., c] >= y0[..., c]).all() and y1[..., c].sum() > 1.2 * y0[..., c].sum()
        np.testing.assert_array_equal(y1[0, ..., c], grow_mask(y0[0, ..., c], 3))
    with pytest.raises(DataError, match="mask_grow"):
        PairsInput(None, "train", 4, arrays=base.arrays, mask_grow=0.5)


def test_worn_masks_restyle_the_input_and_keep_the_face_as_the_target(pairs_dir):
    from mask2face.train.fit import DataError, PairsInput
    arrays = PairsInput(pairs_dir, "train", 4).arrays
    teacher = np.full((24, 32, 32, 4), 51, np.uint8)
    teacher[..., 3] = arrays["mask"]
    base = PairsInput(None, "train", 4, flip=True, seed=5, arrays=arrays, extra=teacher, bare_share=0.3, degrade=0.3)
    p = PairsInput(None, "train", 4, flip=True, seed=5, arrays=arrays, extra=teacher, bare_share=0.3,
                   degrade=0.3, worn_mask_share=0.5)
    idx, code = p.order(0)
    np.testing.assert_array_equal(idx, base.order(0)[0])             # earlier draws unchanged
    np.testing.assert_array_equal(code & 0xFFFFFF & ~np.uint32(PairsInput.WORN), base.order(0)[1])
    worn = ((code & PairsInput.WORN) > 0).ravel()
    assert 0.2 < worn.mean() < 0.8
    plain = worn & ((code.ravel() & (PairsInput.BARE | PairsInput.DEGRADE)) == 0)
    assert plain.any()
    x, y = p._gather(idx.ravel(), code.ravel())
    x0, y0 = base._gather(idx.ravel(), code.ravel() & 0xFFFFFF & ~np.uint32(PairsInput.WORN))
    np.testing.assert_array_equal(x[~worn], x0[~worn])                # other pairs stay bit-identical
    np.testing.assert_array_equal(y[~worn], y0[~worn])
    np.testing.assert_array_equal(y[..., :3], y0[..., :3])            # the face to restore never changes
    np.testing.assert_array_equal(y[..., 4:7], y0[..., 4:7])          # nor the teacher's RGB
    assert (np.abs(x[plain] - x0[plain]).max(axis=(1, 2, 3)) > 0.05).all()   # the mask looks different
    m = y[plain][..., 3] > 0.5
    # where the (restyled) mask is not, the input is the face itself, up to the mask's soft edge
    import cv2
    far = ~np.stack([cv2.dilate(a.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) for a in m])
    assert np.abs(x[plain] - y[plain][..., :3]).max(axis=-1)[far].max() < 2 / 255
    assert (y[plain][..., 7] >= y[plain][..., 3]).all()               # the teacher's mask covers the worn one
    assert p.order(1)[1].tolist() != code.tolist()                     # another epoch, other draws
    with pytest.raises(DataError, match="worn_mask_share"):
        PairsInput(None, "train", 4, arrays=arrays, worn_mask_share=1.5)


def test_fields_added_later_keep_old_run_keys_and_hashes():
    """A field added to the configs at its "as before" value must not change the run key of an existing checkpoint
    (or it could not be resumed after an upgrade) nor the config hash exported files carry."""
    from mask2face import config
    from mask2face.train.fit import run_key
    settings = {"student": {"epochs": 3, "batch_size": 16}, "image_size": 32}
    with_default = {"student": {"epochs": 3, "batch_size": 16, "mask_grow": 0.0}, "image_size": 32}
    changed = {"student": {"epochs": 3, "batch_size": 16, "mask_grow": 0.03}, "image_size": 32}
    assert run_key(with_default) == run_key(settings) != run_key(changed)
    cfg = config.preset("cpu")
    assert config.config_hash(cfg) != config.config_hash(config.apply_overrides(cfg, ["distill.mask_grow=0.03"]))
    assert config.config_hash(cfg) != config.config_hash(config.apply_overrides(cfg, ["distill.start_from=s.keras"]))
    assert run_key({"student": {"epochs": 3, "start_from": ""}}) == run_key({"student": {"epochs": 3}})


def test_init_from_copies_weights_and_refuses_another_architecture(tmp_path):
    from mask2face.edge_runtime.errors import Mask2FaceError
    from mask2face.train.fit import copy_weights
    from mask2face.train.models import build_model
    source = build_model(ModelConfig(filters=(8, 16), kernels=(3, 3)), 32)
    source.save(tmp_path / "source.keras")
    fresh = build_model(ModelConfig(filters=(8, 16), kernels=(3, 3)), 32)
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(), source.get_weights()))
    copy_weights(tmp_path / "source.keras", fresh)
    for a, b in zip(fresh.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = build_model(ModelConfig(filters=(8, 24), kernels=(3, 3)), 32)
    with pytest.raises(Mask2FaceError, match="do not match"):
        copy_weights(tmp_path / "source.keras", other)
    with pytest.raises(Mask2FaceError, match="no such model"):
        copy_weights(tmp_path / "missing.keras", other)
