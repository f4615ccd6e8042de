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
import warnings

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


def _gaussian(sigma: float = SIGMA, radius: int = (WINDOW - 1) // 2) -> np.ndarray:
    """The normalised 1-D Gaussian of 2 * radius + 1 taps (default: SSIM's 11-tap window)."""
    coords = np.arange(2 * radius + 1, dtype=np.float64) - radius
    g = np.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _blur_valid(x: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
    """Separable 'valid' filter of (H,W[,C]) by the 1-D kernel `g` (default SSIM's Gaussian: (H-10,W-10[,C])) via
    sliding windows (no scipy needed)."""
    g = _gaussian() if g is None else g
    win = np.lib.stride_tricks.sliding_window_view(x, len(g), axis=0)   # (H-10, W[, C], 11)
    x = win @ g
    win = np.lib.stride_tricks.sliding_window_view(x, len(g), axis=1)   # (H-10, W-10[, C], 11)
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
    """What the runtime really pastes: model RGB, its tone matched and the mask's rim filled
    (edge_runtime.inpaint.harmonized), over the input with the runtime's feathered weight of the predicted mask > 0.5
    (edge_runtime.inpaint.feathered_alpha; the runtime's confidence gates are not applied). Unlike `composite`, the
    mask's edge is dilated and blurred, as in a photo. Raw RGB when there is no mask channel."""
    from mask2face.edge_runtime.inpaint import BlendConfig, feathered_alpha, harmonized
    if out.shape[-1] < 4:
        return out[..., :3]
    alpha = feathered_alpha(out[..., 3] > BlendConfig.mask_threshold)[..., None]
    rgb = harmonized(np.asarray(out[..., :3], np.float32), np.asarray(inp01, np.float32), out[..., 3])
    return inp01 * (1.0 - alpha) + rgb * alpha


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over images (NaNs from empty masks ignored; NaN where every image's is)."""
    keys = rows[0].keys() if rows else []
    with warnings.catch_warnings():   # an all-NaN column (a smoke model that predicts no mask) is a NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: float(np.nanmean([r[k] for r in rows])) for k in keys}


# -- what PSNR and SSIM do not see: blur, blocks, seams ---------------------------------------------------------
# A blurry patch scores well in PSNR/SSIM (it is close to the mean face), so these compare the output with the truth
# on the properties a viewer sees. Each is a ratio to the truth (or to an ideal), 1.0 meaning "like the real face".

def luma(img: np.ndarray) -> np.ndarray:
    """(H,W) float luma in [0,1] (ITU-R BT.601 weights) of an RGB image (uint8 or float) or a grey one."""
    x = to_float(img)
    return x if x.ndim == 2 else x[..., :3] @ np.array([0.299, 0.587, 0.114])


def laplacian(y: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of (H,W) -> (H-2,W-2), the interior (== skimage.filters.laplace(ksize=3) there)."""
    return 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]


def grow(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of a bool (H,W) map by a (2r+1)^2 square."""
    m = np.pad(mask, r)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= m[dy:dy + h, dx:dx + w]
    return out


def shrink(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion by a (2r+1)^2 square (outside the image counts as outside the mask)."""
    return ~grow(~mask, r)


def detail_energy(img: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean |Laplacian| of the luma over `region` (all pixels when None): how much fine detail there is."""
    lap = np.abs(laplacian(luma(img)))
    if region is None:
        return float(lap.mean())
    inner = to_bool_mask(region)[1:-1, 1:-1]
    return float(lap[inner].mean()) if inner.any() else float("nan")


def sharpness(output: np.ndarray, truth: np.ndarray, mask: np.ndarray, margin: int = 2) -> float:
    """Detail energy of the output inside the mask over that of the truth (1.0: as sharp as the real face; a
    blurred patch < 1, noise > 1). The mask's border (`margin` px) is left out: the seam is measured on its own."""
    inner = shrink(to_bool_mask(mask), margin)
    ref = detail_energy(truth, inner)
    return float("nan") if not ref > 0 else detail_energy(output, inner) / ref


# Structure: the band a viewer reads as lips, nostrils and creases (about 2-6 px at 128 px), where pixel noise has
# little energy. `sharpness` (the Laplacian, the finest scale) counts noise as detail: noise of 3 levels on a
# blurred face triples its sharpness and moves its structure by 4% (tests/test_metrics.py), and int8 activation
# noise gave 0.6.0's QAT file a sharpness of 0.92 against 0.38 for the same weights in float, while its structure
# was 0.63 (benchmarks/results/structure_metric.md).
STRUCTURE_SIGMAS = (1.0, 2.0)


def gaussian_blur(y: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of (H,W), edges extended by their nearest pixel, truncated at 4 sigma
    (== skimage.filters.gaussian(mode="nearest", truncate=4))."""
    r = int(4.0 * sigma + 0.5)
    return _blur_valid(np.pad(y, r, mode="edge"), _gaussian(sigma, r))


def band_energy(img: np.ndarray, region: np.ndarray | None = None, sigmas: tuple[float, float] = STRUCTURE_SIGMAS
                ) -> float:
    """Mean |difference of Gaussians| of the luma (== skimage.filters.difference_of_gaussians) over `region`."""
    y = luma(img)
    dog = np.abs(gaussian_blur(y, sigmas[0]) - gaussian_blur(y, sigmas[1]))
    if region is None:
        return float(dog.mean())
    inner = to_bool_mask(region)
    return float(dog[inner].mean()) if inner.any() else float("nan")


def structure(output: np.ndarray, truth: np.ndarray, mask: np.ndarray, margin: int = 2) -> float:
    """Band energy (lips, nostrils, creases) of the output inside the mask over that of the truth: 1.0 as much
    structure as the real face, a blurred patch < 1; unlike `sharpness`, pixel noise barely moves it."""
    inner = shrink(to_bool_mask(mask), margin)
    ref = band_energy(truth, inner)
    return float("nan") if not ref > 0 else band_energy(output, inner) / ref


def blockiness(img: np.ndarray, block: int = 2, region: np.ndarray | None = None) -> float:
    """How much of the image's pixel-to-pixel change falls on a grid of `block` px: mean |step| across the grid's
    lines over the mean |step| everywhere, for the grid phase where it is highest (rows and columns averaged).
    1.0 for an image without block structure; `block` for an image upsampled by nearest neighbour `block` times
    (every step sits on a grid line). Within `region` only, when given (steps with both pixels inside it)."""
    y = luma(img)
    inside = None if region is None else to_bool_mask(region)
    ratios = []
    for axis in (0, 1):
        step = np.abs(np.diff(y, axis=axis))
        keep = np.ones_like(step, bool) if inside is None else \
            (inside[1:] & inside[:-1]) if axis == 0 else (inside[:, 1:] & inside[:, :-1])
        pos = np.arange(step.shape[axis])
        mean_all = step[keep].mean() if keep.any() else 0.0
        best = float("nan")
        for phase in range(block):
            line = ((pos + 1 - phase) % block == 0)
            sel = keep & (line[:, None] if axis == 0 else line[None, :])
            if sel.any() and mean_all > 0:
                r = step[sel].mean() / mean_all
                best = r if not best >= r else best
        ratios.append(best)
    return float(np.nanmean(ratios)) if not all(np.isnan(ratios)) else float("nan")


def seam(output: np.ndarray, truth: np.ndarray, mask: np.ndarray, width: int = 2) -> float:
    """Gradient across the mask's border in the output over the same ring in the truth (1.0: the border is as
    smooth as the real face there; a pasted patch or a mask rim left behind > 1)."""
    m = to_bool_mask(mask)
    ring = grow(m, width) & ~shrink(m, width)
    ring = ring[:-1, :-1]

    def gradient(img):
        y = luma(img)
        return np.hypot(y[1:, :-1] - y[:-1, :-1], y[:-1, 1:] - y[:-1, :-1])

    if not ring.any():
        return float("nan")
    ref = gradient(truth)[ring].mean()
    return float("nan") if not ref > 0 else float(gradient(output)[ring].mean() / ref)


def look_metrics(output: np.ndarray, truth: np.ndarray, mask: np.ndarray, block: int = 2) -> dict[str, float]:
    """sharpness and structure (mask region), blockiness (mask region, `block` px grid) and seam (mask border),
    beside all_metrics' PSNR/SSIM/L1."""
    return {"sharpness": sharpness(output, truth, mask), "structure": structure(output, truth, mask),
            "blockiness": blockiness(output, block, mask), "seam": seam(output, truth, mask)}


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues below 0 from rounding count as 0)."""
    values, vectors = np.linalg.eigh((m + m.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (N, D) and (M, D), as FID defines it:
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2). Applied to dlib's face descriptors it says how
    far restored faces are, as a population, from real ones (0 = alike)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(s_a)
    cross = _sqrt_psd(root_a @ s_b @ root_a)
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(cross))
