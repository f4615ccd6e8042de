"""A detected face (box, score, six keypoints) and the correction that maps each detector's eye keypoints to
the dlib eye centres the training crop is defined by (detect.py has the map of face finding)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

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
