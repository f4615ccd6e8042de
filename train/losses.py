"""Training losses (TensorFlow). Every loss returns one value per example, shape (B,), so the training loop can
average over the global batch under any tf.distribute strategy (`tf.nn.compute_average_loss`).

Packed targets (docs/ARCHITECTURE.md): `y_true = concat(clean_rgb, mask[..., None], extra...)` on the channel
axis, all in [0,1]. `y_pred` is the model output: RGB (+ mask probability when the model predicts it).
Distillation appends the cached teacher output as `extra` channels 4..; `build_loss(..., teacher_weight=w)`
then mixes `(1-w) * task + w * match(student, teacher)`.

SSIM is Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03, data range 1, computed over
the 'valid' part of the image (no padding) per channel and averaged over channels — identical to
`tf.image.ssim(..., max_val=1)` and to skimage `structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1)`. `mask2face.train.metrics.ssim` is the numpy twin.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402

LOSSES = ("mse", "mae", "ssim", "ssim_l1", "masked_ssim_l1")
WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03
_EPS = 1e-7


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _blur(x: tf.Tensor) -> tf.Tensor:
    """Separable Gaussian filter, 'valid' padding, per channel (depthwise): (B,H,W,C) -> (B,H-10,W-10,C)."""
    g = tf.constant(gaussian_window(), dtype=x.dtype)
    channels = x.shape[-1]
    kx = tf.tile(tf.reshape(g, (1, WINDOW, 1, 1)), (1, 1, channels, 1))
    ky = tf.tile(tf.reshape(g, (WINDOW, 1, 1, 1)), (1, 1, channels, 1))
    x = tf.nn.depthwise_conv2d(x, kx, strides=(1, 1, 1, 1), padding="VALID")
    return tf.nn.depthwise_conv2d(x, ky, strides=(1, 1, 1, 1), padding="VALID")


def ssim_map(a: tf.Tensor, b: tf.Tensor, data_range: float = 1.0) -> tf.Tensor:
    """Per-pixel, per-channel SSIM over the valid region: (B,H,W,C) x2 -> (B,H-10,W-10,C)."""
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = _blur(a), _blur(b)
    # Variances from E[x^2] - E[x]^2 (population covariance, like tf.image.ssim).
    var_a = _blur(a * a) - mu_a * mu_a
    var_b = _blur(b * b) - mu_b * mu_b
    cov = _blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return num / den


def crop_valid(x: tf.Tensor) -> tf.Tensor:
    """Crop (B,H,W,C) to the region an `ssim_map` covers (5 pixels off each border)."""
    r = (WINDOW - 1) // 2
    return x[:, r:-r, r:-r, :]


def ssim(a: tf.Tensor, b: tf.Tensor, data_range: float = 1.0) -> tf.Tensor:
    """Mean SSIM per example, shape (B,)."""
    return tf.reduce_mean(ssim_map(a, b, data_range), axis=(1, 2, 3))


def _weighted_mean(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Per-example weighted mean of (B,H,W,C) values with (B,H,W,1) weights -> (B,)."""
    w = tf.broadcast_to(weights, tf.shape(values))
    return tf.reduce_sum(values * w, axis=(1, 2, 3)) / (tf.reduce_sum(w, axis=(1, 2, 3)) + _EPS)


def region_weights(mask: tf.Tensor, mask_region_weight: float) -> tf.Tensor:
    """Per-pixel weights 1 + mask_region_weight * mask: masked pixels count (1 + w) times as much."""
    return 1.0 + mask_region_weight * mask


