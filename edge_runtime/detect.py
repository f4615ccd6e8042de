"""Face finding for the runtime: CenterFace, then MediaPipe BlazeFace views, in LiteRT; chosen by measurement.

CenterFace (centerface.py) runs first on every photo and its faces are final: on the 150
annotated photos of data/real-masked-dev the runtime finds 95.1% of the with-mask faces >= 40 px (95.8% on the
half its threshold was chosen on, 94.4% on the other), at 0.15 false detections per photo and none on 21 face-free
pictures, where the BlazeFace cascade below found 91.4% (96.6% / 86.5%) at 0.18 (benchmarks/results/detect.jsonl,
variants "centerface-int8-v2" and "fused-v1"). Each CenterFace face is then looked at again by BlazeFace's full-range
model (FaceDetector.refined), whose eye keypoints are closer to dlib's than CenterFace's own (0.041 vs 0.069 eye
distances after correction, detect_calibration.jsonl); where that look finds nothing, CenterFace's eyes are used
with their own correction. Only where CenterFace finds nothing (close-ups and tight crops, whose face fills the
photo; 15 of 565 real masked photos, 9 of them then found) does the BlazeFace cascade run.

Why BlazeFace at all: on real photos of people wearing masks (data/real-masked-dev) BlazeFace full-range finds a
face in 84% of photos, dlib HOG in 37% (../shared/MEASURED.md); masks hide the mouth and jaw that HOG relies on,
while BlazeFace is trained on varied, partly occluded faces and costs 5-7 ms per photo on two cores. Each
detection has a box, a score and six keypoints; the two eye keypoints drive the canonical crop
(align.similarity_from_eyes).

BlazeFace stages (FaceDetector._blazeface_cascade, the whole BlazeFace-only cascade):
  union     full (full-range 192x192 on the letterboxed photo), flip (same on the mirrored photo), tiles (2x2
            overlapping tiles, photos >= 384 px), short_tiles (short-range 128x128 model on 3x3 tiles, for the
            small faces of crowd photos) and short (short-range on the whole photo, a confirming view only).
            Tiled stages are skipped once a big face is found. A face counts if its score passes its stage's
            accept threshold, or a lower threshold when another stage agrees (UNION_THRESHOLDS, `confirmed`), or
            when the other model (full-range vs short-range) agrees (CROSS_THRESHOLDS).
  fallback  padded (full-range on the photo with a 30% border: tight crops put the face at the edge), then short
            (short-range on the whole photo, close-ups), then dlib HOG if importable; only where nothing was
            found, at FALLBACK_THRESHOLD.
Measured on data/real-masked-dev (benchmarks/detect_bench.py, variant "fused-v1"): recall of annotated with-mask
faces >= 40 px 91.4% (96.6% on the 75 photos the thresholds were chosen on, 86.5% on the other 75; "cross-v1"
without fusion: 91.0%, 95.8% / 86.5%; "confirm-v1" before the cross-model rule: 87%, 92% / 83%), 0.18 false
detections per annotated photo, none on 21 face-free scikit-image pictures. The union keeps each face's best
detection with the score-weighted mean box and keypoints of the same model's views of it (fused_face); a face the
whole-photo pass saw small then gets its keypoints from a closer look (FaceDetector.refined, REFINE_SCALE).

Decoding (anchors, box/keypoint decoding, weighted NMS) follows the MIT-licensed face-detection-tflite package,
Copyright (c) 2021 Patrick Levin (SPDX-License-Identifier: MIT), itself a port of MediaPipe's calculators;
re-written here in vectorised numpy with OpenCV letterboxing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import native_log
from .centerface import CenterFace
from .model import _litert

ASSETS = Path(__file__).resolve().parent / "assets"
FULL_RANGE = ASSETS / "face_detection_full_range.tflite"
SHORT_RANGE = ASSETS / "face_detection_short_range.tflite"

MIN_SCORE = 0.5               # MediaPipe's default; face-free scikit-image pictures peaked at 0.43 (MEASURED.md)
NMS_IOU = 0.3                 # MediaPipe's min_suppression_threshold
RAW_SCORE_LIMIT = 80.0        # clip logits before the sigmoid (float32 overflow), as MediaPipe/fdlite do
PAD_FRACTION = 0.30
PADDED_MAX_SIDE = 1024        # the padded copy's longer side at most (640x480 photos pad to exactly 1024)
# Tiled stages are skipped once a face at least this share of the photo's longer side is found (confidently):
# a portrait's small background faces are not worth 13 more invokes (LFW at 640x480 stays >= 15 photos/s).
TILE_SKIP_FRACTION = 0.30
TILE_OVERLAP = 0.4            # of a tile's side: 2x2 tiles are 0.625 of the photo, 3x3 tiles 0.455
STAGES = ("centerface", "centerface_tiles", "full", "flip", "tiles", "tiles2", "tiles3", "padded", "short",
          "short_tiles", "dlib")
# Union stages always run (tiles ones unless every face is big) and their faces are joined. Each has two
# thresholds (accept, confirmed): a face scoring >= accept counts on its own; one scoring >= confirmed counts only
# if another union stage found an overlapping face (IoU >= CONFIRM_IOU) above that stage's confirmed threshold.
# Agreement between views (the mirrored photo, tiles, the short-range model on 3x3 tiles) lets true small faces
# through at a lower score while single-view noise stays out. Chosen on the 75 even-numbered annotated FMD photos
# of data/real-masked-dev (sorted by name), checked on the 75 odd ones and on face-free scikit-image pictures
# (benchmarks/detect_bench.py, rows with variant "confirm-v1" in benchmarks/results/detect.jsonl).
# short_tiles never counts alone (accept > 1): on its own it fires on coffee, cells and the Hubble field.
# short (the short-range model on the whole photo) is a union stage only as a confirming view (never counts alone
# there; it stays a fallback of its own at FALLBACK_THRESHOLD, see FALLBACK_REUSE).
UNION_THRESHOLDS = {"full": (0.5, 0.35), "flip": (0.5, 0.35), "tiles": (0.6, 0.6), "short_tiles": (1.01, 0.5),
                    "short": (1.01, 1.01)}
CONFIRM_IOU = 0.4
# Cross-model agreement: a face of a full-range view scoring >= its CROSS_THRESHOLDS value also counts when a
# short-range view found an overlapping face >= its value, and the other way round. The two models are trained
# apart and fail on different things (full-range views fire together on the Hubble field, short-range ones on coins
# and cells), while same-model views (full/flip/tiles) share their mistakes, so tiles need 0.6 to agree with full
# but only 0.4 to agree with the short-range model. Misses diagnosed on real-masked-dev were mostly small masked
# faces found by tiles at 0.45-0.6 and by short_tiles/short at 0.5-0.8. Chosen on the pick half (even FMD photos):
# recall 92% -> 96% there, 83% -> 87% on the check half (not used to choose), false detections 0.18 -> 0.19 per
# photo, none on the face-free pictures (variant "cross-v1" in benchmarks/results/detect.jsonl).
# Keypoint refinement: a found face is looked at again on a FULL_OPTIONS.input_size square cut around it, REFINE_SCALE
# times its box's longer side, and on the cut's mirror; the face's keypoints become the score-weighted mean of
# those two views (its box and score stay). In a 640x480 photo the first pass sees a face at ~0.3 of its pixels,
# too coarse for the eyes that fix the crop; the cut sees it at LFW's framing, where EYE_CORRECTION is measured.
# Chosen on the LFW *val* pairs (photo_bench --split val): whole-photo masked PSNR 18.08 -> 18.36 dB at 640x480
# and 18.08 -> 18.14 dB at LFW's own 250 px for 2.0 (2.5: 18.36 / 18.10; 1.5: 17.69 / 17.61, the face fills the
# cut; 2.0 without the mirror: 18.19 / 17.99). Costs two full-range invokes per face.
REFINE_SCALE = 2.0
# Only where the cut magnifies the face at least this much: LFW's own 250 px photos gain little (the face is
# already ~85 px in the whole-photo pass) and every refined face costs two invokes. On the val pairs 1.5 keeps the
# gain (18.35 dB at 640x480, 18.11 at 250 px; 1.25: 18.36 / 18.12; always: 18.36 / 18.13).
REFINE_MIN_ZOOM = 1.5
REFINE_MIN_SCORE = 0.3        # a view's face counts if it overlaps the found face (IoU > NMS_IOU) at this score
MODEL_FAMILY = {"full": "full_range", "flip": "full_range", "tiles": "full_range", "tiles2": "full_range",
                "tiles3": "full_range", "padded": "full_range", "short": "short_range", "short_tiles": "short_range"}
CROSS_THRESHOLDS = {"full": 0.4, "flip": 0.4, "tiles": 0.4, "short_tiles": 0.5, "short": 0.5}
# Fallbacks run only where the union found nothing. 0.65, not 0.5: the padded photo of scikit-image's coins
# scores 0.60 and the short-range model on its colour wheel 0.58.
FALLBACK_THRESHOLD = 0.65
UNION_STAGES = tuple(UNION_THRESHOLDS)
# Union stages that are also fallbacks (their union detections are reused, not run again).
FALLBACK_REUSE = ("short",)
# Union stages whose faces give way in merge() to any overlapping face of another stage.
CONFIRMING_STAGES = ("short",)
TILED_STAGES = ("tiles", "tiles2", "tiles3", "short_tiles")
DEFAULT_STAGES = ("centerface", "centerface_tiles", "full", "flip", "tiles", "short_tiles", "padded", "short")
# CenterFace (centerface.py) runs first; where it finds a face at CENTERFACE_THRESHOLD, the BlazeFace stages do not
# run. Chosen on the pick half of real-masked-dev's annotated photos (`detect_bench --runtime-only
# --centerface-threshold T`, rows "centerface-int8-*"): the highest recall there with no detection on the face-free
# pictures and no more false detections per photo than the BlazeFace cascade (0.18). 0.5 gives 95.8% at 0.15
# (0.45: 95.8% at 0.23; 0.55: 94.1% at 0.11; before scores of exactly the threshold counted, rows "-v1": 0.4: 96.6%
# at 0.32, 0.3: 97.5% at 0.65 and one face-free hit); on the check half, not used to choose: 94.4% (the BlazeFace
# cascade: 86.5%).
CENTERFACE_THRESHOLD = 0.5
# CenterFace sees every photo in a 416x320 canvas, so in a big photo a face of 40 px becomes 10-15 px. Photos at
# least twice the canvas are also looked at in 2x2 overlapping tiles (TILE_OVERLAP; each tile again in the canvas),
# unless a face of TILE_SKIP_FRACTION of the photo is found (a portrait). Measured on mosaics of 3x3 annotated
# real-masked-dev photos (`detect_bench --mosaic 3`), see the "mosaic" rows in detect.jsonl.
CENTERFACE_TILE_MIN_SIDE = 832
CENTERFACE_STAGES = ("centerface", "centerface_tiles")

# Keypoint indices in the model output. BlazeFace is trained on mirrored (selfie) images: keypoint 0 is the eye
# that appears on the image's LEFT in an unmirrored photo, i.e. the person's right eye (checked on LFW photos
# against dlib's 68 landmarks, see benchmarks/detect_bench.py --calibrate).
KP_IMAGE_LEFT_EYE, KP_IMAGE_RIGHT_EYE, KP_NOSE, KP_MOUTH, KP_LEFT_EAR, KP_RIGHT_EAR = range(6)

# Systematic offset of BlazeFace's eye keypoints from dlib's 68-landmark eye centres (mean of points 36-41 /
# 42-47), which define the training crop. In eye-distance units, in the face frame: u along the eye line
# (image-left eye -> image-right eye), v perpendicular (downwards). Adding it makes the runtime crop match the
# training crop. Measured by `python -m mask2face.benchmarks.detect_bench --calibrate` on LFW photos with the
# runtime's own cascade, every face refined (FaceDetector.refined); see benchmarks/results/detect_calibration.jsonl
# for the runs (n, spread, before/after error).
# Result (200 LFW photos, 200 pairs): left (+0.0084, -0.0028), right (-0.0382, -0.0076), spread (std) 0.032-0.043
# per axis; mean eye error 0.048 -> 0.042 eye distances after correction. Unrefined keypoints fused over the photo
# and its mirror (fused_face): (+0.0121, -0.0002) / (-0.0366, -0.0074), 0.047 -> 0.041; full-range
# keypoints alone: (+0.0144, +0.0069) / (-0.0365, -0.0130), 0.052 -> 0.047. dlib's eye centres sit slightly
# closer together than BlazeFace's: without this the runtime crop would be ~5% smaller in scale than training.
EYE_CORRECTION = {"left": (0.0084, -0.0028), "right": (-0.0382, -0.0076)}
# The same for CenterFace's eye landmarks (faces whose keypoints no BlazeFace view refined), measured the same way
# (`detect_bench --calibrate --stages centerface --no-refine`, 199 pairs, the int8 asset): mean eye error 0.082 ->
# 0.069 eye distances after correction, spread 0.053-0.061 per axis (float16 weights: 0.074 -> 0.065). Coarser than
# refined BlazeFace keypoints (0.041), so CenterFace's faces are refined (FaceDetector.detect) and these serve where
# no BlazeFace view finds the face.
CENTERFACE_EYE_CORRECTION = {"left": (0.0099, -0.0083), "right": (-0.0712, -0.0084)}
EYE_CORRECTIONS = {"full_range": EYE_CORRECTION, "centerface": CENTERFACE_EYE_CORRECTION}


@dataclass(frozen=True)
class SsdOptions:
    input_size: int
    strides: tuple[int, ...]
    interpolated_scale_aspect_ratio: float


FULL_OPTIONS = SsdOptions(192, (4,), 0.0)
SHORT_OPTIONS = SsdOptions(128, (8, 16, 16, 16), 1.0)


def ssd_anchors(opts: SsdOptions) -> np.ndarray:
    """Anchor centres (N, 2) in [0,1], as MediaPipe's SsdAnchorsCalculator (fixed anchor size 1)."""
    anchors = []
    strides = list(opts.strides)
    layer = 0
    while layer < len(strides):
        last = layer
        repeats = 0
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
            repeats += 2 if opts.interpolated_scale_aspect_ratio == 1.0 else 1
        n = opts.input_size // strides[layer]
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1)
        anchors.append(np.repeat(grid, repeats, axis=0))
        layer = last
    return np.concatenate(anchors).astype(np.float32)


