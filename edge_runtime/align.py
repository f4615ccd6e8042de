"""The canonical face crop and its inverse: the one alignment shared by training and inference.

Alignment uses the two eye centres only. Eyes stay visible above a mask, so the same crop can be computed from
dlib's 68 landmarks when making training pairs (mean of points 36-41 and 42-47) and from a face detector's eye
keypoints on real masked photos, where mouth and jaw landmarks are unreliable.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Framing:
    """Where the eye centres land in the crop: on a horizontal line `eye_line` of the side from the top, centred,
    `eye_distance` of the side apart. Each model file says which framing it was trained on (metadata `framing`); the
    runtime cuts that model's crop with it."""
    eye_line: float = 0.37
    eye_distance: float = 0.30

    @property
    def eyes(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """(image-left eye, image-right eye) as (x, y) shares of the side."""
        half = self.eye_distance / 2
        return (0.5 - half, self.eye_line), (0.5 + half, self.eye_line)

    def to_dict(self) -> dict:
        return {"eye_line": self.eye_line, "eye_distance": self.eye_distance}

    @property
    def scale(self) -> float:
        """How large a face is in this framing against the default (the ratio of eye distances): lengths given for
        the default framing are multiplied by it."""
        return self.eye_distance / DEFAULT_FRAMING.eye_distance

    def from_default_y(self, y: float) -> float:
        """A height given for the default framing (share of the side) at the same place on the face in this one."""
        if self == DEFAULT_FRAMING:
            return y   # exactly: recipes on the default framing keep their bytes
        return self.eye_line + (y - DEFAULT_FRAMING.eye_line) * self.scale

    def from_default_x(self, x: float) -> float:
        """A horizontal position given for the default framing at the same place on the face in this one (faces are
        centred in both)."""
        if self == DEFAULT_FRAMING:
            return x
        return 0.5 + (x - 0.5) * self.scale


# The framing of every model through 0.9: the chin sits about 1.9 eye distances below the eye line (dlib's point 8 on
# LFW, median), 0.94 of the side, so a mask's lower edge, 0.06-0.35 eye distances lower still, runs off the crop's
# bottom on most faces (benchmarks/results/crop_coverage.md).
DEFAULT_FRAMING = Framing()
# Eyes higher and closer: 2.8 eye distances below the eye line fit in the crop, the chin and a mask's lower edge
# with room for the paste's blend band (the framing of models trained with data.eye_line=0.30 data.eye_distance=0.25).
WIDE_FRAMING = Framing(eye_line=0.30, eye_distance=0.25)
CANONICAL_LEFT_EYE, CANONICAL_RIGHT_EYE = DEFAULT_FRAMING.eyes


def framing_of(metadata: dict) -> Framing:
    """The framing a model file's metadata names (`framing`), or the default for files that name none. Raises
    ValueError for a framing that leaves no face in the crop."""
    crop = metadata.get("framing") if isinstance(metadata, dict) else None
    if crop is None:
        return DEFAULT_FRAMING
    try:
        framing = Framing(float(crop["eye_line"]), float(crop["eye_distance"]))
    except (TypeError, KeyError, ValueError):
        raise ValueError(f"framing {crop!r} is not {{'eye_line': float, 'eye_distance': float}}") from None
    if not (0.05 <= framing.eye_line <= 0.7 and 0.05 <= framing.eye_distance <= 0.8):
        raise ValueError(f"framing {crop!r} puts the eyes outside the face crop (eye_line 0.05-0.7, "
                         "eye_distance 0.05-0.8 of the side)")
    return framing


def eye_centers_from_68(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image-left eye, image-right eye) centres from dlib's 68-point layout, as float (x, y)."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(68, 2)
    return pts[36:42].mean(axis=0), pts[42:48].mean(axis=0)


def similarity_from_eyes(left_eye, right_eye, size: int, framing: Framing = DEFAULT_FRAMING) -> np.ndarray:
    """2x3 float64 matrix mapping image coordinates to the canonical crop of `size` x `size` pixels."""
    src = np.array([left_eye, right_eye], dtype=np.float64)
    dst = np.array(framing.eyes, dtype=np.float64) * size
    # A similarity transform is fixed by two point pairs: solve with complex numbers z' = a*z + b.
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    if abs(zs[1] - zs[0]) < 1e-6:
        raise ValueError("eye centres coincide; cannot align")
    a = (zd[1] - zd[0]) / (zs[1] - zs[0])
    b = zd[0] - a * zs[0]
    return np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]], dtype=np.float64)


def jitter(matrix: np.ndarray, size: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Randomly rescale (±amount), rotate (±amount rad) and shift (±amount of the side) a crop matrix, so a
    model trained on landmark crops tolerates the looser eye positions of a detector at inference."""
    if amount <= 0:
        return matrix
    scale = 1.0 + rng.uniform(-amount, amount)
    angle = rng.uniform(-amount, amount)
    shift = rng.uniform(-amount, amount, size=2) * size
    c = size / 2.0
    rot = cv2.getRotationMatrix2D((c, c), np.degrees(angle), scale)
    rot[:, 2] += shift
    return compose(rot, matrix)


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Affine `outer ∘ inner` for 2x3 matrices."""
    a = np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]])
    return a[:2]


def invert(matrix: np.ndarray) -> np.ndarray:
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def crop(image: np.ndarray, matrix: np.ndarray, size: int, border: int = cv2.BORDER_REFLECT101) -> np.ndarray:
    """Warp `image` (H, W, C uint8) to the canonical `size` x `size` crop."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=border)


def paste_back(image: np.ndarray, crop_rgb: np.ndarray, crop_alpha: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Blend `crop_rgb` into a copy of `image` where `crop_alpha` (crop-sized, 0..1 float) says, undoing `matrix`.

    Pixels whose alpha is 0 keep their exact original values."""
    h, w = image.shape[:2]
    inv = invert(matrix)
    warped = cv2.warpAffine(crop_rgb, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(crop_alpha.astype(np.float32), inv, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out = image.copy()
    blend_into(out, warped, alpha)
    return out


def blend_into(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> None:
    """dst = alpha * src + (1 - alpha) * dst in place, rounded (uint8 images, float32 alpha in 0..1 of dst's size).

    cv2.blendLinear computes (a*src + b*dst) / (a + b + 1e-5) in SIMD: with b = 1 - a the error is < 0.003 of a
    level, so a pixel whose alpha is 0 keeps its exact value. It is 5-10x faster than indexing the alpha > 0
    pixels with numpy, which was most of the blending time per face."""
    dst[...] = cv2.blendLinear(src, dst, alpha, 1.0 - alpha)