def reconstruction_loss(kind: str, ssim_weight: float = 0.84, l1_weight: float = 0.16,
                        mask_region_weight: float = 0.0):
    """fn(truth_rgb, pred_rgb, mask(B,H,W,1)) -> (B,) for one of LOSSES.

    `masked_ssim_l1` weights both terms per pixel by `region_weights` (SSIM map cropped to its valid region)."""
    if kind not in LOSSES:
        raise Mask2FaceError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)} (e.g. train.loss=ssim_l1)")

    def fn(truth, pred, mask):
        if kind == "mse":
            return tf.reduce_mean(tf.square(truth - pred), axis=(1, 2, 3))
        if kind == "mae":
            return tf.reduce_mean(tf.abs(truth - pred), axis=(1, 2, 3))
        if kind == "ssim":
            return 1.0 - ssim(truth, pred)
        if kind == "ssim_l1":
            return ssim_weight * (1.0 - ssim(truth, pred)) + l1_weight * tf.reduce_mean(
                tf.abs(truth - pred), axis=(1, 2, 3))
        w = region_weights(mask, mask_region_weight)
        s = _weighted_mean(ssim_map(truth, pred), crop_valid(w))
        l1 = _weighted_mean(tf.abs(truth - pred), w)
        return ssim_weight * (1.0 - s) + l1_weight * l1

    return fn


def mask_bce(mask_true: tf.Tensor, mask_prob: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy of the predicted mask probability, per example (B,). Inputs (B,H,W,1) in [0,1]."""
    p = tf.clip_by_value(mask_prob, _EPS, 1.0 - _EPS)
    bce = -(mask_true * tf.math.log(p) + (1.0 - mask_true) * tf.math.log(1.0 - p))
    return tf.reduce_mean(bce, axis=(1, 2, 3))


def teacher_target(teacher_rgb, truth_rgb, mask, composite: bool):
    """The RGB a student matches: the teacher's output, or with `composite` the teacher inside the true mask and
    the truth outside it (outside the mask the truth is known exactly; the teacher only adds its blur there)."""
    return mask * teacher_rgb + (1.0 - mask) * truth_rgb if composite else teacher_rgb


def build_loss(train_cfg, predict_mask: bool = True, teacher_weight: float = 0.0, teacher_channels: int = 0,
               composite_teacher: bool = False):
    """The training loss from a TrainConfig: fn(y_true, y_pred) -> (B,).

    y_true channels: 0-2 clean RGB, 3 mask (0/1), then `teacher_channels` extra channels (teacher output,
    RGB [+ mask]) when distilling. The task part is reconstruction(kind) + mask_loss_weight * BCE(mask);
    with teacher_weight w > 0 the result is (1-w) * task + w * (same losses against the teacher's output);
    `composite_teacher` makes that target the teacher's RGB inside the true mask and the truth outside it."""
    rec = reconstruction_loss(train_cfg.loss, train_cfg.ssim_weight, train_cfg.l1_weight,
                              train_cfg.mask_region_weight)
    mask_w = float(train_cfg.mask_loss_weight) if predict_mask else 0.0
    if teacher_weight and teacher_channels < 3:
        raise Mask2FaceError("teacher_weight > 0 needs the teacher output appended to the targets "
                             "(teacher_channels >= 3)")

    def task(rgb_true, mask_true, y_pred, region_mask):
        value = rec(rgb_true, y_pred[..., :3], region_mask)
        if mask_w:
            value = value + mask_w * mask_bce(mask_true, y_pred[..., 3:4])
        return value

    def loss(y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        mask = y_true[..., 3:4]
        value = task(y_true[..., :3], mask, y_pred, mask)
        if teacher_weight:
            t = y_true[..., 4:4 + teacher_channels]
            # Match the teacher's RGB (and its mask probability as a soft target when both have one).
            t_mask = t[..., 3:4] if teacher_channels >= 4 else mask
            t_rgb = teacher_target(t[..., :3], y_true[..., :3], mask, composite_teacher)
            value = (1.0 - teacher_weight) * value + teacher_weight * task(t_rgb, t_mask, y_pred, mask)
        return value

    loss.__name__ = f"{train_cfg.loss}{'_distill' if teacher_weight else ''}"
    return loss