@dataclass(frozen=True)
class Face:
    """A face in image pixels: box (x0, y0, x1, y1), score, keypoints (6, 2) in the model's order."""
    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray = field(repr=False)
    stage: str = "full"
    # Which model placed the keypoints: BlazeFace's full-range model (also the short-range one, only ever a
    # confirming view) or CenterFace, whose (6, 2) keypoints are its eyes, nose, mouth centre and mouth corners.
    keypoint_model: str = "full_range"

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    def raw_eyes(self) -> tuple[np.ndarray, np.ndarray]:
        return self.keypoints[KP_IMAGE_LEFT_EYE].astype(np.float64), self.keypoints[KP_IMAGE_RIGHT_EYE].astype(np.float64)

    def eyes(self) -> tuple[np.ndarray, np.ndarray]:
        """(image-left, image-right) eye centres corrected to dlib's definition, for align.similarity_from_eyes."""
        return correct_eyes(*self.raw_eyes(), EYE_CORRECTIONS[self.keypoint_model])

    def to_dict(self) -> dict:
        return {"box": [round(float(v), 1) for v in self.box], "score": round(float(self.score), 4),
                "stage": self.stage, "keypoints": np.round(self.keypoints, 1).tolist(),
                "keypoint_model": self.keypoint_model}


