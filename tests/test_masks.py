"""train.masks: placement guarantees on real landmarks (dlib on skimage's astronaut) under simulated head poses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mask2face.edge_runtime import align
from mask2face.train import masks

SIZE = 128


@pytest.fixture(scope="module")
def astronaut_face():
    """(aligned crop, its 68 landmarks) from the astronaut photo that ships with scikit-image."""
    skimage_data = pytest.importorskip("skimage.data")
    from mask2face.train import faces
    img = skimage_data.astronaut()
    det = faces.detect(img, "hog")
    assert det.landmarks is not None and det.stage == "hog"
    m = align.similarity_from_eyes(*align.eye_centers_from_68(det.landmarks), SIZE)
    return align.crop(img, m, SIZE), align.transform_points(m, det.landmarks)


def _posed(face, lm, roll_deg=0.0, yaw=0.0, scale=1.0):
    """Simulate a head pose on the crop: rotate/scale about the centre (roll) and squash one side of the face
    horizontally (a cheap yaw: the far half of the face gets narrower)."""
    c = SIZE / 2
    m = cv2.getRotationMatrix2D((c, c), roll_deg, scale)
    img = cv2.warpAffine(face, m, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT101)
    pts = align.transform_points(m, lm)
    if yaw:
        nose_x = pts[30, 0]
        left = pts[:, 0] < nose_x
        pts = pts.copy()
        pts[left, 0] = nose_x - (nose_x - pts[left, 0]) * (1 - yaw)
    return img, pts


POSES = [dict(), dict(roll_deg=25), dict(roll_deg=-30, scale=0.8), dict(yaw=0.45), dict(roll_deg=12, yaw=0.3,
                                                                                       scale=1.15)]


def _neigh(mask, pt):
    x, y = int(round(pt[0])), int(round(pt[1]))
    return mask[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]


@pytest.mark.parametrize("kind", masks.MASK_TYPES)
def test_eyes_free_mouth_covered_outside_unchanged(astronaut_face, kind):
    face, lm = astronaut_face
    for pose in POSES:
        img, pts = _posed(face, lm, **pose)
        for seed in range(4):
            out, m, info = masks.render(img, pts, kind, seed)
            assert m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255}
            for p in pts[36:48]:      # no eye landmark (nor its 3x3 neighbourhood) is covered
                if 0 <= p[0] < SIZE and 0 <= p[1] < SIZE:
                    assert not _neigh(m, p).any(), (kind, pose, seed)
            for p in pts[48:68]:      # every mouth landmark is covered
                assert m[int(round(p[1])), int(round(p[0]))] == 255, (kind, pose, seed)
            assert np.array_equal(out[m == 0], img[m == 0])   # exactly unchanged outside the mask
            assert (out[m > 0] != img[m > 0]).any()
            # it reaches the nose bridge and goes below the chin: a real mask's extent, not a mouth patch
            frame = masks.FaceFrame.from_landmarks(pts)
            U, V = frame.grid(SIZE, SIZE)
            L = frame.to_face(pts)
            assert V[m > 0].min() < L[31:36, 1].min()          # above the nostrils
            assert V[m > 0].max() > L[8, 1]                    # below the chin point
            assert info["type"] == kind


def test_same_seed_same_bytes_other_seed_differs(astronaut_face):
    face, lm = astronaut_face
    for kind in masks.MASK_TYPES:
        a = masks.render(face, lm, kind, 123)
        b = masks.render(face, lm, kind, 123)
        c = masks.render(face, lm, kind, 124)
        assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
        assert a[0].tobytes() != c[0].tobytes()


def test_types_look_different(astronaut_face):
    face, lm = astronaut_face
    outs = {k: masks.render(face, lm, k, 7) for k in masks.MASK_TYPES}
    # the gaiter hangs lower than a surgical mask on average over seeds
    low = lambda k: np.mean([np.nonzero(masks.render(face, lm, k, s)[1])[0].max() for s in range(6)])
    assert low("gaiter") > low("surgical")
    # the polygon type is one flat colour; the others have texture/shading
    poly_px = outs["polygon"][0][outs["polygon"][1] > 0]
    assert len(np.unique(poly_px, axis=0)) <= 2
    for k in ("surgical", "cloth", "n95", "respirator", "gaiter"):
        assert len(np.unique(outs[k][0][outs[k][1] > 0], axis=0)) > 20, k


def test_unknown_type_is_an_error(astronaut_face):
    with pytest.raises(ValueError, match="unknown mask type"):
        masks.render(*astronaut_face, "scarf", 0)
