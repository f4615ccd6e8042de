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


def _eyes(photo, size=128, value=0.1):
    """Two dark eyes at the crop's canonical eye positions (0.35 / 0.65, 0.37), drawn into `photo` in place."""
    eyes = np.zeros((size, size), np.uint8)
    for x in (0.35, 0.65):
        cv2.ellipse(eyes, (int(x * size), int(0.37 * size)), (6, 3), 0, 0, 360, 1, -1)
    photo[eyes.astype(bool)] = value
    return eyes.astype(bool)


def test_clean_rim_removes_a_dark_band_along_the_mask_top_and_leaves_the_eyes():
    mask = _lower_face_mask()
    photo = np.broadcast_to(SKIN, (128, 128, 3)).copy()
    eyes = _eyes(photo)
    border = _ring(mask, 0, 1) | (mask & ~cv2.erode(mask.astype(np.uint8), harmonize._disc(1)).astype(bool))
    top = border & (np.arange(128)[:, None] < 0.6 * 128)
    photo[top] = 0.15                               # the mask's dark hem: 1 px inside and 1 px outside its top
    cleaned = harmonize.clean_rim(photo, mask, 2)
    assert np.abs(cleaned[top] - SKIN).max() < 0.02                 # the band is skin again
    assert np.array_equal(cleaned[eyes], photo[eyes])               # the eyes: bit-identical
    far = ~cv2.dilate(mask.astype(np.uint8), harmonize._disc(8)).astype(bool)
    assert np.array_equal(cleaned[far], photo[far])                 # nothing beyond the band's feather changes
    core = cv2.erode(mask.astype(np.uint8), harmonize._disc(6)).astype(bool)
    assert np.array_equal(cleaned[core], photo[core])


def test_clean_rim_keeps_the_edge_between_chin_and_a_dark_collar():
    mask = _lower_face_mask()
    photo = np.broadcast_to(SKIN, (128, 128, 3)).copy()
    rows = np.arange(128)[:, None] > 0.72 * 128
    photo[~mask & rows] = 0.05                      # a dark collar right against the chin, below the face's middle
    cleaned = harmonize.clean_rim(photo, mask, 2)
    # a median keeps a step edge: skin stays skin inside the chin, the collar stays dark outside it
    inside = mask & rows & ~cv2.erode(mask.astype(np.uint8), harmonize._disc(2)).astype(bool)
    outside = _ring(mask, 1, 3) & rows
    assert np.abs(cleaned[inside] - SKIN).mean() < 0.02
    assert np.abs(cleaned[outside] - 0.05).mean() < 0.02


def test_clean_rim_leaves_an_eye_the_model_marked_as_a_speck_of_mask():
    mask = _lower_face_mask()
    photo = np.broadcast_to(SKIN, (128, 128, 3)).copy()
    eyes = _eyes(photo)
    speck = np.zeros_like(mask)
    speck[46:49, 82:86] = True                      # a few pixels of "mask" in the right eye
    cleaned = harmonize.clean_rim(photo, mask | speck, 2)
    assert np.array_equal(cleaned[eyes], photo[eyes])


def test_clean_rim_with_no_width_or_no_mask_returns_the_crop_unchanged():
    photo = np.random.default_rng(2).random((64, 64, 3)).astype(np.float32)
    assert harmonize.clean_rim(photo, np.zeros((64, 64), bool), 2) is photo
    assert harmonize.clean_rim(photo, _lower_face_mask(64), 0) is photo


def test_limit_chroma_pulls_an_orange_patch_to_the_cheeks_colour_and_keeps_its_brightness():
    s = 128
    photo = np.empty((s, s, 3), np.float32)
    photo[:] = (0.75, 0.6, 0.5)                                 # skin
    photo[100:] = (0.1, 0.1, 0.6)                               # a blue collar below the mask: not the reference
    mask = np.zeros((s, s), bool)
    mask[70:110, 40:88] = True
    patch = photo.copy()
    patch[mask] = (0.95, 0.45, 0.1)                             # an orange lower face
    out = harmonize.limit_chroma(patch, photo, mask, 0.03, 4)
    assert np.array_equal(out[~mask], patch[~mask])             # outside the mask: untouched
    np.testing.assert_allclose(out[mask].mean(axis=-1), patch[mask].mean(axis=-1), atol=1e-6)   # brightness kept
    skin = photo[0, 0] - photo[0, 0].mean()
    colour = out[mask] - out[mask].mean(axis=-1, keepdims=True)
    assert np.abs(np.linalg.norm(colour - skin, axis=-1) - 0.03).max() < 1e-5   # on the circle around the skin's
    assert np.array_equal(harmonize.limit_chroma(patch, photo, mask, 0.0, 4), patch)
