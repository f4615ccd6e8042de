"""train.losses: SSIM against tf.image.ssim and skimage, loss values on hand-computed cases."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

from mask2face.config import TrainConfig  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402
from mask2face.train import losses  # noqa: E402


def _batch(seed=0, shape=(3, 32, 36, 3), noise=0.15):
    rng = np.random.default_rng(seed)
    a = rng.random(shape).astype(np.float32)
    b = np.clip(a + rng.normal(0, noise, shape), 0, 1).astype(np.float32)
    return a, b


def test_ssim_matches_tf_image_ssim_and_skimage():
    a, b = _batch()
    mine = losses.ssim(tf.constant(a), tf.constant(b)).numpy()
    ref = tf.image.ssim(tf.constant(a), tf.constant(b), max_val=1.0).numpy()
    np.testing.assert_allclose(mine, ref, atol=1e-4)
    for i in range(len(a)):
        sk = structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                   data_range=1, channel_axis=-1)
        assert abs(mine[i] - sk) < 1e-4


def _packed(clean, mask):
    return np.concatenate([clean, mask[..., None]], -1).astype(np.float32)


def _cfg(**kw):
    return TrainConfig(**kw)


def test_mse_mae_hand_values_and_mask_bce():
    clean = np.zeros((2, 16, 16, 3), np.float32)
    mask = np.zeros((2, 16, 16), np.float32)
    mask[:, 8:] = 1
    pred = np.full((2, 16, 16, 4), 0.5, np.float32)
    pred[1, ..., :3] = 0.25
    y = tf.constant(_packed(clean, mask))
    for kind, expect in (("mse", [0.25, 0.0625]), ("mae", [0.5, 0.25])):
        no_mask = losses.build_loss(_cfg(loss=kind, mask_loss_weight=0.0))
        np.testing.assert_allclose(no_mask(y, tf.constant(pred)).numpy(), expect, rtol=1e-6)
    # BCE of p=0.5 is ln 2 for every pixel whatever the truth.
    with_mask = losses.build_loss(_cfg(loss="mse", mask_loss_weight=0.1))
    np.testing.assert_allclose(with_mask(y, tf.constant(pred)).numpy(), [0.25 + 0.1 * np.log(2),
                                                                         0.0625 + 0.1 * np.log(2)], rtol=1e-5)
    # predict_mask=False: a 3-channel output, no BCE term.
    three = losses.build_loss(_cfg(loss="mse", mask_loss_weight=0.1), predict_mask=False)
    np.testing.assert_allclose(three(y, tf.constant(pred[..., :3])).numpy(), [0.25, 0.0625], rtol=1e-6)


def test_ssim_l1_weights():
    a, b = _batch(1, shape=(2, 24, 24, 3))
    mask = np.zeros((2, 24, 24), np.float32)
    cfg = _cfg(loss="ssim_l1", ssim_weight=0.84, l1_weight=0.16, mask_loss_weight=0.0)
    got = losses.build_loss(cfg, predict_mask=False)(tf.constant(_packed(a, mask)), tf.constant(b)).numpy()
    s = tf.image.ssim(tf.constant(a), tf.constant(b), max_val=1.0).numpy()
    expect = 0.84 * (1 - s) + 0.16 * np.abs(a - b).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(got, expect, atol=1e-5)
    ssim_only = losses.build_loss(_cfg(loss="ssim", mask_loss_weight=0.0), predict_mask=False)
    np.testing.assert_allclose(ssim_only(tf.constant(_packed(a, mask)), tf.constant(b)).numpy(), 1 - s, atol=1e-5)


def test_masked_region_weighting_hand_value():
    # Error 0.4 inside the mask (a quarter of the image), 0 outside; weights 1 + 2*mask:
    # weighted L1 = (0.4 * 3 * 64) / (3 * 64 + 1 * 192) = 0.2 (the unweighted mean would be 0.1).
    clean = np.zeros((1, 16, 16, 3), np.float32)
    mask = np.zeros((1, 16, 16), np.float32)
    mask[:, 8:, 8:] = 1
    pred = clean + 0.4 * mask[..., None]
    fn = losses.reconstruction_loss("masked_ssim_l1", ssim_weight=0.0, l1_weight=1.0, mask_region_weight=2.0)
    got = fn(tf.constant(clean), tf.constant(pred), tf.constant(mask[..., None])).numpy()
    np.testing.assert_allclose(got, [0.2], rtol=1e-5)
    # With a zero region weight the masked loss is the plain ssim_l1.
    a, b = _batch(2, shape=(2, 24, 24, 3))
    m = np.random.default_rng(0).random((2, 24, 24, 1)).astype(np.float32) > 0.5
    plain = losses.reconstruction_loss("ssim_l1")(a, b, m.astype(np.float32)).numpy()
    masked0 = losses.reconstruction_loss("masked_ssim_l1", mask_region_weight=0.0)(
        a, b, m.astype(np.float32)).numpy()
    np.testing.assert_allclose(masked0, plain, atol=1e-5)


def test_distillation_targets_mix():
    clean = np.zeros((1, 16, 16, 3), np.float32)
    mask = np.zeros((1, 16, 16), np.float32)
    teacher = np.full((1, 16, 16, 4), 0.5, np.float32)
    y = tf.constant(np.concatenate([_packed(clean, mask), teacher], -1))
    pred = tf.constant(np.full((1, 16, 16, 4), 0.5, np.float32))
    fn = losses.build_loss(_cfg(loss="mae", mask_loss_weight=0.0), teacher_weight=0.25, teacher_channels=4)
    # task MAE 0.5, teacher MAE 0 -> 0.75 * 0.5
    np.testing.assert_allclose(fn(y, pred).numpy(), [0.375], rtol=1e-6)
    with pytest.raises(Mask2FaceError):
        losses.build_loss(_cfg(), teacher_weight=0.5, teacher_channels=0)


def test_unknown_loss_is_a_clear_error():
    with pytest.raises(Mask2FaceError, match="unknown loss"):
        losses.build_loss(_cfg(loss="perceptual"))


def test_composite_teacher_target_is_teacher_inside_the_mask_and_truth_outside():
    """composite_teacher: the teacher term compares with the teacher inside the true mask, the truth outside.
    Hand case: truth 0, teacher 0.5, prediction 0.5, mask covering a quarter of the image, MAE, weight 1: the
    teacher term is 0.5 on the unmasked three quarters and 0 inside the mask."""
    clean = np.zeros((1, 16, 16, 3), np.float32)
    mask = np.zeros((1, 16, 16), np.float32)
    mask[:, 8:, 8:] = 1
    teacher = np.full((1, 16, 16, 4), 0.5, np.float32)
    y = tf.constant(np.concatenate([_packed(clean, mask), teacher], -1))
    pred = tf.constant(np.full((1, 16, 16, 4), 0.5, np.float32))
    cfg = _cfg(loss="mae", mask_loss_weight=0.0)
    raw = losses.build_loss(cfg, teacher_weight=1.0, teacher_channels=4)
    comp = losses.build_loss(cfg, teacher_weight=1.0, teacher_channels=4, composite_teacher=True)
    np.testing.assert_allclose(raw(y, pred).numpy(), [0.0], atol=1e-7)
    np.testing.assert_allclose(comp(y, pred).numpy(), [0.75 * 0.5], rtol=1e-6)
