"""Is a mask there? The per-face decision, from a small int8 classifier that ships beside the inpainting model.

    from mask2face.edge_runtime.mask_decision import MaskClassifier
    clf = MaskClassifier.from_file()            # the shipped classifier; or any file made by `mask2face classifier`
    p = clf.probability(crop)                   # crop: the inpainting model's eye-aligned face crop, uint8 RGB
    p = combined([p, clf.probability(crop, mirrored=True), *first_eyes_views])   # the runtime's decision
    clf.threshold                               # from the file's metadata: at or above it the face counts as masked

The classifier sees the same eye-aligned crop as the inpainting model (edge_runtime/align.py), area-downscaled to
its own input size, and returns a calibrated probability that the face wears a mask. The Inpainter asks it first
and runs the inpainting model only on faces at or above the threshold, so a bare face is copied through untouched.
The runtime scores several views of a face (the crop, its mirror, and the crop on the first detector's eyes and its
mirror where the screening scored it: `BlendConfig.mirror_views`) and compares their geometric mean with the
threshold, which the shipped file chose for that mean (0.2; one crop alone: 0.25).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import align
from .errors import ModelFileError
from .model import Model

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_CLASSIFIER = ASSETS / "mask2face_mask_classifier.tflite"
TASK = "mask_probability"


def combined(probabilities: list[float]) -> float:
    """One probability from several views of a face (crops on two sets of eyes, their mirror images): the geometric
    mean. Every view must agree for a high score, so one view that takes a bare face for a masked one (an eye put on
    a nostril, a hand at the mouth) rarely decides alone; nan if any view is nan (a broken classifier: no mask)."""
    ps = np.asarray(probabilities, np.float64)
    if not len(ps) or not np.all(np.isfinite(ps)):
        return float("nan")
    return 0.0 if np.any(ps <= 0) else float(np.exp(np.mean(np.log(ps))))


class MaskClassifier:
    """A loaded mask classifier: `probability(crop)` in [0, 1]; `threshold` from its metadata."""

    def __init__(self, model: Model):
        inp, out = model.input_detail["shape"], model.output_detail["shape"]
        h, w = model.input_size
        if model.metadata.get("task") != TASK or h != w or int(inp[3]) != 3 or int(np.prod(out)) != 1:
            raise ModelFileError(f"{model.source} is not a mask classifier (it maps {list(inp)} to {list(out)}; "
                                 "one made by `mask2face classifier` maps (1, S, S, 3) to one mask probability)")
        self.model = model
        self.size = h
        try:   # the classifier's own crop framing (files without one: the default's, on which it was trained)
            self.framing = align.framing_of(model.metadata)
        except ValueError as exc:
            raise ModelFileError(f"{model.source}: metadata {exc}") from None
        # The side of the aligned crop it was calibrated on before downscaling (its training pairs'): files without
        # the field were trained on 128² pairs. A face is cut at this size for it when the inpainting model's crop
        # differs in size or framing, so the decision does not depend on the inpainting model.
        crop_size = model.metadata.get("crop_size", 128)
        if not isinstance(crop_size, int) or isinstance(crop_size, bool) or not h <= crop_size <= 1024:
            raise ModelFileError(f"{model.source}: metadata crop_size {crop_size!r} is not a crop side in pixels "
                                 f"({h}-1024); export the classifier again with `mask2face classifier --export-only`")
        self.crop_size = crop_size
        threshold = model.metadata.get("threshold", 0.5)
        if not isinstance(threshold, (int, float)) or not 0.0 <= float(threshold) <= 1.0:
            raise ModelFileError(f"{model.source}: metadata threshold {threshold!r} is not a probability; "
                                 "export the classifier again with `mask2face classifier --export-only`")
        self.threshold = float(threshold)

    @classmethod
    def from_file(cls, path: str | Path | None = None, threads: int = 2) -> "MaskClassifier":
        """The shipped classifier (None or "default"), or a .tflite made by `mask2face classifier`."""
        if path is None or str(path) == "default":
            if not DEFAULT_CLASSIFIER.is_file():
                raise ModelFileError(f"the mask classifier is not shipped in this install ({DEFAULT_CLASSIFIER}): "
                                     "pass --classifier PATH.tflite (made by `mask2face classifier`)")
            path = DEFAULT_CLASSIFIER
        return cls(Model.from_file(path, threads=threads))

    def input_crop(self, crop: np.ndarray) -> np.ndarray:
        """The classifier's input from an aligned face crop of any size (uint8, (S, S, 3))."""
        if crop.shape[0] == self.size:
            return crop
        return cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_AREA)

    def probability(self, crop: np.ndarray, mirrored: bool = False) -> float:
        """The mask probability of an aligned face crop (uint8 RGB, any size), or of its mirror image."""
        small = self.input_crop(crop)
        if mirrored:   # the mirror of the downscaled crop: the same pixels as downscaling the mirrored one
            small = np.ascontiguousarray(small[:, ::-1])
        p = float(self.model.run(small[None]).reshape(-1)[0])
        return min(1.0, max(0.0, p)) if np.isfinite(p) else float("nan")

    def describe(self) -> dict:
        return {**self.model.describe(), "threshold": self.threshold}
