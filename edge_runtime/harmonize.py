"""Make a restored patch meet the face around it: the mask's rim filled, the patch's tone matched to the skin.

Both work on the aligned crop, before the paste back, in a few hundred microseconds at 128 px:

- `fill_rim`: a mask's rim and its shadow often lie just outside the region the model marks as mask, and the
  model leaves those pixels as they were (a `blend_input` model returns the input there). The band of `width`
  pixels outside the predicted mask is filled from both sides (a local mean of the patch and the skin), so a thin
  rim goes with the mask, at the cost of the skin's texture in that band.
- `match_tone`: the model's colours at the edge of its patch differ from the skin beside them by a few levels
  (lighting, white balance), which reads as a line along the top of the restored region. The difference between
  the skin just outside and the patch just inside, measured all along the border, is spread over the patch as a
  smooth offset: a fast stand-in for Poisson blending's membrane. Border points where the two sides differ a lot
  (the chin against a dark collar or the background) get little weight, so only tone is matched, never an edge.
- `clean_rim`: what both leave is the mask's hem, a line one to three pixels wide that follows the predicted mask's
  border (its light or dark edge, a shadow), half inside the mask where the model is not sure and half outside:
  on real photos it reads as a dark or light line under the eyes. A band straddling the border is replaced by its
  own median over a window wider than twice the line: a median removes a line thinner than half its window and
  keeps a step edge (the chin against a collar) where it is, so it needs no gate.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=16)
def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _local_mean(image: np.ndarray, weight: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian mean of `image` over the pixels of `weight` (normalised convolution), and the weight's density."""
    w = cv2.GaussianBlur(weight, (0, 0), sigma)
    num = cv2.GaussianBlur(image * weight[..., None], (0, 0), sigma)
    return num / np.maximum(w, 1e-6)[..., None], w


def fill_rim(rgb: np.ndarray, mask: np.ndarray, width: int, tolerance: float = 0.12) -> np.ndarray:
    """`rgb` (S, S, 3, uint8 or float in [0, 1]) with the band of `width` px just outside the boolean `mask` filled
    with the Gaussian mean (sigma = width) of the pixels on both sides of it: the patch inside, the skin outside.
    Only where the two sides agree (weight exp(-(|inside - outside| / tolerance)^2), in [0, 1] units): a mask's
    rim under the eyes sits between patch and skin of one tone, while the chin's edge against a dark collar or the
    background is a real edge, kept as it is."""
    if width <= 0 or not mask.any():
        return rgb
    m = mask.astype(np.uint8)
    grown = cv2.dilate(m, _disc(width))
    band = grown.astype(bool) & ~mask
    if not band.any():
        return rgb
    # Only the band's bounding box (plus the Gaussian's reach) is computed: about a third of the crop.
    x, y, w, h = cv2.boundingRect(band.astype(np.uint8))
    reach = 3 * width
    y0, y1, x0, x1 = max(0, y - reach), min(rgb.shape[0], y + h + reach), max(0, x - reach), min(rgb.shape[1], x + w + reach)
    roi = rgb[y0:y1, x0:x1].astype(np.float32)
    roi_band = band[y0:y1, x0:x1]
    scale = 255.0 if rgb.dtype == np.uint8 else 1.0
    fill, _ = _local_mean(roi, (~roi_band).astype(np.float32), float(width))
    inside, _ = _local_mean(roi, m[y0:y1, x0:x1].astype(np.float32), float(2 * width))
    outside, _ = _local_mean(roi, (~grown[y0:y1, x0:x1].astype(bool)).astype(np.float32), float(2 * width))
    gap = np.linalg.norm(inside[roi_band] - outside[roi_band], axis=-1) / (np.sqrt(3.0) * scale)
    weight = np.exp(-np.square(gap / tolerance))[:, None]
    values = weight * fill[roi_band] + (1.0 - weight) * roi[roi_band]
    if rgb.dtype == np.uint8:
        values = np.clip(values + 0.5, 0, 255)
    out = rgb.copy()
    out[y0:y1, x0:x1][roi_band] = values.astype(rgb.dtype)
    return out


