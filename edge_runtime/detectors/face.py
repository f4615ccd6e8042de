"""A detected face (box, score, six keypoints) and the correction that maps each detector's eye keypoints to
the dlib eye centres the training crop is defined by (detect.py has the map of face finding)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Keypoint indices in the model output. BlazeFace is trained on mirrored (selfie) images: keypoint 0 is the eye
# that appears on the image's LEFT in an unmirrored photo, i.e. the person's right eye (checked on LFW photos
# against dlib's 68 landmarks, see benchmarks/detect_bench.py --calibrate).
KP_IMAGE_LEFT_EYE, KP_IMAGE_RIGHT_EYE, KP_NOSE, KP_MOUTH, KP_LEFT_EAR, KP_RIGHT_EAR = range(6)
CORRECTIONS_FILE = Path(__file__).resolve().parent / "eye_corrections.json"


def load_eye_corrections(path: Path = CORRECTIONS_FILE) -> dict[str, dict[str, tuple[float, float]]]:
    """Keypoint model -> {"left": (u, v), "right": (u, v)}: the systematic offset of that detector's eye keypoints
    from dlib's eye centres, which define the training crop, measured by `detect_bench --calibrate` and written
    into eye_corrections.json with how it was measured."""
    table = json.loads(path.read_text())
    return {model: {side: (float(entry[side][0]), float(entry[side][1])) for side in ("left", "right")}
            for model, entry in table.items() if isinstance(entry, dict)}


EYE_CORRECTIONS = load_eye_corrections()
EYE_CORRECTION = EYE_CORRECTIONS["full_range"]               # BlazeFace's (refined) eye keypoints
CENTERFACE_EYE_CORRECTION = EYE_CORRECTIONS["centerface"]    # CenterFace's own, where no BlazeFace view refined them


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
