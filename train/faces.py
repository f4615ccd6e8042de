"""Find the main face in a photo and its 68 dlib landmarks, with a per-file cache.

Detector cascade (`data.detector="cascade"`), cheapest first, each stage only when the previous found nothing:
  1. dlib HOG frontal detector on the photo (scaled to <= 640 px), no upsample, then 1 upsample
     (LFW: ~99% here at ~10 ms).
  2. The same on the photo padded by a 30% border: tight crops (faces-dev) cut off the chin/forehead and
     HOG's window never fits; the border gives it room (faces-dev: HOG alone finds only ~26%).
  3. BlazeFace (edge_runtime/detect.py: full range, padded, short range; ~20 ms) when it is there: its eye
     keypoints give a dlib-style box (side 2.55 eye distances, centre 0.5 below the eye midpoint: the mean
     layout of 1,488 HOG boxes on LFW) for the shape predictor; kept only if the landmark eyes agree with
     BlazeFace's eyes (within 0.3 eye distances).
  4. dlib's MMOD CNN detector on the padded photo (~0.5 s, but it finds most of the rest).
`detector="hog"` stops after stage 1 (what the smoke preset uses). Among several faces (LFW photos often
show other people at the edges) the one nearest the image centre wins.

Models come from the `face_recognition_models` package; it is located with importlib (importing it pulls in
pkg_resources, which is slow and deprecated).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mask2face.edge_runtime.errors import Mask2FaceError

DETECT_MAX_SIDE = 640       # detection runs on a copy scaled to this; landmarks on the full image
PAD_FRACTION = 0.30         # border added around tight crops before retrying
CNN_MAX_SIDE = 360          # MMOD cost grows with area; tight crops padded are ~200-400 px anyway
CACHE_VERSION = 2           # bump when detection changes so old cache entries are not reused

_MODELS: dict[str, object] = {}


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise Mask2FaceError("dlib face models not found: pip install face-recognition-models")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def _model(name: str):
    """dlib models, loaded once per process (each worker loads its own)."""
    if name not in _MODELS:
        import dlib
        if name == "hog":
            _MODELS[name] = dlib.get_frontal_face_detector()
        elif name == "shape":
            _MODELS[name] = dlib.shape_predictor(str(models_dir() / "shape_predictor_68_face_landmarks.dat"))
        elif name == "cnn":
            _MODELS[name] = dlib.cnn_face_detection_model_v1(str(models_dir() / "mmod_human_face_detector.dat"))
        else:
            raise KeyError(name)
    return _MODELS[name]


@dataclass(frozen=True)
class Detection:
    landmarks: np.ndarray | None     # (68, 2) float32 in full-image pixels, or None
    stage: str                       # which cascade stage found it ("hog", "hog-up", "hog-pad", "cnn-pad") or reason
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in full-image pixels

    def to_json(self) -> dict:
        return {"landmarks": None if self.landmarks is None else np.round(self.landmarks, 2).tolist(),
                "stage": self.stage, "box": None if self.box is None else [round(v, 2) for v in self.box]}

    @staticmethod
    def from_json(d: dict) -> "Detection":
        lm = d.get("landmarks")
        return Detection(None if lm is None else np.asarray(lm, np.float32).reshape(68, 2), d["stage"],
                         tuple(d["box"]) if d.get("box") else None)


def _scaled(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s >= 1.0:
        return image, 1.0
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA), s


def _pad(image: np.ndarray, fraction: float) -> tuple[np.ndarray, int]:
    p = int(round(fraction * max(image.shape[:2])))
    # Replicate keeps skin/hair colours at the edge (no hard frame the detector could latch onto) and, unlike
    # a reflection, cannot create a mirrored second face.
    return cv2.copyMakeBorder(image, p, p, p, p, cv2.BORDER_REPLICATE), p


def _nearest_centre(boxes: list[tuple[float, float, float, float]], w: int, h: int) -> int:
    """Index of the box nearest the image centre; size breaks near-ties (a big face beats a small one)."""
    def cost(b):
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        side = max(b[2] - b[0], 1.0)
        return np.hypot(cx - w / 2, cy - h / 2) / max(w, h) - 0.25 * side / max(w, h)
    return int(np.argmin([cost(b) for b in boxes]))


def _hog(gray: np.ndarray, upsample: int) -> list[tuple[float, float, float, float]]:
    rects = _model("hog")(gray, upsample)
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects]


def _cnn(rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
    dets = _model("cnn")(rgb, 0)
    return [(d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()) for d in dets if d.confidence > 0.3]


def _landmarks(gray_full: np.ndarray, box) -> np.ndarray:
    import dlib
    rect = dlib.rectangle(int(round(box[0])), int(round(box[1])), int(round(box[2])), int(round(box[3])))
    shape = _model("shape")(gray_full, rect)
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


def _landmarks_any(gray_full: np.ndarray, box) -> np.ndarray:
    """Landmarks for a box that may leave the frame: then the shape predictor runs on the padded image, so
    the landmarks of a cut-off chin are still placed sensibly."""
    h, w = gray_full.shape[:2]
    if box[0] >= 0 and box[1] >= 0 and box[2] <= w and box[3] <= h:
        return _landmarks(gray_full, box)
    padded, p = _pad(gray_full, PAD_FRACTION)
    return _landmarks(padded, tuple(v + p for v in box)) - p


def _blaze(rgb: np.ndarray):
    """[(dlib-style box, (image-left eye, image-right eye))] from the runtime's BlazeFace cascade, or [] when
    edge_runtime/detect.py or LiteRT is unavailable."""
    if "blaze" not in _MODELS:
        try:
            from mask2face.edge_runtime.detect import FaceDetector
            _MODELS["blaze"] = FaceDetector(threads=1, stages=("full", "padded", "short"))
        except Exception:  # noqa: BLE001 - any import/model failure just disables this optional stage
            _MODELS["blaze"] = None
    det = _MODELS["blaze"]
    if det is None:
        return []
    out = []
    for face in det.detect(rgb):
        le, re = face.eyes()
        d = float(np.hypot(*(re - le)))
        if d < 4:
            continue
        down = np.array([-(re - le)[1], (re - le)[0]]) / d
        c = (le + re) / 2 + 0.5 * d * down
        half = 1.275 * d
        out.append(((c[0] - half, c[1] - half, c[0] + half, c[1] + half), (le, re)))
    return out


def detect(rgb: np.ndarray, detector: str = "cascade") -> Detection:
    """The face nearest the centre of an RGB uint8 image and its 68 landmarks (landmarks None if none found)."""
    if detector not in ("hog", "cascade"):
        raise Mask2FaceError(f"unknown data.detector {detector!r}: use hog or cascade")
    h, w = rgb.shape[:2]
    gray_full = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small, s = _scaled(gray_full, DETECT_MAX_SIDE)

    def finish(boxes, scale, offset, stage):
        # boxes are in the coordinates of an image that was padded by `offset` then scaled by `scale`
        boxes = [tuple(v / scale - offset for v in b) for b in boxes]
        i = _nearest_centre(boxes, w, h)
        box = boxes[i]
        return Detection(_landmarks_any(gray_full, box), stage, tuple(float(v) for v in box)), i

    for up, stage in ((0, "hog"), (1, "hog-up")):
        if up and max(small.shape) > 400:
            continue  # upsampling a big photo is slow and the face is big enough anyway
        boxes = _hog(small, up)
        if boxes:
            return finish(boxes, s, 0, stage)[0]
    if detector == "hog":
        return Detection(None, "no-face")

    padded, p = _pad(gray_full, PAD_FRACTION)
    psmall, ps = _scaled(padded, DETECT_MAX_SIDE)
    boxes = _hog(psmall, 1 if max(psmall.shape) <= 400 else 0)
    if boxes:
        return finish(boxes, ps, p, "hog-pad")[0]
    blaze = _blaze(rgb)
    if blaze:
        found, i = finish([b for b, _ in blaze], 1.0, 0, "blaze")
        le, re = blaze[i][1]
        lle, lre = found.landmarks[36:42].mean(axis=0), found.landmarks[42:48].mean(axis=0)
        d = max(float(np.hypot(*(re - le))), 1.0)
        if max(np.hypot(*(lle - le)), np.hypot(*(lre - re))) < 0.3 * d:
            return found
    prgb, _ = _pad(rgb, PAD_FRACTION)
    csmall, cs = _scaled(prgb, CNN_MAX_SIDE)
    boxes = _cnn(csmall)
    if boxes:
        return finish(boxes, cs, p, "cnn-pad")[0]
    return Detection(None, "no-face")


def settings_key(detector: str) -> str:
    return json.dumps({"v": CACHE_VERSION, "detector": detector, "max_side": DETECT_MAX_SIDE,
                       "pad": PAD_FRACTION, "cnn_max_side": CNN_MAX_SIDE, "blaze": True}, sort_keys=True)


class LandmarkCache:
    """`DIR/ab/<sha256>.json` per source file, keyed by sha256(file bytes + detector settings): a second run
    (or a run on a renamed copy of the same photos) skips detection."""

    def __init__(self, directory: Path, detector: str):
        self.directory = Path(directory)
        self.detector = detector
        self._settings = settings_key(detector).encode()

    def key(self, data: bytes) -> str:
        return hashlib.sha256(hashlib.sha256(data).digest() + self._settings).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> Detection | None:
        try:
            return Detection.from_json(json.loads(self._path(key).read_text()))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None  # missing or damaged entry: detect again

    def put(self, key: str, det: Detection) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # temp + rename (no fsync: a lost cache entry only costs a re-detection)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(det.to_json(), fh)
        os.replace(tmp, path)
