"""train.metrics: the numpy definitions every report uses, checked against skimage and hand values."""

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from mask2face.train import metrics


def _pair(seed=0, shape=(40, 52, 3), noise=0.1):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    b = np.clip(a + rng.normal(0, noise, shape), 0, 1)
    return a, b


@pytest.mark.parametrize("seed,noise", [(0, 0.02), (1, 0.1), (2, 0.4)])
def test_ssim_matches_skimage(seed, noise):
    a, b = _pair(seed, noise=noise)
    ref = structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1,
                                channel_axis=-1)
    assert abs(metrics.ssim(a, b) - ref) < 1e-4


def test_ssim_uint8_and_identity():
    a, _ = _pair()
    u = (a * 255).round().astype(np.uint8)
    assert metrics.ssim(u, u) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(u, u.astype(np.float64) / 255) == pytest.approx(1.0, abs=1e-12)


def test_psnr_l1_hand_values():
    a = np.zeros((4, 4, 3))
    b = np.full((4, 4, 3), 0.1)
    assert metrics.psnr(a, b) == pytest.approx(20.0)          # MSE 0.01 -> 20 dB
    assert metrics.l1(a, b) == pytest.approx(0.1)
    assert metrics.psnr(a, a) == metrics.PSNR_CAP
    mask = np.zeros((4, 4), np.uint8)
    mask[:2] = 255
    c = b.copy()
    c[:2] = 0.5                                               # error only inside the mask
    assert metrics.l1(a, c, mask) == pytest.approx(0.5)
    assert metrics.psnr(a, c, mask) == pytest.approx(10 * math.log10(1 / 0.25))
    assert math.isnan(metrics.l1(a, c, np.zeros((4, 4))))


def test_masked_ssim_is_map_mean_over_mask():
    a, b = _pair(3)
    full = np.ones(a.shape[:2])
    assert metrics.masked_ssim(a, b, full) == pytest.approx(metrics.ssim(a, b), abs=1e-12)
    # Degrade only the lower half: the masked (lower) SSIM is lower than the upper one.
    c = a.copy()
    c[20:] = np.clip(c[20:] + np.random.default_rng(5).normal(0, 0.3, c[20:].shape), 0, 1)
    lower = np.zeros(a.shape[:2], bool)
    lower[25:] = True
    assert metrics.masked_ssim(a, c, lower) < metrics.masked_ssim(a, c, ~lower) - 0.15
    m = metrics.ssim_map(a, c)[lower[5:-5, 5:-5]].mean()
    assert metrics.masked_ssim(a, c, lower) == pytest.approx(m)


def test_all_metrics_and_summary_keys():
    a, b = _pair(4)
    mask = np.zeros(a.shape[:2], np.uint8)
    mask[20:] = 1
    row = metrics.all_metrics(a, b, mask)
    assert set(row) == {"psnr", "ssim", "l1", "psnr_masked", "ssim_masked", "l1_masked"}
    s = metrics.summarize([row, row])
    assert s["psnr"] == pytest.approx(row["psnr"])


def test_metrics_import_no_tensorflow(tmp_path):
    import subprocess
    import sys
    code = "import sys; import mask2face.train.metrics; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.stdout.strip() == "False"


# -- sharpness, structure, blockiness, seam: hand-made cases on a real face -------------------------------------
def _face_and_lower_face_mask():
    import cv2
    from skimage import data
    face = data.astronaut()[0:256, 128:384]
    mask = np.zeros(face.shape[:2], bool)
    mask[140:230, 60:200] = True          # nose to chin, as a face mask sits
    return cv2, face, mask


def test_laplacian_matches_skimage_and_luma_opencv():
    from skimage import filters
    cv2, face, _ = _face_and_lower_face_mask()
    y = metrics.luma(face)
    assert np.abs(y * 255 - cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)).max() < 0.51   # BT.601, as OpenCV (which rounds)
    assert np.abs(np.abs(metrics.laplacian(y)) - np.abs(filters.laplace(y, ksize=3))[1:-1, 1:-1]).max() < 1e-12