def correct_eyes(left: np.ndarray, right: np.ndarray, correction: dict | None = None):
    correction = EYE_CORRECTION if correction is None else correction
    u = right - left
    d = float(np.hypot(*u))
    if d < 1e-6:
        return left, right
    u = u / d
    v = np.array([-u[1], u[0]])  # perpendicular, pointing down the face in image coordinates
    lu, lv = correction["left"]
    ru, rv = correction["right"]
    return left + d * (lu * u + lv * v), right + d * (ru * u + rv * v)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
    """Resize keeping the aspect ratio into a size x size black square. Returns (square, scale, pad_x, pad_y)
    with image = (square - pad) / scale."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size, size, 3), np.uint8)
    px, py = (size - nw) // 2, (size - nh) // 2
    out[py:py + nh, px:px + nw] = resized
    return out, scale, float(px), float(py)


def weighted_nms(boxes: np.ndarray, kps: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU):
    """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of the boxes and keypoints that
    overlap it by more than `iou`, with the top score. Inputs sorted or not; returns lists."""
    order = np.argsort(-scores)
    boxes, kps, scores = boxes[order], kps[order], scores[order]
    remaining = np.arange(len(scores))
    out = []
    while len(remaining):
        top = remaining[0]
        ious = box_iou(boxes[top], boxes[remaining])
        group = remaining[ious > iou]
        if len(group) == 0:
            group = np.array([top])
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(0) / w.sum()
        kp = (kps[group] * w[:, :, None]).sum(0) / w.sum()
        out.append((box, kp, float(scores[top])))
        remaining = remaining[ious <= iou]
        remaining = remaining[remaining != top]
    return out


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    boxes = np.atleast_2d(boxes)
    ix0 = np.maximum(box[0], boxes[:, 0])
    iy0 = np.maximum(box[1], boxes[:, 1])
    ix1 = np.minimum(box[2], boxes[:, 2])
    iy1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area(box) + area(boxes) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


class BlazeFace:
    """One BlazeFace .tflite: `detect(rgb)` -> list of Face on the whole image (letterboxed)."""

    def __init__(self, path: Path, opts: SsdOptions, threads: int = 2, name: str = "full"):
        Interpreter, _ = _litert()
        with native_log.filtered_stderr():
            self.interpreter = Interpreter(model_path=str(path), num_threads=max(1, int(threads)))
            self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        outs = sorted(self.interpreter.get_output_details(), key=lambda d: -int(d["shape"][-1]))
        self.box_index, self.score_index = outs[0]["index"], outs[1]["index"]
        self.opts = opts
        self.anchors = ssd_anchors(opts)
        self.name = name

    def raw(self, image: np.ndarray, min_score: float):
        """(boxes (N,4), keypoints (N,6,2), scores (N,)) in `image` pixels above `min_score`, before NMS."""
        size = self.opts.input_size
        square, scale, px, py = letterbox(image, size)
        x = (square.astype(np.float32) / 127.5 - 1.0)[None]  # BlazeFace takes [-1, 1]
        self.interpreter.set_tensor(self.input_index, x)
        self.interpreter.invoke()
        reg = self.interpreter.get_tensor(self.box_index)[0]
        logits = np.clip(self.interpreter.get_tensor(self.score_index)[0, :, 0], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= min_score
        if not keep.any():
            return np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros((0,))
        reg, scores, anchors = reg[keep], scores[keep], self.anchors[keep]
        pts = reg.reshape(-1, 8, 2) / size               # (cx, cy), (w, h), 6 keypoints; all / input size
        centre = pts[:, 0] + anchors
        half = pts[:, 1] / 2
        boxes = np.concatenate([centre - half, centre + half], axis=1) * size
        kps = (pts[:, 2:] + anchors[:, None]) * size
        # Undo the letterbox: model pixels -> image pixels.
        boxes = (boxes - [px, py, px, py]) / scale
        kps = (kps - [px, py]) / scale
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[valid], kps[valid], scores[valid]

    def detect(self, image: np.ndarray, min_score: float = MIN_SCORE) -> list[Face]:
        boxes, kps, scores = self.raw(image, min_score)
        return [Face(tuple(float(v) for v in b), s, k, self.name) for b, k, s in weighted_nms(boxes, kps, scores)]

    def top_score(self, image: np.ndarray) -> float:
        _, _, scores = self.raw(image, 0.0)
        return float(scores.max()) if len(scores) else 0.0


def _shift(faces: list[Face], dx: float, dy: float, stage: str) -> list[Face]:
    return [Face((f.box[0] + dx, f.box[1] + dy, f.box[2] + dx, f.box[3] + dy), f.score,
                 f.keypoints + [dx, dy], stage, f.keypoint_model) for f in faces]


class CenterFaceFaces:
    """CenterFace's detections as Faces; keypoints: its two eyes, nose, mouth centre, the two mouth corners."""

    def __init__(self, threads: int = 2):
        self.model = CenterFace(threads=threads)

    def detect(self, image: np.ndarray, min_score: float) -> list[Face]:
        boxes, points, scores = self.model.raw(image, min_score)
        return [Face(tuple(float(v) for v in box), float(score),
                     np.concatenate([pts[:3], pts[3:].mean(0, keepdims=True), pts[3:]]).astype(np.float32),
                     "centerface", "centerface") for box, pts, score in zip(boxes, points, scores)]


