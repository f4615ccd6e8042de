"""benchmarks.metrics: the numpy definitions every report uses, checked against skimage and hand values."""

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from mask2face.benchmarks import metrics


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
    code = "import sys; import mask2face.benchmarks.metrics; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.stdout.strip() == "False"
