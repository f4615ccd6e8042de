"""edge_runtime.align: eyes land on the canonical positions; crop then paste_back restores the photo."""

from __future__ import annotations

import numpy as np

from mask2face.edge_runtime import align


def _photo(h=200, w=240, seed=0):
    # smooth content (bilinear warps twice lose little) plus a bit of texture
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(x / 17), 128 + 100 * np.cos(y / 23), 128 + 60 * np.sin((x + y) / 31)], -1)
    return np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)


def test_eyes_map_to_canonical_positions():
    size = 128
    le, re = np.array([80.3, 91.2]), np.array([131.7, 80.4])
    m = align.similarity_from_eyes(le, re, size)
    got = align.transform_points(m, np.stack([le, re]))
    want = np.array([align.CANONICAL_LEFT_EYE, align.CANONICAL_RIGHT_EYE]) * size
    assert np.allclose(got, want, atol=1e-9)
    back = align.transform_points(align.invert(m), got)
    assert np.allclose(back, [le, re], atol=1e-9)


def test_eye_centres_from_68():
    lm = np.zeros((68, 2))
    lm[36:42] = (10, 20)
    lm[42:48] = (30, 22)
    le, re = align.eye_centers_from_68(lm)
    assert np.allclose(le, (10, 20)) and np.allclose(re, (30, 22))


def test_crop_then_paste_back_restores():
    img = _photo()
    size = 96
    # eye distance 0.30 * size: the crop has the photo's scale, so only interpolation error remains
    d = 0.30 * size
    angle = np.deg2rad(12)
    le = np.array([90.0, 100.0])
    re = le + d * np.array([np.cos(angle), np.sin(angle)])
    m = align.similarity_from_eyes(le, re, size)
    crop = align.crop(img, m, size)
    alpha = np.zeros((size, size), np.float32)
    alpha[8:-8, 8:-8] = 1.0
    out = align.paste_back(img, crop, alpha, m)
    # where the crop's alpha was 0 the photo is untouched, byte for byte
    inv = align.invert(m)
    import cv2
    a_img = cv2.warpAffine(alpha, inv, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR, borderValue=0)
    assert np.array_equal(out[a_img == 0], img[a_img == 0])
    inside = a_img > 0.999
    assert inside.sum() > 4000
    err = np.abs(out[inside].astype(int) - img[inside].astype(int))
    assert err.mean() < 2.0 and np.percentile(err, 99) < 8


def test_jitter_is_small_and_seeded():
    size = 128
    m = align.similarity_from_eyes((50, 60), (90, 60), size)
    a = align.jitter(m, size, 0.04, np.random.default_rng(3))
    b = align.jitter(m, size, 0.04, np.random.default_rng(3))
    assert np.array_equal(a, b)
    eyes = align.transform_points(a, [(50, 60), (90, 60)])
    want = np.array([align.CANONICAL_LEFT_EYE, align.CANONICAL_RIGHT_EYE]) * size
    assert np.abs(eyes - want).max() < 0.04 * size * 3   # scale + rotation + shift, each <= 4%
    assert np.array_equal(align.jitter(m, size, 0.0, np.random.default_rng(3)), m)