def _unflip(faces: list[Face], width: int, stage: str) -> list[Face]:
    """Detections on the mirrored photo back to the photo: x -> width - x; the eye keypoints swap so keypoint 0
    stays the image-left eye (ears too)."""
    out = []
    for f in faces:
        kps = f.keypoints.copy()
        kps[:, 0] = width - kps[:, 0]
        kps = kps[[KP_IMAGE_RIGHT_EYE, KP_IMAGE_LEFT_EYE, KP_NOSE, KP_MOUTH, KP_RIGHT_EAR, KP_LEFT_EAR]]
        out.append(Face((width - f.box[2], f.box[1], width - f.box[0], f.box[3]), f.score, kps, stage))
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
    box = _score_weighted(group, [f.box for f in group])
    keypoints = _score_weighted(group, [f.keypoints for f in group])
    return Face(tuple(float(v) for v in box), kept.score, keypoints.astype(kept.keypoints.dtype), kept.stage)


def _score_weighted(faces: list[Face], values: list) -> np.ndarray:
    """The mean of `values` (one array per face) weighted by the faces' scores, in float64."""
    return np.average(np.stack([np.asarray(v, np.float64) for v in values]), axis=0,
                      weights=[f.score for f in faces])


def _inside(a: Face, b: Face) -> bool:
    """a's centre lies inside b (a tile's partial face next to the whole face)."""
    cx, cy = (a.box[0] + a.box[2]) / 2, (a.box[1] + a.box[3]) / 2
    return b.box[0] <= cx <= b.box[2] and b.box[1] <= cy <= b.box[3]