def test_sharpness_is_one_for_the_truth_below_one_for_a_blurred_copy_above_for_noise():
    cv2, face, mask = _face_and_lower_face_mask()
    blurred = cv2.GaussianBlur(face, (0, 0), 2)
    noisy = np.clip(face + np.random.default_rng(0).normal(0, 12, face.shape), 0, 255).astype(np.uint8)
    flat = face.copy()
    flat[mask] = face[mask].mean(0).astype(np.uint8)
    assert metrics.sharpness(face, face, mask) == pytest.approx(1.0)
    assert metrics.sharpness(blurred, face, mask) < 0.5
    assert metrics.sharpness(noisy, face, mask) > 1.5
    assert metrics.sharpness(flat, face, mask) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(metrics.sharpness(face, face, np.zeros_like(mask)))


def test_structure_is_skimages_difference_of_gaussians_and_sees_blur_but_not_noise():
    """Where sharpness takes pixel noise for detail, structure (the 1-2 px band) does not: a blurred copy of the
    face scores well below 1 on both, the same copy with noise added passes for sharp on sharpness only."""
    from skimage import filters
    cv2, face, mask = _face_and_lower_face_mask()
    y = metrics.luma(face)
    dog = filters.difference_of_gaussians(y, *metrics.STRUCTURE_SIGMAS, mode="nearest", truncate=4.0)
    assert metrics.band_energy(face) == pytest.approx(np.abs(dog).mean(), rel=1e-12)
    blurred = cv2.GaussianBlur(face, (0, 0), 2)
    noisy_blur = np.clip(blurred + np.random.default_rng(0).normal(0, 3, face.shape), 0, 255).astype(np.uint8)
    assert metrics.structure(face, face, mask) == pytest.approx(1.0)
    assert metrics.structure(blurred, face, mask) < 0.6
    assert metrics.sharpness(noisy_blur, face, mask) > 2 * metrics.sharpness(blurred, face, mask)
    assert metrics.structure(noisy_blur, face, mask) < 1.25 * metrics.structure(blurred, face, mask)
    assert math.isnan(metrics.structure(face, face, np.zeros_like(mask)))


def test_blockiness_sees_nearest_upsampling_and_not_smooth_upsampling():
    cv2, face, mask = _face_and_lower_face_mask()
    half = cv2.resize(face, (128, 128), interpolation=cv2.INTER_AREA)
    nearest = cv2.resize(half, (256, 256), interpolation=cv2.INTER_NEAREST)
    smooth = cv2.resize(half, (256, 256), interpolation=cv2.INTER_LINEAR)
    assert metrics.blockiness(face) == pytest.approx(1.0, abs=0.05)
    assert metrics.blockiness(nearest) == pytest.approx(2.0, abs=0.05)
    assert metrics.blockiness(nearest, 2, mask) == pytest.approx(2.0, abs=0.05)
    assert metrics.blockiness(smooth) < 1.15
    shifted = np.roll(nearest, 1, axis=(0, 1))                # the grid's phase does not matter
    assert metrics.blockiness(shifted) == pytest.approx(2.0, abs=0.05)


def test_seam_sees_a_pasted_rectangle_and_not_a_feathered_one():
    cv2, face, mask = _face_and_lower_face_mask()
    colour = face[mask].mean(0)
    pasted = face.copy()
    pasted[mask] = colour.astype(np.uint8)
    alpha = cv2.GaussianBlur(mask.astype(np.float64), (0, 0), 4)[..., None]
    feathered = (face * (1 - alpha) + colour * alpha).astype(np.uint8)
    assert metrics.seam(face, face, mask) == pytest.approx(1.0)
    assert metrics.seam(pasted, face, mask) > 2.0
    assert metrics.seam(feathered, face, mask) < 0.6 * metrics.seam(pasted, face, mask)


def test_look_metrics_keys():
    _, face, mask = _face_and_lower_face_mask()
    assert set(metrics.look_metrics(face, face, mask)) == {"sharpness", "structure", "blockiness", "seam"}


def test_frechet_distance_matches_scipy_and_grows_with_the_gap():
    from scipy import linalg
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 8))
    b = rng.normal(size=(300, 8)) @ np.diag(np.linspace(0.5, 2, 8)) + 0.3
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s_a + s_b - 2 * linalg.sqrtm(s_a @ s_b).real)
    assert metrics.frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert metrics.frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-9)
    assert np.isnan(metrics.frechet_distance(a[:1], b))
