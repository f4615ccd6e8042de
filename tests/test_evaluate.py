"""train.evaluate: metrics per variant, baselines, compositing, identity, Keras and .tflite models, CLI files."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mask2face.train import metrics, pairs  # noqa: E402
from mask2face.config import ModelConfig  # noqa: E402
from mask2face.train import evaluate  # noqa: E402

_spec = importlib.util.spec_from_file_location("_fit_helpers", Path(__file__).with_name("test_fit.py"))
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
make_fake_pairs = _helpers.make_fake_pairs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from mask2face.train.models import build_model
    root = tmp_path_factory.mktemp("run")
    make_fake_pairs(root / "data", counts=(("train", 8), ("val", 4), ("test", 6)), shard=4)
    model = build_model(ModelConfig(filters=(8, 16), kernels=(3, 3)), 32)
    (root / "teacher").mkdir()
    model.save(root / "teacher" / "best.keras")
    return root


def test_composite_uses_the_predicted_mask():
    inp = np.zeros((4, 4, 3), np.float32)
    out = np.ones((4, 4, 4), np.float32)
    out[..., 3] = 0.0
    out[:2, :, 3] = 0.9
    comp = metrics.composite(inp, out)
    assert comp[:2].min() == 1.0 and comp[2:].max() == 0.0
    np.testing.assert_array_equal(metrics.composite(inp, out[..., :3]), out[..., :3])


def test_blended_is_the_runtimes_feathered_paste():
    """`blended` = what Inpainter pastes: the input outside the dilated, feathered mask (bit for bit), the model's
    RGB deep inside it, a weighted mix on the feathered edge."""
    from mask2face.edge_runtime.inpaint import BlendConfig, feathered_alpha
    s = 64
    inp = np.full((s, s, 3), 0.2, np.float32)
    out = np.full((s, s, 4), 0.8, np.float32)
    out[..., 3] = 0.0
    out[36:56, 16:48, 3] = 0.9                       # the predicted mask: a lower-face block
    got = metrics.blended(inp, out)
    alpha = feathered_alpha(out[..., 3] > 0.5)
    np.testing.assert_allclose(got, inp * (1 - alpha[..., None]) + 0.8 * alpha[..., None], atol=1e-6)
    assert (got[:20] == 0.2).all() and np.allclose(got[46, 32], 0.8, atol=1e-3)
    edge = got[36, 32, 0]                            # the mask's own edge: dilated, then blurred
    assert 0.2 < edge < 0.8
    # the dilation reaches cfg.dilate of the side beyond the mask before the blur
    k = max(1, round(BlendConfig.dilate * s))
    assert alpha[36 - k, 32] > 0.4
    np.testing.assert_array_equal(metrics.blended(inp, out[..., :3]), out[..., :3])


def test_keras_report_and_baselines(run_dir):
    report, grid = evaluate.evaluate(run_dir / "teacher" / "best.keras", run_dir / "data", identity=True)
    assert report["pairs"] == 6 and set(report["metrics"]) == set(evaluate.VARIANTS)
    test = pairs.load_split(run_dir / "data", "test")
    # The masked-input baseline equals the metrics module applied by hand.
    rows = [metrics.all_metrics(test["masked"][i], test["clean"][i], test["mask"][i]) for i in range(6)]
    for k, v in metrics.summarize(rows).items():
        assert report["metrics"]["masked_input"][k] == pytest.approx(v)
    # Outside the mask the input equals the truth, so the masked-input L1 is all in the mask region.
    m = report["metrics"]["masked_input"]
    assert m["l1_masked"] > m["l1"] > 0
    # Inpainting given the true mask beats doing nothing inside the mask.
    assert report["metrics"]["telea"]["l1_masked"] < m["l1_masked"]
    assert report["metrics"]["ns"]["l1_masked"] < m["l1_masked"]
    ident = report["identity"]
    assert set(ident) == set(evaluate.VARIANTS)
    assert all(0 <= v["share_below_0.6"] <= 1 and v["mean_distance"] >= 0 for v in ident.values())
    assert 0 <= report["mask_iou"] <= 1
    assert grid.shape == (18 + 6 * 34 + 2, 5 * 34 + 2, 3)


def test_identity_embedding_is_deterministic():
    emb = evaluate.IdentityEmbedder()
    rng = np.random.default_rng(0)
    img = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    shape = emb.landmarks(img)
    a, b = emb.embed(img, shape), emb.embed(img.copy(), shape)
    assert a.shape == (128,) and np.linalg.norm(a - b) < 1e-6


@pytest.mark.slow
def test_cli_writes_report_grid_and_manifest(run_dir, tmp_path):
    from mask2face import config
    cfg = config.load("smoke")
    args = argparse.Namespace(run=run_dir, data=None, model=None, split="test", out=tmp_path / "eval")
    assert evaluate.cli_main(cfg, args) == 0
    report = json.loads((tmp_path / "eval" / "teacher-best.json").read_text())
    assert report["model_info"]["kind"] == "keras"
    img = cv2.imread(str(tmp_path / "eval" / "teacher-best_grid.png"))
    assert img is not None and img.shape[1] == 5 * 34 + 2
    assert json.loads((tmp_path / "eval" / "manifest.json").read_text())["stage"] == "eval"


def test_missing_model_and_wrong_size_are_clear_errors(run_dir, tmp_path):
    from mask2face.edge_runtime.errors import Mask2FaceError
    from mask2face.train.models import build_model
    with pytest.raises(Mask2FaceError, match="not found"):
        evaluate.evaluate(tmp_path / "nope.keras", run_dir / "data")
    build_model(ModelConfig(filters=(8, 16), kernels=(3, 3)), 64).save(tmp_path / "big.keras")
    with pytest.raises(Mask2FaceError, match="64"):
        evaluate.evaluate(tmp_path / "big.keras", run_dir / "data", identity=False)


@pytest.mark.slow
def test_tflite_matches_keras(run_dir, tmp_path):
    import tensorflow as tf
    from mask2face.train.models import load_model
    model = load_model(run_dir / "teacher" / "best.keras")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    path = tmp_path / "m.tflite"
    path.write_bytes(conv.convert())
    k_report, _ = evaluate.evaluate(run_dir / "teacher" / "best.keras", run_dir / "data", identity=False)
    t_report, _ = evaluate.evaluate(path, run_dir / "data", identity=False)
    assert t_report["model_info"]["kind"] == "tflite"
    for variant in ("raw", "composited"):
        for k in ("psnr", "ssim", "l1"):
            assert t_report["metrics"][variant][k] == pytest.approx(k_report["metrics"][variant][k], abs=1e-3)