class FaceDetector:
    """The cascade. `detect(rgb)` returns faces sorted by score; `last_stage` says which stage found them."""

    def __init__(self, threads: int = 2, min_score: float | None = None, stages: tuple[str, ...] = DEFAULT_STAGES,
                 thresholds: dict[str, tuple[float, float]] | None = None,
                 fallback_threshold: float = FALLBACK_THRESHOLD, cross: dict[str, float] | None = None,
                 refine: bool = True):
        """`min_score` None: each union stage keeps what its (accept, confirmed) thresholds and the cross-model
        thresholds allow, and fallbacks use `fallback_threshold`. A number: one plain threshold for every stage
        (benchmarks collect with a low floor and apply thresholds afterwards)."""
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown detector stage(s) {sorted(unknown)}; choose from {STAGES}")
        table = dict(UNION_THRESHOLDS if thresholds is None else thresholds)
        if min_score is not None:
            table = {s: (min_score, min_score) for s in table}
            fallback_threshold = min_score
        cross_table = dict(CROSS_THRESHOLDS if cross is None else cross)
        if min_score is not None:
            cross_table = {s: min_score for s in cross_table}
        self.thresholds = {s: table[s] for s in stages if s in table}
        self.cross = {s: cross_table[s] for s in self.thresholds if s in cross_table}
        # Run union stages down to their lowest threshold; `confirmed` decides afterwards.
        self.min_score = min([lo for _, lo in self.thresholds.values()] + list(self.cross.values())
                             + [fallback_threshold])
        self.fallback_threshold = fallback_threshold
        self.refine = refine
        self.stages = tuple(stages)
        self.centerface_threshold = CENTERFACE_THRESHOLD if min_score is None else min_score
        self.centerface = CenterFaceFaces(threads=threads) if "centerface" in stages else None
        self.full = BlazeFace(FULL_RANGE, FULL_OPTIONS, threads, "full")
        self.short = BlazeFace(SHORT_RANGE, SHORT_OPTIONS, threads, "short") if {"short", "short_tiles"} & set(stages) else None
        self._dlib = _dlib_detector() if "dlib" in stages else None
        self.last_stage: str | None = None
        self.last_seconds = 0.0

    def run_stage(self, stage: str, image: np.ndarray) -> list[Face]:
        h, w = image.shape[:2]
        if stage == "centerface" and self.centerface is not None:
            return self.centerface.detect(image, self.centerface_threshold)
        if stage == "centerface_tiles" and self.centerface is not None:
            if max(h, w) < CENTERFACE_TILE_MIN_SIDE:
                return []
            return self._tiles(image, 2, self.centerface, "centerface_tiles", self.centerface_threshold)
        if stage == "full":
            return self.full.detect(image, self.min_score)
        if stage == "flip":
            return _unflip(self.full.detect(cv2.flip(image, 1), self.min_score), w, "flip")
        if stage == "padded":
            # The model sees the padded photo at FULL_OPTIONS.input_size anyway: pad a copy no bigger than
            # PADDED_MAX_SIDE, so a 60000x8 PNG (a few KB, within the pixel limit) cannot ask for gigabytes here.
            scale = min(1.0, PADDED_MAX_SIDE / ((1 + 2 * PAD_FRACTION) * max(h, w)))
            small = image if scale == 1.0 else cv2.resize(
                image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            p = int(round(PAD_FRACTION * max(small.shape[:2])))
            padded = cv2.copyMakeBorder(small, p, p, p, p, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            faces = _shift(self.full.detect(padded, self.min_score), -p, -p, "padded")
            return faces if scale == 1.0 else _map_faces(faces, np.array([[1 / scale, 0, 0], [0, 1 / scale, 0]]))
        if stage == "tiles":
            if max(h, w) < 2 * FULL_OPTIONS.input_size:
                return []  # tiling a small photo only upsamples it
            return self._tiles(image, 2, self.full, "tiles")
        if stage == "tiles3":
            return self._tiles(image, 3, self.full, "tiles3")
        if stage == "tiles2":
            return self._tiles(image, 2, self.full, "tiles2")
        if stage == "short" and self.short is not None:
            return self.short.detect(image, self.min_score)
        if stage == "short_tiles" and self.short is not None:
            return self._tiles(image, 3, self.short, "short_tiles")
        if stage == "dlib" and self._dlib is not None:
            return self._dlib(image)
        return []

    def _tiles(self, image: np.ndarray, grid: int, model: "BlazeFace | CenterFaceFaces", stage: str,
               min_score: float | None = None) -> list[Face]:
        """grid x grid tiles overlapping by TILE_OVERLAP of a tile (a face cut by one tile border is whole in a
        neighbour). Each tile is letterboxed to the model's input, so on small photos tiles are upsampled."""
        h, w = image.shape[:2]
        t = 1.0 / (grid - (grid - 1) * TILE_OVERLAP)      # tile side as a share of the photo side
        th, tw = max(1, int(round(h * t))), max(1, int(round(w * t)))
        found, floor = [], self.min_score if min_score is None else min_score
        for y0 in np.linspace(0, h - th, grid).round().astype(int):
            for x0 in np.linspace(0, w - tw, grid).round().astype(int):
                found += _shift(model.detect(image[y0:y0 + th, x0:x0 + tw], floor), x0, y0, stage)
        return merge(found)

    def closer_look(self, image: np.ndarray, face: Face) -> list[Face]:
        """The faces the full-range model finds on a cut around `face` (REFINE_SCALE times its size) and on the
        cut's mirror that overlap `face` (IoU > NMS_IOU), in image pixels."""
        side = FULL_OPTIONS.input_size
        to_cut = refine_cut(face.box, side)
        cut = cv2.warpAffine(image, to_cut, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        views = self.full.detect(cut, REFINE_MIN_SCORE)
        views += _unflip(self.full.detect(cv2.flip(cut, 1), REFINE_MIN_SCORE), side, "flip")
        return [f for f in _map_faces(views, cv2.invertAffineTransform(to_cut))
                if box_iou(np.array(f.box), np.array([face.box]))[0] > NMS_IOU]

    def refined(self, image: np.ndarray, face: Face) -> Face:
        """`face` with keypoints from a closer look, its views averaged by score; unchanged if neither view finds
        it again."""
        views = self.closer_look(image, face)
        if not views:
            return face
        keypoints = _score_weighted(views, [f.keypoints for f in views])
        return Face(face.box, face.score, keypoints.astype(face.keypoints.dtype), face.stage)

    def followed(self, image: np.ndarray, face: Face) -> Face | None:
        """`face`, known from an earlier video frame, found again in `image` by the closer look alone (None if
        neither view finds it): keypoints and score from its views, and `face`'s box moved as its eyes moved. Moving
        the box keeps the next cut framed as the full detector's box frames it. With the views' own boxes
        (BlazeFace's, tighter than CenterFace's) the eyes wandered more over a clip: p50 0.031 eye distances against
        0.023 with the moved box and 0.022 with the full detector on every frame (10 clips of track_bench,
        0.1.0)."""
        views = self.closer_look(image, face)
        if not views:
            return None
        keypoints = _score_weighted(views, [f.keypoints for f in views]).astype(face.keypoints.dtype)
        score = max(float(f.score) for f in views)
        new_eyes = Face(face.box, score, keypoints).eyes()   # full-range keypoints, corrected as the crop uses them
        return Face(moved_box(face.box, face.eyes(), new_eyes), score, keypoints, "tracked")

    def detect(self, image: np.ndarray) -> list[Face]:
        t0 = time.perf_counter()
        faces = self.run_stage("centerface", image) if self.centerface is not None else []
        used = ["centerface"] if faces else []
        longer = max(image.shape[:2])
        if "centerface_tiles" in self.stages and not any(f.width >= TILE_SKIP_FRACTION * longer for f in faces):
            tiled = self.run_stage("centerface_tiles", image)
            used += ["centerface_tiles"] if tiled else []
            faces = merge(faces + tiled)
        if faces:
            if self.refine:   # every CenterFace face: BlazeFace's eyes where its closer look finds it
                faces = [self.refined(image, f) for f in faces]
        else:
            faces, used = self._blazeface_cascade(image)
        self.last_stage = "+".join(used) or None
        self.last_seconds = time.perf_counter() - t0
        return sorted(faces, key=lambda f: -f.score)

    def _blazeface_cascade(self, image: np.ndarray) -> tuple[list[Face], list[str]]:
        """The BlazeFace-only cascade of views: where CenterFace found nothing (mostly close-ups and tight crops,
        whose face fills the photo) or when it is not among the stages."""
        longer = max(image.shape[:2])
        found: dict[str, list[Face]] = {}
        for stage in self.stages:
            if stage not in self.thresholds:
                continue
            if stage in TILED_STAGES:
                # Tiles look for small faces: skip them when a big face is already found (portraits, LFW-like
                # photos; their small background faces are not worth 13 more invokes). Measured on
                # real-masked-dev: recall unchanged, see the "confirm-v1" rows.
                so_far = [f for fs in found.values() for f in fs if f.score >= self.thresholds[f.stage][0]]
                if so_far and max(f.width for f in so_far) >= TILE_SKIP_FRACTION * longer:
                    continue
            found[stage] = self.run_stage(stage, image)
        # The whole-photo short-range face is a confirming view: where another stage has the face, that stage's
        # box and keypoints are kept (EYE_CORRECTION was measured on full-range keypoints; letting the short-range
        # face win by score moved LFW eyes 0.034 -> 0.041 crop sides from dlib's, benchmarks "cross-v1").
        faces = merge(confirmed(found, self.thresholds, cross=self.cross), last=CONFIRMING_STAGES, fuse=True)
        used = [s for s in found if any(f.stage == s for f in faces)]
        for stage in self.stages:
            if faces or stage in CENTERFACE_STAGES or (stage in self.thresholds and stage not in FALLBACK_REUSE):
                continue
            dets = found[stage] if stage in found else self.run_stage(stage, image)
            faces = merge([f for f in dets if f.score >= self.fallback_threshold])
            if faces:
                used.append(stage)
        if self.refine:
            faces = [self.refined(image, f) if needs_refining(f, longer) else f for f in faces]
        return faces, used


def moved_box(box: tuple[float, float, float, float], old_eyes, new_eyes) -> tuple[float, float, float, float]:
    """`box` shifted and scaled as the eye pair moved from `old_eyes` to `new_eyes` (about their midpoint)."""
    (l0, r0), (l1, r1) = old_eyes, new_eyes
    scale = float(np.hypot(*(r1 - l1)) / max(np.hypot(*(r0 - l0)), 1e-6))
    mid0, mid1 = (l0 + r0) / 2, (l1 + r1) / 2
    corners = (np.array(box, np.float64).reshape(2, 2) - mid0) * scale + mid1
    return tuple(float(v) for v in corners.ravel())


def needs_refining(face: Face, longer_side: int, min_zoom: float = REFINE_MIN_ZOOM) -> bool:
    """Whether the refinement cut would show the face at least `min_zoom` times bigger than the whole-photo pass
    did (the letterbox scales the photo's longer side to the model's input)."""
    first_pass = max(face.box[2] - face.box[0], face.box[3] - face.box[1]) * FULL_OPTIONS.input_size / longer_side
    return FULL_OPTIONS.input_size / REFINE_SCALE >= min_zoom * first_pass


def refine_cut(box: tuple[float, float, float, float], side: int = FULL_OPTIONS.input_size,
               scale: float = REFINE_SCALE) -> np.ndarray:
    """2x3 matrix from photo pixels to a side x side cut centred on `box`, `scale` times its longer side."""
    x0, y0, x1, y1 = box
    s = side / (scale * max(x1 - x0, y1 - y0, 1e-3))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return np.array([[s, 0.0, side / 2 - s * cx], [0.0, s, side / 2 - s * cy]])


def _map_faces(faces: list[Face], matrix: np.ndarray) -> list[Face]:
    """Faces through a 2x3 affine map (scale and shift: boxes stay axis-aligned)."""
    out = []
    for f in faces:
        corners = np.array(f.box, np.float64).reshape(2, 2) @ matrix[:, :2].T + matrix[:, 2]
        kps = f.keypoints.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
        out.append(Face(tuple(float(v) for v in corners.ravel()), f.score, kps.astype(f.keypoints.dtype), f.stage,
                        f.keypoint_model))
    return out


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


def _dlib_detector():
    """dlib HOG as a last stage, only when dlib is installed (the training side has it; the edge install not).
    HOG gives no keypoints, so eyes are estimated from the box (dlib's frontal face box layout)."""
    try:
        import dlib
    except ImportError:
        return None
    hog = dlib.get_frontal_face_detector()

    def run(image: np.ndarray) -> list[Face]:
        rects, scores, _ = hog.run(np.ascontiguousarray(image), 1, 0.0)
        faces = []
        for r, s in zip(rects, scores):
            x0, y0, x1, y1 = r.left(), r.top(), r.right(), r.bottom()
            bw, bh = x1 - x0, y1 - y0
            # Typical eye centres inside a dlib HOG box (fractions of the box side).
            kps = np.array([[x0 + 0.30 * bw, y0 + 0.38 * bh], [x0 + 0.70 * bw, y0 + 0.38 * bh],
                            [x0 + 0.5 * bw, y0 + 0.6 * bh], [x0 + 0.5 * bw, y0 + 0.8 * bh],
                            [x0, y0 + 0.45 * bh], [x1, y0 + 0.45 * bh]], np.float64)
            faces.append(Face((x0, y0, x1, y1), float(min(1.0, 0.5 + s / 4)), kps, "dlib"))
        return faces

    return run
