"""The runtime's face finder: CenterFace first, each face refined by BlazeFace's closer look, and the
BlazeFace-only cascade of views where CenterFace finds none; the stages, their thresholds and why
(detect.py has the map)."""

from __future__ import annotations

import time
from typing import Callable

import cv2
import numpy as np

from ..centerface import CenterFace
from .blazeface import FULL_OPTIONS, FULL_RANGE, NMS_IOU, SHORT_OPTIONS, SHORT_RANGE, BlazeFace
from .dlib_fallback import dlib_detector
from .face import Face, box_iou
from .stages import (CENTERFACE_STAGES, CONFIRMING_STAGES, CROSS_THRESHOLDS, FALLBACK_REUSE, STAGE_TABLE, STAGES,
                     TILED_STAGES, UNION_THRESHOLDS)
from .views import confirmed, map_faces, merge, score_weighted, shift, unflip

PAD_FRACTION = 0.30
PADDED_MAX_SIDE = 1024        # the padded copy's longer side at most (640x480 photos pad to exactly 1024)
# Tiled stages are skipped once a face at least this share of the photo's longer side is found (confidently):
# a portrait's small background faces are not worth 13 more invokes (LFW at 640x480 stays >= 15 photos/s).
TILE_SKIP_FRACTION = 0.30
TILE_OVERLAP = 0.4            # of a tile's side: 2x2 tiles are 0.625 of the photo, 3x3 tiles 0.455
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
# Fallbacks run only where the union found nothing. 0.65, not 0.5: the padded photo of scikit-image's coins
# scores 0.60 and the short-range model on its colour wheel 0.58.
FALLBACK_THRESHOLD = 0.65
DEFAULT_STAGES = ("centerface", "centerface_tiles", "full", "flip", "tiles", "short_tiles", "padded", "short")
# CenterFace (centerface.py) runs first; where it finds a face at CENTERFACE_THRESHOLD, the BlazeFace stages do not
# run. Chosen on the pick half of real-masked-dev's annotated photos (`detect_bench --runtime-only
# --centerface-threshold T`, rows "centerface-int8-*"): the highest recall there with no detection on the face-free
# pictures and no more false detections per photo than the BlazeFace cascade (0.18). 0.5 gives 95.8% at 0.15
# (0.45: 95.8% at 0.23; 0.55: 94.1% at 0.11; before scores of exactly the threshold counted, rows "-v1": 0.4: 96.6%
# at 0.32, 0.3: 97.5% at 0.65 and one face-free hit); on the check half, not used to choose: 94.4% (the BlazeFace
# cascade: 86.5%).
CENTERFACE_THRESHOLD = 0.5


class CenterFaceFaces:
    """CenterFace's detections as Faces; keypoints: its two eyes, nose, mouth centre, the two mouth corners."""

    def __init__(self, threads: int = 2):
        self.model = CenterFace(threads=threads)

    def detect(self, image: np.ndarray, min_score: float) -> list[Face]:
        boxes, points, scores = self.model.raw(image, min_score)
        return [Face(tuple(float(v) for v in box), float(score),
                     np.concatenate([pts[:3], pts[3:].mean(0, keepdims=True), pts[3:]]).astype(np.float32),
                     "centerface", "centerface") for box, pts, score in zip(boxes, points, scores)]


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
        self._dlib = dlib_detector() if "dlib" in stages else None
        self.last_stage: str | None = None
        self.last_seconds = 0.0

    def run_stage(self, stage: str, image: np.ndarray) -> list[Face]:
        """The faces one stage (STAGE_TABLE) finds: its model on its view of the photo."""
        spec = STAGE_TABLE[stage]
        model = {"centerface": self.centerface, "full_range": self.full, "short_range": self.short,
                 "dlib": self._dlib}[spec.model]
        h, w = image.shape[:2]
        if model is None or max(h, w) < spec.min_side:
            return []
        if spec.model == "dlib":
            return model(image)
        floor = self.centerface_threshold if spec.model == "centerface" else self.min_score
        if spec.view == "tiles":
            return self._tiles(image, spec.grid, model, stage, floor)
        if spec.view == "mirror":
            return unflip(model.detect(cv2.flip(image, 1), floor), w, stage)
        if spec.view == "padded":
            # The model sees the padded photo at its input size anyway: pad a copy no bigger than PADDED_MAX_SIDE,
            # so a 60000x8 PNG (a few KB, within the pixel limit) cannot ask for gigabytes here.
            scale = min(1.0, PADDED_MAX_SIDE / ((1 + 2 * PAD_FRACTION) * max(h, w)))
            small = image if scale == 1.0 else cv2.resize(
                image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
            p = int(round(PAD_FRACTION * max(small.shape[:2])))
            padded = cv2.copyMakeBorder(small, p, p, p, p, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            faces = shift(model.detect(padded, floor), -p, -p, stage)
            return faces if scale == 1.0 else map_faces(faces, np.array([[1 / scale, 0, 0], [0, 1 / scale, 0]]))
        return model.detect(image, floor)

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
                found += shift(model.detect(image[y0:y0 + th, x0:x0 + tw], floor), x0, y0, stage)
        return merge(found)

    def closer_look(self, image: np.ndarray, face: Face) -> list[Face]:
        """The faces the full-range model finds on a cut around `face` (REFINE_SCALE times its size) and on the
        cut's mirror that overlap `face` (IoU > NMS_IOU), in image pixels."""
        side = FULL_OPTIONS.input_size
        to_cut = refine_cut(face.box, side)
        cut = cv2.warpAffine(image, to_cut, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        views = self.full.detect(cut, REFINE_MIN_SCORE)
        views += unflip(self.full.detect(cv2.flip(cut, 1), REFINE_MIN_SCORE), side, "flip")
        return [f for f in map_faces(views, cv2.invertAffineTransform(to_cut))
                if box_iou(np.array(f.box), np.array([face.box]))[0] > NMS_IOU]

    def refined(self, image: np.ndarray, face: Face) -> Face:
        """`face` with keypoints from a closer look, its views averaged by score; unchanged if neither view finds
        it again."""
        views = self.closer_look(image, face)
        if not views:
            return face
        keypoints = score_weighted(views, [f.keypoints for f in views])
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
        keypoints = score_weighted(views, [f.keypoints for f in views]).astype(face.keypoints.dtype)
        score = max(float(f.score) for f in views)
        new_eyes = Face(face.box, score, keypoints).eyes()   # full-range keypoints, corrected as the crop uses them
        return Face(moved_box(face.box, face.eyes(), new_eyes), score, keypoints, "tracked")

    def detect(self, image: np.ndarray, worth_refining: Callable[[Face], bool] | None = None) -> list[Face]:
        """The faces in `image`, best first. `worth_refining(face)`, if given, is asked before each face's closer
        look (two BlazeFace invokes, ~10 ms on 2 cores): a face it declines keeps its first detector's eyes (the
        Inpainter declines faces its mask classifier already scores bare on those eyes)."""
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
                faces = [self.refined(image, f) if worth_refining is None or worth_refining(f) else f
                         for f in faces]
        else:
            faces, used = self._blazeface_cascade(image, worth_refining)
        self.last_stage = "+".join(used) or None
        self.last_seconds = time.perf_counter() - t0
        return sorted(faces, key=lambda f: -f.score)

    def _blazeface_cascade(self, image: np.ndarray, worth_refining: Callable[[Face], bool] | None = None
                           ) -> tuple[list[Face], list[str]]:
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
            faces = [self.refined(image, f) if needs_refining(f, longer)
                     and (worth_refining is None or worth_refining(f)) else f for f in faces]
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
