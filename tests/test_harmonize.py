"""Paste-back without seams: the rim fill and the tone match on hand-made crops with a known answer."""

import cv2
import numpy as np

from mask2face.edge_runtime import harmonize

SKIN = np.array([0.80, 0.60, 0.50], np.float32)


def _lower_face_mask(size=128):
    m = np.zeros((size, size), np.uint8)
    cv2.ellipse(m, (size // 2, int(0.72 * size)), (int(0.3 * size), int(0.22 * size)), 0, 0, 360, 1, -1)
    return m.astype(bool)


def _ring(mask, inner, outer):
    m = mask.astype(np.uint8)
    return (cv2.dilate(m, harmonize._disc(outer)) - cv2.dilate(m, harmonize._disc(inner))).astype(bool)


def test_fill_rim_replaces_a_dark_rim_and_nothing_beyond_the_band():
    mask = _lower_face_mask()
    skin = np.full((128, 128, 3), 200, np.uint8)
    photo = skin.copy()
    rim = _ring(mask, 0, 2)
    photo[rim] = 30                                 # a dark 2 px rim left just outside the predicted mask
    filled = harmonize.fill_rim(photo, mask, 3)
    assert filled[rim].mean() > 150                 # the rim is gone: mostly the skin around it
    beyond = ~(_ring(mask, 0, 3) | mask)
    assert np.array_equal(filled[beyond], photo[beyond])
    assert np.array_equal(filled[mask], photo[mask])


def test_fill_rim_with_no_width_or_no_mask_returns_the_crop_unchanged():
    photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert harmonize.fill_rim(photo, np.zeros((64, 64), bool), 3) is photo
    assert harmonize.fill_rim(photo, _lower_face_mask(64), 0) is photo


def test_match_tone_takes_a_patch_that_is_too_bright_to_the_skin_around_it():
    mask = _lower_face_mask()
    photo = np.broadcast_to(SKIN, (128, 128, 3)).copy()
    restored = photo.copy()
    restored[mask] += 0.06                          # the patch is 15 levels too bright everywhere
    matched = harmonize.match_tone(restored, photo, mask, spread=13.0)
    edge = mask & ~cv2.erode(mask.astype(np.uint8), harmonize._disc(4)).astype(bool)
    before = np.abs(restored[edge] - photo[edge]).mean()
    after = np.abs(matched[edge] - photo[edge]).mean()
    assert after < 0.25 * before
    assert np.array_equal(matched[~mask], restored[~mask])     # nothing changes outside the patch


def test_match_tone_does_not_pull_the_patch_towards_a_dark_collar():
    mask = _lower_face_mask()
    photo = np.broadcast_to(SKIN, (128, 128, 3)).copy()
    photo[100:] = 0.05                              # a dark collar below the chin
    restored = photo.copy()
    restored[mask] = SKIN
    matched = harmonize.match_tone(restored, photo, mask, spread=13.0)
    error = np.abs(matched[mask] - SKIN)
    assert error.mean() < 0.01 and error.max() < 0.05   # only where skin and collar meet beside the chin


def test_match_tone_off_returns_the_patch():
    restored = np.random.default_rng(1).random((32, 32, 3)).astype(np.float32)
    assert harmonize.match_tone(restored, restored, _lower_face_mask(32), 0.0) is restored


def test_fill_rim_keeps_the_edge_between_chin_and_a_dark_collar():
    mask = _lower_face_mask()
    photo = np.full((128, 128, 3), 200, np.uint8)
    grown = cv2.dilate(mask.astype(np.uint8), harmonize._disc(3)).astype(bool)
    photo[~grown & (np.arange(128)[:, None] > 100)] = 20    # a dark collar right below the band at the chin
    filled = harmonize.fill_rim(photo, mask, 3)
    chin_band = grown & ~mask & (np.arange(128)[:, None] > 110)
    assert np.abs(filled[chin_band].astype(int) - photo[chin_band]).mean() < 10
