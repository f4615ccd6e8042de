"""Joining the faces of several views (stages, tiles, mirrors): shifting and mirroring them back, merging,
fusing a face's views of one model, and the confirmation rules between views and models."""

from __future__ import annotations

import numpy as np

from .blazeface import NMS_IOU
from .stages import MODEL_FAMILY
from .face import KP_IMAGE_LEFT_EYE, KP_IMAGE_RIGHT_EYE, KP_LEFT_EAR, KP_MOUTH, KP_NOSE, KP_RIGHT_EAR, Face, box_iou

CONFIRM_IOU = 0.4


def shift(faces: list[Face], dx: float, dy: float, stage: str) -> list[Face]:
    return [Face((f.box[0] + dx, f.box[1] + dy, f.box[2] + dx, f.box[3] + dy), f.score,
                 f.keypoints + [dx, dy], stage, f.keypoint_model) for f in faces]


def unflip(faces: list[Face], width: int, stage: str) -> list[Face]:
    """Detections on the mirrored photo back to the photo: x -> width - x; the eye keypoints swap so keypoint 0
    stays the image-left eye (ears too)."""
    out = []
    for f in faces:
        kps = f.keypoints.copy()
        kps[:, 0] = width - kps[:, 0]
        kps = kps[[KP_IMAGE_RIGHT_EYE, KP_IMAGE_LEFT_EYE, KP_NOSE, KP_MOUTH, KP_RIGHT_EAR, KP_LEFT_EAR]]
        out.append(Face((width - f.box[2], f.box[1], width - f.box[0], f.box[3]), f.score, kps, stage))
    return out


def map_faces(faces: list[Face], matrix: np.ndarray) -> list[Face]:
    """Faces through a 2x3 affine map (scale and shift: boxes stay axis-aligned)."""
    out = []
    for f in faces:
        corners = np.array(f.box, np.float64).reshape(2, 2) @ matrix[:, :2].T + matrix[:, 2]
        kps = f.keypoints.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
        out.append(Face(tuple(float(v) for v in corners.ravel()), f.score, kps.astype(f.keypoints.dtype), f.stage,
                        f.keypoint_model))
    return out


def merge(faces: list[Face], iou: float = NMS_IOU, last: tuple[str, ...] = (), fuse: bool = False) -> list[Face]:
    """Join detections from several stages/tiles: keep the best-scoring of overlapping faces; faces of the `last`
    stages only where no other stage's face overlaps them. `fuse`: each kept face takes the score-weighted mean box
    and keypoints of the faces that overlap it from views of the same model (fused_face)."""
    kept: list[Face] = []
    for f in sorted(faces, key=lambda f: (f.stage in last, -f.score)):
        if all(box_iou(np.array(f.box), np.array([k.box]))[0] <= iou and not _inside(f, k) for k in kept):
            kept.append(f)
    return [fused_face(k, faces, iou) for k in kept] if fuse else kept


def fused_face(kept: Face, faces: list[Face], iou: float = NMS_IOU) -> Face:
    """`kept` with the score-weighted mean box and keypoints of every face in `faces` of the same model family
    (MODEL_FAMILY) overlapping it (IoU > `iou`); score and stage stay kept's. The photo and its mirror (and tiles)
    are independent looks at one face, so averaging their keypoints halves their noise, and the mirror's systematic
    left/right offset cancels. Measured on the 400 generated LFW test photos (detect_bench --generated): corrected
    eyes vs dlib's 0.0342 -> 0.0285 crop sides (mean; p90 0.055 -> 0.044), with EYE_CORRECTION re-measured on fused
    keypoints; whole-photo masked PSNR 18.10 -> 18.19 dB (photo_bench). Other families are left out: short-range
    keypoints sit elsewhere (see the note in FaceDetector.detect)."""
    family = MODEL_FAMILY.get(kept.stage)
    group = [f for f in faces if MODEL_FAMILY.get(f.stage) == family
             and box_iou(np.array(f.box), np.array([kept.box]))[0] > iou]
    if len(group) < 2:
        return kept
    box = score_weighted(group, [f.box for f in group])
    keypoints = score_weighted(group, [f.keypoints for f in group])
    return Face(tuple(float(v) for v in box), kept.score, keypoints.astype(kept.keypoints.dtype), kept.stage)


def score_weighted(faces: list[Face], values: list) -> np.ndarray:
    """The mean of `values` (one array per face) weighted by the faces' scores, in float64."""
    return np.average(np.stack([np.asarray(v, np.float64) for v in values]), axis=0,
                      weights=[f.score for f in faces])


def _inside(a: Face, b: Face) -> bool:
    """a's centre lies inside b (a tile's partial face next to the whole face)."""
    cx, cy = (a.box[0] + a.box[2]) / 2, (a.box[1] + a.box[3]) / 2
    return b.box[0] <= cx <= b.box[2] and b.box[1] <= cy <= b.box[3]


def confirmed(found: dict[str, list[Face]], thresholds: dict[str, tuple[float, float]],
              iou: float = CONFIRM_IOU, cross: dict[str, float] | None = None) -> list[Face]:
    """Faces scoring >= their stage's accept threshold, plus those >= its confirmed threshold that overlap a face
    of another stage that is itself >= that stage's confirmed threshold, plus (with `cross`) those >= their stage's
    cross threshold that overlap a face of the other model's stages (MODEL_FAMILY) >= that stage's cross threshold."""
    cross = cross or {}

    def agrees(box, others: np.ndarray) -> bool:
        return bool(len(others)) and box_iou(np.array(box), others).max() >= iou

    keep = []
    for stage, faces in found.items():
        accept, low = thresholds[stage]
        others = np.array([f.box for s, fs in found.items() if s != stage for f in fs if f.score >= thresholds[s][1]])
        other_model = np.array([f.box for s, fs in found.items() if s in cross and stage in cross
                                and MODEL_FAMILY[s] != MODEL_FAMILY[stage] for f in fs if f.score >= cross[s]])
        for f in faces:
            if (f.score >= accept or (f.score >= low and agrees(f.box, others))
                    or (stage in cross and f.score >= cross[stage] and agrees(f.box, other_model))):
                keep.append(f)
    return keep
