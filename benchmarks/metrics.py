"""Image quality metrics (numpy only): the single definition that eval and bench use.

Images are float arrays in [0,1] (or uint8, converted by /255), shape (H,W,3); masks (H,W) bool or 0/1/255.
- psnr: 10 log10(1 / MSE), data range 1 (capped at 100 dB for identical images).
- ssim: Wang et al. 2004, 11x11 Gaussian window sigma 1.5, K1 0.01, K2 0.03, data range 1, population
  covariance, mean over the 'valid' region (5 px off each border) and channels == skimage
  `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
  channel_axis=-1)` == `tf.image.ssim(max_val=1)` == `mask2face.train.losses.ssim`.
- l1: mean absolute error.
- masked variants: psnr/l1 over the mask pixels only; masked SSIM = mean of the SSIM map over the mask pixels
  inside the valid region (so an all-ones mask gives exactly `ssim`). An empty mask gives NaN.
"""

from __future__ import annotations

import math

import numpy as np

WINDOW, SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03
PSNR_CAP = 100.0


def to_float(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    return img.astype(np.float64)


def to_bool_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    return mask > (127 if mask.dtype == np.uint8 and mask.max() > 1 else 0.5)


def _gaussian() -> np.ndarray:
    coords = np.arange(WINDOW, dtype=np.float64) - (WINDOW - 1) / 2.0
    g = np.exp(-(coords ** 2) / (2 * SIGMA ** 2))
    return g / g.sum()


def _blur_valid(x: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filter of (H,W,C) -> (H-10,W-10,C) via sliding windows (no scipy needed)."""
    g = _gaussian()
    win = np.lib.stride_tricks.sliding_window_view(x, WINDOW, axis=0)   # (H-10, W, C, 11)
    x = win @ g
    win = np.lib.stride_tricks.sliding_window_view(x, WINDOW, axis=1)   # (H-10, W-10, C, 11)
    return win @ g


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """SSIM per pixel and channel over the valid region: (H,W,C) -> (H-10,W-10,C)."""
    a, b = to_float(a), to_float(b)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < WINDOW:
        raise ValueError(f"ssim needs images of at least {WINDOW}x{WINDOW} pixels, got {a.shape[:2]}")
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = _blur_valid(a), _blur_valid(b)
    var_a = _blur_valid(a * a) - mu_a ** 2
    var_b = _blur_valid(b * b) - mu_b ** 2
    cov = _blur_valid(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(ssim_map(a, b).mean())


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    r = (WINDOW - 1) // 2
    m = to_bool_mask(mask)[r:-r, r:-r]
    if not m.any():
        return float("nan")
    return float(ssim_map(a, b)[m].mean())


def _mean(d: np.ndarray, mask: np.ndarray | None) -> float:
    """Mean of a per-pixel error map, over the mask pixels when a mask is given (NaN for an empty mask)."""
    if mask is not None:
        m = to_bool_mask(mask)
        if not m.any():
            return float("nan")
        d = d[m]
    return float(d.mean())


def mse(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    return _mean((to_float(a) - to_float(b)) ** 2, mask)


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    e = mse(a, b, mask)
    if math.isnan(e):
        return e
    return PSNR_CAP if e <= 10 ** (-PSNR_CAP / 10) else float(10 * math.log10(1.0 / e))


def l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    return _mean(np.abs(to_float(a) - to_float(b)), mask)


def all_metrics(output: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """The six numbers reported everywhere: whole image and masked region."""
    return {"psnr": psnr(output, truth), "ssim": ssim(output, truth), "l1": l1(output, truth),
            "psnr_masked": psnr(output, truth, mask), "ssim_masked": masked_ssim(output, truth, mask),
            "l1_masked": l1(output, truth, mask)}


def composite(inp01: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Model RGB where the predicted mask > 0.5, the input elsewhere (raw RGB when there is no mask channel): what
    the runtime pastes, without its feathering."""
    if out.shape[-1] < 4:
        return out[..., :3]
    keep = out[..., 3:4] > 0.5
    return np.where(keep, out[..., :3], inp01)


def blended(inp01: np.ndarray, out: np.ndarray) -> np.ndarray:
    """What the runtime really pastes: model RGB over the input with the runtime's feathered weight of the predicted
    mask > 0.5 (edge_runtime.inpaint.feathered_alpha; the runtime's confidence gates are not applied). Unlike
    `composite`, the mask's edge is dilated and blurred, as in a photo. Raw RGB when there is no mask channel."""
    from mask2face.edge_runtime.inpaint import BlendConfig, feathered_alpha
    if out.shape[-1] < 4:
        return out[..., :3]
    alpha = feathered_alpha(out[..., 3] > BlendConfig.mask_threshold)[..., None]
    return inp01 * (1.0 - alpha) + out[..., :3] * alpha


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images (NaNs from empty masks ignored)."""
    keys = rows[0].keys() if rows else []
    return {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