def match_tone(restored: np.ndarray, photo: np.ndarray, mask: np.ndarray, spread: float, tolerance: float = 0.12,
               ring: int = 3, work_size: int = 64) -> np.ndarray:
    """`restored` (S, S, 3) float32 in [0, 1] with a smooth colour offset added inside `mask` (boolean) so that
    its edge meets `photo` (the crop the model saw, float32 [0, 1]) in tone.

    The offset at each border point is (mean of the photo in a band `ring`-2*`ring` px outside the mask, beyond a
    rim) - (mean of the patch in the `ring` px just inside), both local; it is spread inside by a Gaussian of
    sigma `spread` px, weighting each border point by exp(-(|offset| / tolerance)^2). A tone offset is smooth, so
    it is computed at `work_size` px and resized back (at 128 px this is 4x fewer pixels)."""
    if spread <= 0 or not mask.any():
        return restored
    size = restored.shape[0]
    scale = min(1.0, work_size / size)
    small = (max(1, round(size * scale)),) * 2
    r_small = cv2.resize(restored, small, interpolation=cv2.INTER_AREA)
    p_small = cv2.resize(photo, small, interpolation=cv2.INTER_AREA)
    m = (cv2.resize(mask.astype(np.float32), small, interpolation=cv2.INTER_AREA) > 0.5).astype(np.uint8)
    ring_px = max(1, round(ring * scale))
    outer = (cv2.dilate(m, _disc(2 * ring_px)) - cv2.dilate(m, _disc(ring_px))).astype(np.float32)
    inner = (m - cv2.erode(m, _disc(ring_px))).astype(np.float32)
    if not outer.any() or not inner.any():
        return restored
    out_mean, out_w = _local_mean(p_small, outer, 2.0 * ring_px)
    in_mean, in_w = _local_mean(r_small, inner, 2.0 * ring_px)
    border = (cv2.dilate(m, _disc(1)) - cv2.erode(m, _disc(1))).astype(bool)
    border &= (out_w > 1e-3) & (in_w > 1e-3)
    if not border.any():
        return restored
    offset = np.zeros_like(r_small)
    offset[border] = out_mean[border] - in_mean[border]
    weight = np.zeros(m.shape, np.float32)
    distance = np.linalg.norm(offset[border], axis=-1) / np.sqrt(3.0)
    weight[border] = np.exp(-np.square(distance / tolerance))
    field, density = _local_mean(offset, weight, spread * scale)
    # Far from trusted border points the offset fades out instead of extrapolating a few points' offset: the
    # density of trusted points against what a fully trusted border gives on it.
    full = cv2.GaussianBlur(border.astype(np.float32), (0, 0), spread * scale)
    fade = np.clip(density / max(float(full[border].mean()), 1e-6), 0.0, 1.0)
    field = cv2.resize(field * fade[..., None], (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(restored + field * mask[..., None], 0.0, 1.0)


def limit_chroma(rgb: np.ndarray, photo: np.ndarray, mask: np.ndarray, radius: float, ring: int) -> np.ndarray:
    """`rgb` (S, S, 3) float32 in [0, 1] with the colour of each pixel inside `mask` kept within `radius` of the
    skin's colour around the mask; brightness untouched.

    Colour is a pixel minus its grey (the mean of its channels). The skin's is the mean colour of `photo` (the crop
    the model saw) in a band `ring` px wide just outside the mask's upper half, under the eyes; a pixel whose
    colour lies further than `radius` from it is pulled back onto that circle. Lips stay redder than the cheeks by
    up to `radius`; an orange or pink patch drawn over a whole lower face, a blue one over a grey photo, come back
    to the face's own colour."""
    if radius <= 0 or ring <= 0 or not mask.any():
        return rgb
    m = mask.astype(np.uint8)
    band = (cv2.dilate(m, _disc(ring)) - m).astype(bool)
    # Only the band's part above the mask's middle and between the eyes' outer corners (the crop's middle half):
    # the cheeks under the eyes. Below and beside a mask the band crosses the collar, the hair and the background.
    s = mask.shape[0]
    rows = np.nonzero(mask.any(axis=1))[0]
    band[(rows[0] + rows[-1]) // 2:] = False
    band[:, :s // 4] = band[:, s - s // 4:] = False
    if not band.any():
        return rgb
    skin = photo[band].astype(np.float64)
    reference = (skin - skin.mean(axis=1, keepdims=True)).mean(axis=0).astype(np.float32)
    # Only the mask's bounding box is computed (the rest is returned as it is).
    x, y, w, h = cv2.boundingRect(m)
    out = rgb.astype(np.float32)   # always a copy (astype's default)
    inside, roi = mask[y:y + h, x:x + w], out[y:y + h, x:x + w]
    grey = roi.mean(axis=-1, keepdims=True)
    deviation = roi - grey - reference
    length = np.sqrt(np.square(deviation).sum(axis=-1, keepdims=True))
    pulled = grey + reference + deviation * np.minimum(1.0, radius / np.maximum(length, 1e-6))
    roi[inside] = np.clip(pulled, 0.0, 1.0)[inside]
    return out


def clean_rim(rgb: np.ndarray, mask: np.ndarray, width: int) -> np.ndarray:
    """`rgb` (S, S, 3, float in [0, 1]) with the band from `width` px inside the boolean `mask`'s border (its large
    parts') to `width` + 1 px outside it replaced by its (2 * `width` + 1)-px median, the band's edges feathered over ~2 px:
    lines up to `width` px wide along the border go, step edges and everything farther from the border stay
    (bit-identical)."""
    if width <= 0 or not mask.any():
        return rgb
    m = mask.astype(np.uint8)
    # Specks the model marks apart from the mask (a few pixels in an eye, a nostril) have no hem: only the border of
    # the mask's large parts (a tenth of the largest or more) is cleaned, so an eye is never median-filtered.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if count > 2:
        areas = stats[:, cv2.CC_STAT_AREA]
        keep = areas >= 0.1 * areas[1:].max()
        keep[0] = False
        m = keep.astype(np.uint8)[labels]
    band = cv2.dilate(m, _disc(width + 1)) - cv2.erode(m, _disc(width))
    # Only the band's bounding box (plus the window and the feather's reach) is computed.
    x, y, w, h = cv2.boundingRect(band)
    reach = width + 4
    y0, y1, x0, x1 = max(0, y - reach), min(rgb.shape[0], y + h + reach), max(0, x - reach), min(rgb.shape[1], x + w + reach)
    weight = np.minimum(1.0, 2.0 * cv2.GaussianBlur(band[y0:y1, x0:x1].astype(np.float32), (0, 0), 1.0))
    weight[weight < 1.0 / 255] = 0.0
    roi = rgb[y0:y1, x0:x1].astype(np.float32)
    median = cv2.medianBlur(np.clip(roi * 255.0 + 0.5, 0, 255).astype(np.uint8), 2 * width + 1)
    out = rgb.copy()
    out[y0:y1, x0:x1] = roi + weight[..., None] * (median.astype(np.float32) / 255.0 - roi)
    return out
