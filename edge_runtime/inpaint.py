"""Remove face masks from a photo: detect -> align (the training crop) -> is a mask there? -> infer -> warp back ->
blend the mask only.

    from mask2face.edge_runtime.inpaint import Inpainter
    clean = Inpainter.from_file("student-int8.tflite").remove(image_rgb)   # (H, W, 3) uint8 RGB in and out

Each face is first given a mask probability by the mask classifier that ships beside the model
(edge_runtime/mask_decision.py); a face below the threshold is copied through untouched, without running the
inpainting model. On a masked face only the region the model itself marks as mask (output channel 3, thresholded
and feathered) is replaced: hair, background and other faces keep their exact pixel values. A face whose predicted
mask is weak or implausible (no mask, a "mask" above the eyes, most of the crop) is also left untouched and
reported, so a false detection comes back unchanged rather than smudged.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import align, harmonize, mask_decision
from .detect import DEFAULT_STAGES, Face, FaceDetector
from .errors import ImageError, ModelFileError
from .mask_decision import MaskClassifier
from .model import Model, warn

ASSETS = Path(__file__).resolve().parent / "assets"
DEFAULT_MODEL = ASSETS / "mask2face_default.tflite"
# Models that ship inside the package, by name. One inpainting model: the mask classifier decides which faces it
# restores (benchmarks/results/gate.jsonl).
SHIPPED_MODELS = {"default": DEFAULT_MODEL}
# Names of models that shipped before, and what they are now.
MODEL_ALIASES = {"mixed": ("default", "'mixed' is now the default model: its mask classifier leaves bare faces "
                                      "alone")}


def shipped_model(path: str | Path | None) -> str | Path:
    """A shipped model's file for None / "default" / an alias ("mixed": the default, with a one-line note), unless
    a file of that name exists (a folder of that name, e.g. `--out mixed`, never is a model); else `path`."""
    name = "default" if path is None else str(path)
    if (name not in SHIPPED_MODELS and name not in MODEL_ALIASES) or Path(name).is_file():
        return path
    if name in MODEL_ALIASES:
        name, note = MODEL_ALIASES[name]
        warn(note)
    if not SHIPPED_MODELS[name].exists():
        raise ModelFileError(f"the {name!r} model is not shipped in this install ({SHIPPED_MODELS[name]}): pass "
                             "--model PATH.tflite (made by `mask2face export`)")
    return SHIPPED_MODELS[name]


@dataclass(frozen=True)
class BlendConfig:
    mask_threshold: float = 0.5      # mask probability that counts as "mask"
    # The paste weight: the thresholded mask grown by `dilate`, then blurred with sigma `feather` (shares of the crop
    # side). Grown enough that the weight is ~1 on the predicted mask's own edge, where a mask's rim sits: 0.02/0.04
    # (the first blend of 0.1.0) left ~25% of the input there, a visible line at the rim, and cost the shipped model
    # 0.55 dB of masked PSNR on the LFW val pairs (19.68 raw -> 19.13 pasted). Chosen on the val split from a grid of
    # dilate 0.02-0.06 x feather 0.02-0.04, best for the shipped student (19.40 dB) and the teacher (20.01 dB);
    # pixels more than 8 px from the true mask changed by > 2 levels: 0.01-0.02%, as before. Dilating 0.06 raised
    # that to 0.4-0.7% for the teacher, whose RGB is not the input outside its mask.
    feather: float = 0.02            # Gaussian feather sigma, as a fraction of the crop side
    dilate: float = 0.04             # grow the mask: its edge is where the model is least sure
    min_confidence: float = 0.7      # mean probability inside the thresholded mask
    min_area: float = 0.03           # share of the crop a plausible mask covers (given for the default framing,
                                     # scaled by the square of a model's eye distance to it) ...
    max_area: float = 0.60           # ... (a face mask covers nose, mouth and chin: ~10-35% of the crop). Not
                                     # scaled: on the wide framing that cost 5.5 points of real masks restored
                                     # (benchmarks/results/wide_framing.md)
    min_centroid_y: float = 0.45     # a mask's centre lies below the eye line (eyes at y = 0.37 of the crop; for
                                     # a model framed otherwise, the same place on the face: Framing.from_default_y)
    # A second, optional safety net after the mask decision: paste only where the model would change its masked
    # region by at least this much (mean |restored - input|, 0..1). The inpainting model predicts a "mask" on bare
    # faces too, and changes them less than masked ones. With the shipped classifier it adds almost nothing
    # (gate_bench, val splits and every other real masked photo: 0.08 spares 1 more of 379 bare LFW photos and
    # loses 1 of 283 restored real masked photos), so it is off; with `classifier=None` 0.08 leaves about half of
    # bare faces alone (benchmarks/results/gate.jsonl).
    min_change: float = 0.0
    # Faces whose eyes are closer than this in the photo are left alone ("face too small"). Off: real masked photos
    # are full of small faces too (gate_bench's eye_distance_sweep: 4 px already drops 3% of restored real masked
    # photos for 0.25% fewer bare photos altered).
    min_eye_distance_px: float = 0.0
    # Eyes closer than this share of the face box's longer side are not taken for the face's eyes (the detector put
    # both on one eye, or on skin: the crop is a close-up of a cheek). Off: on the val photos of the four unmasked
    # sets and the even half of the real masked photos 0.15 spared 6 of the 9 bare faces the classifier scored
    # masked, but on the test photos it spared 3 of the 22 bare photos changed and lost 1.6 points of real masked
    # photos restored (92.4% -> 90.8%; 7 of 333 annotated masked faces: tilted and turned faces have close eyes
    # too); gate_bench's eye_spacing_sweep (benchmarks/results/gate.jsonl). Real frontal faces sit at 0.3-0.5.
    min_eye_spacing: float = 0.0
    # The mask decision: a face is restored only if the mask classifier's probability is at least this. None: the
    # threshold in the classifier's metadata (chosen by benchmarks/gate_bench.py); 0 restores every face the model's
    # own mask gates pass.
    min_mask_probability: float | None = None
    # Faces the classifier scores below this on the first detector's eyes skip the detector's closer look (two
    # BlazeFace invokes for refined eyes, ~10 ms per face on 2 cores) and are decided on those eyes: bare. The
    # classifier's output steps by 1/256, so 0.002 declines only faces it scores 0. Of every face found in
    # real-masked-dev's 565 photos and in the LFW, CelebA, All-Age-Faces and faces-dev test photos, no declined face
    # scores >= the threshold (0.25) on its refined eyes; 0.9.0's classifier declines 86% / 94% / 91% / 76% of the four
    # sets' faces and 7.6% of the real masked photos' (0.7.0's: 86% / 91% / 90% / 75% and 8%, one bare CelebA face
    # above 0.25 on its refined eyes, now spared; benchmarks/results/refine_prescreen.md).
    # 0 refines every face.
    refine_min_probability: float = 0.002
    # The decision looks at each face more than once: the crop on its refined eyes and, where the screening above
    # scored it, the crop on the first detector's eyes, each also mirrored; the face's probability is their geometric
    # mean (mask_decision.combined). The views disagree mostly where the classifier is wrong on one of them (an eye
    # put on a nostril, a hand at the mouth seen from one side). Chosen by gate_bench with 0.8.0's one-network
    # classifier on the val photos of the four unmasked sets and every other real masked photo: 93.6% restored at
    # the threshold 0.2 against 92.6% for the refined crop alone (at 0.25), every set <= 2%; on the test photos and
    # all 565 real masked photos 93.5% against 92.4%, with fewer unmasked photos changed on each set (LFW 1.75%
    # against 2.0%); one or two more invokes, ~0.1 ms each (benchmarks/results/mask_decision_views.md). False: the
    # refined crop alone (0.7.0).
    mirror_views: bool = True
    # Paste-back without seams (edge_runtime/harmonize.py), shares of the crop side: fill a band this wide just
    # outside the predicted mask from both sides (the mask's rim and shadow), and match the patch's tone to the skin
    # around it with an offset spread this far inside. 0 turns either off. Chosen with photo_bench on 120 LFW val
    # photos at 640x480: rim 0.015-0.03 x tone 0.05-0.15 filled everywhere took the seam at the mask's border from
    # 1.43x the real face's to 1.03-1.06x at the same masked PSNR (18.28 dB) but SSIM 0.969 -> 0.966 and a dark
    # smudge where the chin meets a dark collar; filled only where both sides agree (harmonize.fill_rim): seam
    # 1.19x, 18.36 dB, SSIM 0.9685.
    rim_fill: float = 0.02
    tone_spread: float = 0.05
    # The mask's hem (harmonize.clean_rim): what the rim fill and the tone match leave on real photos is a light or
    # dark line, 1-3 px at 128 px, along the predicted mask's top, half inside it where the model is unsure. A band
    # from this share of the crop side inside the mask's border to 1 px more outside is replaced by its median over
    # a (2 * width + 1)-px window (0.016: 5 px at 128). By eye on 57 restored faces of 36 real masked photos
    # (real-masked-dev, 40 drawn by visual_check.pick_photos seed 0), a line or band at the mask's top was left in
    # 57 with 0 (30 of 30 faces with eyes >= 15 px apart), 30 with 0.016 (8 of 30), 23 with 0.023 (5 of 30); most of
    # what is left is mask the model does not mark (small, blurred faces), which no paste setting reaches.
    # photo_bench --canvas 640x480, 120 LFW val photos, 0 / 0.016 / 0.023: masked PSNR 18.3641 / 18.4037 / 18.4185
    # dB, SSIM 0.96853 / 0.96860 / 0.96807, seam 1.1914 / 0.9282 / 0.8759, sharpness 0.5251 / 0.4898 / 0.4772;
    # 0.016 chosen (0.023 costs SSIM and leaves the border smoother than the real face's). 200 LFW test photos, 0 /
    # 0.016: 18.4270 / 18.4772 dB, SSIM 0.96790 / 0.96799, seam 1.3402 / 1.0716, sharpness 0.6287 / 0.5925
    # runtime_bench --masked runs/cpu/data --photos 100, alternated on a shared machine: 22.60-24.26 photos/s with
    # it, 22.81-23.00 without (benchmarks/results/paste_rim_real_photos.md).
    rim_clean: float = 0.016
    # The patch's colour kept within this distance (0..1 RGB, around each pixel's grey) of the cheeks' colour just
    # above the mask (harmonize.limit_chroma; 0 = off): models paint whole lower faces orange, pink, red or grey-green
    # on real photos. Blind by eye on the 107 real masked faces with eyes >= 40 px apart (face_sheets, four columns
    # shuffled per face; benchmarks/results/full_resolution_student_by_eye.md): wrong-colour blobs 30 -> 5 (0.5.0's
    # model) and 32 -> 8 (cpu-full), lips and nose with no rim or seam 11 -> 13 and 26 -> 31. photo_bench, 120 LFW
    # val photos at 640x480, 0 / 0.04 (photo_quality.jsonl, "paste colour limit"): masked PSNR 18.40 / 18.47 dB
    # (0.5.0's model), 18.71 / 18.71 dB (cpu-full).
    chroma_limit: float = 0.04

    @classmethod
    def from_metadata(cls, settings, source: str = "the model") -> "BlendConfig":
        """The settings a model file carries (metadata `runtime.blend`, written by `mask2face export`) over this
        version's defaults: a field the file does not name keeps its default, a field this version does not know is
        ignored (a newer file), a value that is not a number (true or false for a switch) is refused."""
        if settings is None:
            return cls()
        if not isinstance(settings, dict):
            raise ModelFileError(f"{source}: metadata runtime.blend is not an object; export the model again")
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in settings:
                continue
            v = settings[f.name]
            if isinstance(f.default, bool):   # a switch (mirror_views)
                if not isinstance(v, bool):
                    raise ModelFileError(f"{source}: metadata runtime.blend.{f.name} = {v!r} is not true or false; "
                                         "export the model again")
                values[f.name] = v
            elif v is None and f.name == "min_mask_probability":
                values[f.name] = None
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                values[f.name] = float(v)
            else:
                raise ModelFileError(f"{source}: metadata runtime.blend.{f.name} = {v!r} is not a number; export "
                                     "the model again")
        return cls(**values)


def eye_spacing(eye_distance: float, box) -> float:
    """The eyes' distance over the face box's longer side: `BlendConfig.min_eye_spacing`'s measure."""
    return eye_distance / max(box[2] - box[0], box[3] - box[1], 1.0)


def runtime_settings(blend: "BlendConfig" = BlendConfig()) -> dict:
    """What a model file carries for the runtime (metadata `runtime`): the paste gates and blend it was tuned with.
    `Inpainter` uses them unless told otherwise, so another model brings its own."""
    return {"blend": dataclasses.asdict(blend)}


def model_blend(model: Model) -> "BlendConfig":
    """The model's own paste settings (metadata `runtime.blend`), this version's defaults where it has none."""
    runtime = model.metadata.get("runtime") or {}
    if not isinstance(runtime, dict):
        raise ModelFileError(f"{model.source}: metadata runtime is not an object; export the model again")
    return BlendConfig.from_metadata(runtime.get("blend"), str(model.source))


@dataclass
class FaceReport:
    box: list[float]
    score: float
    stage: str
    pasted: bool
    reason: str | None = None        # why not pasted
    mask_probability: float | None = None  # the mask classifier's (None without one)
    mask_confidence: float | None = None
    mask_area: float | None = None
    mask_centroid_y: float | None = None
    change: float | None = None      # mean |restored - input| inside the predicted mask
    eye_distance: float | None = None  # in photo pixels: the crop magnifies the face 0.3 * crop side / this

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass
class _FaceJob:
    report: FaceReport
    matrix: np.ndarray               # photo -> crop similarity
    crop: np.ndarray                 # (size, size, 3) uint8 aligned face
    pred: np.ndarray | None = None   # model output for the crop, (size, size, C) float32 in [0, 1]


@dataclass
class RemoveResult:
    image: np.ndarray
    faces: list[FaceReport] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=lambda: {"detection": 0.0, "mask_decision": 0.0, "model": 0.0,
                                                               "model_invoke": 0.0, "blending": 0.0})
    alpha: np.ndarray | None = None  # (H, W) float32 blend weight actually applied (0 = pixel untouched)
    invokes: int = 0                 # model invocations (faces that were cropped and inpainted)

    @property
    def pasted(self) -> int:
        return sum(f.pasted for f in self.faces)


def check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ImageError("expected an (H, W, 3) uint8 RGB image (load it with edge_runtime.safeio.load_image)",
                         "unsupported-format")
    if min(image.shape[:2]) < 8:
        raise ImageError(f"image of {image.shape[1]}x{image.shape[0]} pixels is too small to hold a face", "empty")
    return image


class Inpainter:
    def __init__(self, model: Model, detector: FaceDetector | None = None,
                 blend: BlendConfig | dict | None = None, classifier: MaskClassifier | None = None):
        """`blend`: None = the paste settings the model file carries (`model_blend`); a dict = those with some fields
        replaced (`{"min_change": 0.08}`); a BlendConfig = exactly these."""
        h, w = model.input_size
        if h != w:
            raise ModelFileError(f"{model.source}: the face crop is square, but the model takes {h}x{w}")
        check_image_to_image(model)
        self.model = model
        self.size = h
        try:
            self.framing = align.framing_of(model.metadata)
        except ValueError as exc:
            raise ModelFileError(f"{model.source}: metadata {exc}; re-export the model with `mask2face export`") from None
        self.detector = detector or FaceDetector(threads=model.threads)
        if not isinstance(blend, BlendConfig):
            unknown = set(blend or {}) - {f.name for f in dataclasses.fields(BlendConfig)}
            if unknown:
                raise ValueError(f"unknown paste setting(s) {sorted(unknown)}: choose from the fields of BlendConfig")
            blend = dataclasses.replace(model_blend(model), **(blend or {}))
        self.blend = blend
        self.classifier = classifier
        self.mask_threshold = (blend.min_mask_probability if blend.min_mask_probability is not None
                               else classifier.threshold if classifier else 0.0)
        # The screening (refine_min_probability) runs only where it cannot decline a face the threshold would
        # restore. gate_bench records every face with the threshold at 0 and sets this to the classifier's own, so
        # that its records hold the shipped decision's views.
        self.screening_threshold = self.mask_threshold
        channels = list(model.metadata.get("output_channels", []))
        self.mask_channel = channels.index("mask") if "mask" in channels else None
        self._template = None if self.mask_channel is not None else _lower_face_template(self.size, self.framing)
        # the area gates are given for the default framing: a face framed wider covers less of the crop
        self._area_scale = self.framing.scale ** 2

    @classmethod
    def from_file(cls, path: str | Path | None = None, delegate: str = "cpu", threads: int = 2,
                  blend: BlendConfig | dict | None = None, detector_threads: int | None = None,
                  detector_stages: tuple[str, ...] = DEFAULT_STAGES,
                  classifier: str | Path | None = "default") -> "Inpainter":
        """Load a .tflite with a delegate (cpu | gpu | nnapi). `path` may name the shipped model instead: None or
        "default" ("mixed", its former second model, is an alias). `classifier` is the mask classifier that decides
        which faces are restored: "default" (the shipped one), a .tflite made by `mask2face classifier`, or None
        (no decision: every face whose predicted mask passes the blend gates is restored). `blend` as in
        `Inpainter()`: by default the paste settings stored in the model file.

        `threads` is the model's thread count; the face detector uses `detector_threads` (default: the same) and
        `detector_stages` (detect.STAGES; without "centerface": the BlazeFace-only cascade).
        Each interpreter has its own XNNPACK thread pool. Invoked once per photo, right after detection, the model
        pays for waking its pool and for cold caches: a bare first invoke after detection took 11-18% longer than
        warm ones (the shipped student on 2 cores, 0.1.0; benchmarks/first_invoke.py shows it in plain LiteRT);
        remove_many runs it back to back, within a few percent of warm (`mask2face bench --what runtime`,
        docs/EDGE.md)."""
        path = shipped_model(path)
        model = Model.from_file(path, delegate=delegate, threads=threads)
        mask_classifier = None if classifier is None else MaskClassifier.from_file(classifier, threads=threads)
        return cls(model, FaceDetector(threads=detector_threads or threads, stages=detector_stages), blend,
                   mask_classifier)

    def describe(self) -> dict:
        """What runs: the model (file, delegate, threads, the crop framing) and the mask decision (classifier and
        threshold)."""
        return {**self.model.describe(), "framing": self.framing.to_dict(), "mask_threshold": self.mask_threshold,
                "mask_classifier": self.classifier.describe() if self.classifier else None}

    def remove(self, image: np.ndarray) -> np.ndarray:
        """The photo with every masked face restored: (H, W, 3) uint8 RGB in and out. A photo where no face is
        restored comes back as the same array, unchanged; see remove_detailed for the per-face reports."""
        return self.remove_detailed(image).image

    def remove_detailed(self, image: np.ndarray, faces: list[Face] | None = None) -> RemoveResult:
        """Per-face report and timings (seconds, split detection / model / blending). `faces` skips detection."""
        return self.remove_many([image], None if faces is None else [faces])[0]

    def remove_many(self, images: list[np.ndarray], faces: list[list[Face]] | None = None,
                    detector: FaceDetector | None = None) -> list[RemoveResult]:
        """Several photos in three passes: detect faces in every photo, run the model on every face crop back to
        back, then blend. Each result is what remove_detailed gives for that photo alone; the model is only
        faster: invoked right after a photo's ~30 ms of detection, its XNNPACK worker has gone to sleep and its
        caches are cold (a bare invoke there: +11-18% over a warm one, 2 threads); back to back it stays within a few
        percent of warm.
        Folders and videos go through this in chunks; a camera, which needs each frame at once, takes one photo at
        a time. `faces[i]` skips detection for photo i. `detector` stands in for the Inpainter's own: a
        track.FaceTracker for consecutive frames of a video (the frames then go in order)."""
        if isinstance(images, np.ndarray) and images.ndim == 3 or not isinstance(images, (list, tuple, np.ndarray)):
            raise TypeError("remove_many takes a list of images ((H, W, 3) uint8 RGB arrays); for one photo use "
                            "remove() or remove_detailed()")
        if faces is not None and len(faces) != len(images):
            raise ValueError(f"faces has {len(faces)} entries for {len(images)} images: give one list per image")
        results = [RemoveResult(image=check_image(image)) for image in images]
        jobs = [self._crops(res, None if faces is None else faces[i], detector or self.detector)
                for i, res in enumerate(results)]
        for res, face_jobs in zip(results, jobs):
            for job in face_jobs:
                t0 = time.perf_counter()
                job.pred = self.model.run(job.crop[None])[0]  # uint8 crop: the model quantises it directly
                res.timings["model"] += time.perf_counter() - t0
                res.timings["model_invoke"] += self.model.last_invoke_s
                res.invokes += 1
        for res, face_jobs in zip(results, jobs):
            t0 = time.perf_counter()
            self._blend(res, face_jobs)
            res.timings["blending"] += time.perf_counter() - t0
        return results

    def _crops(self, result: RemoveResult, faces: list[Face] | None, detector: FaceDetector) -> list["_FaceJob"]:
        """Detect (unless `faces` is given) and cut the aligned training crop of every face."""
        image = result.image
        screened: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
        first_views: dict[tuple, list[float]] = {}
        t0 = time.perf_counter()
        if faces is None:
            faces = detector.detect(image, worth_refining=self._screen(result, screened, first_views))
        t1 = time.perf_counter()
        screening = result.timings["mask_decision"]   # the classifier's time inside detect()
        result.timings["detection"] = t1 - t0 - screening
        jobs = []
        for face in faces:
            report = FaceReport(box=[round(float(v), 1) for v in face.box], score=float(face.score),
                                stage=face.stage, pasted=False)
            result.faces.append(report)
            left, right = face.eyes()
            report.eye_distance = round(float(np.hypot(*(right - left))), 2)
            if report.eye_distance < self.blend.min_eye_distance_px:
                report.reason = (f"face too small (eyes {report.eye_distance:.0f} px apart < "
                                 f"{self.blend.min_eye_distance_px:g})")
                continue
            spacing = eye_spacing(report.eye_distance, face.box)
            if spacing < self.blend.min_eye_spacing:
                report.reason = (f"eyes do not fit the face box ({spacing:.2f} of its side apart < "
                                 f"{self.blend.min_eye_spacing:g})")
                continue
            if id(face) in screened:   # declined before its closer look: decided on the crop already scored
                matrix, crop, report.mask_probability = screened[id(face)]
            else:
                aligned = aligned_crop(image, face, self.size, self.framing)
                if aligned is None:
                    report.reason = "eyes coincide"
                    continue
                matrix, crop = aligned
            if self.classifier is not None:
                if report.mask_probability is None:
                    t2 = time.perf_counter()
                    report.mask_probability = self._probability(self._decision_crop(image, face, crop),
                                                                first_views.get(box_key(face.box), []))
                    result.timings["mask_decision"] += time.perf_counter() - t2
                p = report.mask_probability
                if not p >= self.mask_threshold:   # nan (a broken classifier) counts as "no mask"
                    report.reason = f"no mask (mask probability {p:.2f} < {self.mask_threshold:.2f})"
                    continue
            jobs.append(_FaceJob(report, matrix, crop))
        result.timings["blending"] += time.perf_counter() - t1 - (result.timings["mask_decision"] - screening)
        return jobs

    def _decision_crop(self, image: np.ndarray, face: Face, crop: np.ndarray) -> np.ndarray:
        """The face as the classifier was calibrated to see it: the model's crop where both share a framing and a
        crop size, else the face cut again in the classifier's framing at its crop size (a model framed wider or
        working at another size than the classifier's training pairs)."""
        c = self.classifier
        if c.framing == self.framing and c.crop_size == self.size:
            return crop
        return aligned_crop(image, face, c.crop_size, c.framing)[1]

    def _probability(self, crop: np.ndarray, first_views: list[float]) -> float:
        """The face's mask probability: the classifier on its aligned crop, or with `BlendConfig.mirror_views` the
        geometric mean over the crop, its mirror and the probabilities of the crop on its first eyes
        (`first_views`, from the screening)."""
        if not self.blend.mirror_views:
            return self.classifier.probability(crop)
        return mask_decision.combined([self.classifier.probability(crop), self.classifier.probability(crop, True),
                                       *first_views])

    def _screen(self, result: RemoveResult, screened: dict, first_views: dict):
        """FaceDetector.detect's `worth_refining` for this photo: a face whose crop on the first detector's eyes
        the classifier scores below `refine_min_probability` is declined, its (matrix, crop, probability) kept in
        `screened` by id; a face it refines keeps that crop's probabilities (with its mirror's, when the decision
        mirrors) in `first_views` by box (the closer look keeps the box). None (every face refined) without a
        classifier, with `refine_min_probability` 0, or above `screening_threshold` (the mask threshold but in
        gate_bench: a declined face is never pasted)."""
        if self.classifier is None or not 0 < self.blend.refine_min_probability <= self.screening_threshold:
            return None

        def worth_refining(face: Face) -> bool:
            t0 = time.perf_counter()
            aligned = aligned_crop(result.image, face, self.size, self.framing)
            if aligned is None:
                return True   # _crops says why
            matrix, crop = aligned
            seen = self._decision_crop(result.image, face, crop)
            p = self.classifier.probability(seen)
            refine = p >= self.blend.refine_min_probability
            if refine and self.blend.mirror_views:
                first_views[box_key(face.box)] = [p, self.classifier.probability(seen, mirrored=True)]
            elif not refine:
                screened[id(face)] = (matrix, crop, p)
            result.timings["mask_decision"] += time.perf_counter() - t0
            return refine
        return worth_refining

    def _blend(self, result: RemoveResult, jobs: list["_FaceJob"]) -> None:
        """Paste each face's restored pixels where its own predicted mask is confident; the photo is copied only
        if a face is pasted (otherwise result.image stays the caller's array)."""
        image = out = result.image
        total_alpha = np.zeros(image.shape[:2], np.float32)
        for job in jobs:
            pred = job.pred
            alpha = self._alpha(pred, job.report, job.crop)
            if job.report.pasted:
                if out is image:
                    out = image.copy()
                restored = self._harmonized(pred, job.crop)
                _paste_roi(out, restored, alpha, job.matrix, total_alpha)
        result.image = out
        result.alpha = total_alpha

    def _harmonized(self, pred: np.ndarray, crop: np.ndarray) -> np.ndarray:
        """The crop's restored RGB as uint8, its rim filled and its tone matched to the skin around it."""
        rgb = pred[..., :3]
        if self.mask_channel is not None:
            rgb = harmonized(rgb, crop.astype(np.float32) / 255.0, pred[..., self.mask_channel], self.blend)
        return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)

    def _alpha(self, pred: np.ndarray, report: FaceReport, crop: np.ndarray) -> np.ndarray:
        """Feathered blend weight (crop-sized, 0..1) from the predicted mask; sets report.pasted / reason."""
        s, cfg = self.size, self.blend
        if not np.isfinite(pred).all():   # a broken model or delegate: never paste NaN as black pixels (~20 us)
            report.reason = "model output is not finite (NaN or inf): check the model with `mask2face bench`"
            return np.zeros((s, s), np.float32)
        if self.mask_channel is None:
            # A model without a mask channel: replace the lower face (where masks are) and say so.
            report.pasted, report.reason = True, "no mask channel: lower face replaced"
            return self._template
        prob = pred[..., self.mask_channel]
        binary = prob > cfg.mask_threshold
        area = float(binary.mean())
        report.mask_area = area
        if not binary.any():
            report.mask_confidence = 0.0
            report.reason = "no mask predicted"
            return np.zeros((s, s), np.float32)
        ys, _ = np.nonzero(binary)
        report.mask_confidence = float(prob[binary].mean())
        report.mask_centroid_y = float(ys.mean() / s)
        # only the masked pixels matter: no full-crop float copy per face. For a blend_input model the RGB is
        # already x + m * (rgb - x): this is the change the photo would really get (dividing by m, to judge its RGB
        # alone, altered 41% of bare LFW faces instead of 35% and restored no more real masks: gate_bench, 0.1.0)
        change = np.abs(pred[..., :3][binary] - crop[binary].astype(np.float32) / 255.0).mean(axis=-1)
        report.change = float(change.mean())
        if report.mask_confidence < cfg.min_confidence:
            report.reason = f"weak mask (confidence {report.mask_confidence:.2f} < {cfg.min_confidence})"
        elif not cfg.min_area * self._area_scale <= area <= cfg.max_area:
            report.reason = f"implausible mask area ({area:.0%} of the face crop)"
        elif report.mask_centroid_y < self.framing.from_default_y(cfg.min_centroid_y):
            report.reason = f"implausible mask position (centre at {report.mask_centroid_y:.2f} of the crop height)"
        elif report.change < cfg.min_change:
            report.reason = f"no mask visible (the model would change the region by {report.change:.3f} < {cfg.min_change})"
        if report.reason:
            return np.zeros((s, s), np.float32)
        report.pasted = True
        return feathered_alpha(binary, cfg)


def box_key(box) -> tuple:
    """A face box as a dict key: the closer look gives a face new eyes but keeps its box."""
    return tuple(round(float(v), 3) for v in box)


def aligned_crop(image: np.ndarray, face: Face, size: int, framing: align.Framing = align.DEFAULT_FRAMING
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """(similarity matrix, the size x size training crop in `framing`) of `face` in `image`, aligned on its
    corrected eyes; None where the eyes coincide."""
    try:
        matrix = align.similarity_from_eyes(*face.eyes(), size, framing)
    except ValueError:
        return None
    return matrix, align.crop(image, matrix, size)


def check_image_to_image(model: Model) -> None:
    """A mask2face model maps an RGB crop to a crop of the same size: RGB, plus the mask when it predicts one. Any
    other valid .tflite (a face detector, a classifier) is refused at load time, not with an OpenCV error on
    every photo."""
    inp = [int(v) for v in model.input_detail["shape"]]
    out = [int(v) for v in model.output_detail["shape"]]
    if inp[3] != 3 or len(out) != 4 or out[1:3] != inp[1:3] or out[3] not in (3, 4):
        raise ModelFileError(f"{model.source} is not a mask2face model: it maps {inp} to {out}, where a face crop "
                             "(1, S, S, 3) must come back as (1, S, S, 3 or 4). Use --model default "
                             "or a .tflite made by `mask2face export`")


def harmonized(rgb: np.ndarray, crop01: np.ndarray, mask_prob: np.ndarray, cfg: BlendConfig = BlendConfig()
               ) -> np.ndarray:
    """The model's RGB (S, S, 3 float in [0, 1]) as the runtime pastes it: its tone matched to the skin of `crop01`
    (the crop the model saw) around the mask (`cfg.tone_spread`), its colour kept near the skin's
    (`cfg.chroma_limit`), the band outside the mask filled from both sides
    (`cfg.rim_fill`) and the line along the mask's border removed by a median (`cfg.rim_clean`), the mask being
    `mask_prob > cfg.mask_threshold`. Also what `metrics.blended` pastes."""
    if not (cfg.tone_spread or cfg.rim_fill or cfg.rim_clean or cfg.chroma_limit):
        return rgb
    s = rgb.shape[0]
    binary = mask_prob > cfg.mask_threshold
    if cfg.tone_spread:
        rgb = harmonize.match_tone(rgb.astype(np.float32), crop01.astype(np.float32), binary, cfg.tone_spread * s)
    if cfg.chroma_limit:
        rgb = harmonize.limit_chroma(rgb.astype(np.float32), crop01.astype(np.float32), binary, cfg.chroma_limit,
                                     max(1, int(round(0.03 * s))))
    rgb = harmonize.fill_rim(rgb, binary, int(round(cfg.rim_fill * s)))
    return harmonize.clean_rim(rgb, binary, int(round(cfg.rim_clean * s)))


def feathered_alpha(binary: np.ndarray, cfg: BlendConfig = BlendConfig()) -> np.ndarray:
    """The blend weight (crop-sized float32, 0..1) the runtime pastes a face with: the thresholded predicted mask,
    dilated by cfg.dilate and feathered by cfg.feather (shares of the crop side). Also what `mask2face eval` calls
    the `blended` variant."""
    s = binary.shape[0]
    m = binary.astype(np.uint8)
    k = max(1, int(round(cfg.dilate * s)))
    m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    sigma = max(0.5, cfg.feather * s)
    alpha = cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigma)
    # Tiny tails of the Gaussian would touch pixels far from the mask by a fraction of a level: cut them,
    # so that "untouched" means bit-identical.
    alpha[alpha < 1.0 / 255] = 0.0
    # Zero at the crop border: the warp back must not smear the crop's edge into the photo.
    alpha[:1, :] = alpha[-1:, :] = 0.0
    alpha[:, :1] = alpha[:, -1:] = 0.0
    return np.clip(alpha, 0.0, 1.0)


def _paste_roi(out: np.ndarray, crop_rgb: np.ndarray, crop_alpha: np.ndarray, matrix: np.ndarray,
               total_alpha: np.ndarray) -> None:
    """align.paste_back, in place and restricted to the face's bounding rectangle: warping two full-frame images
    per face cost ~15 ms on a 640x480 photo, the rectangle a fraction of that. Pixels whose warped alpha is 0 keep
    their exact values; `total_alpha` (H, W) records the weight applied."""
    h, w = out.shape[:2]
    bx, by, bw, bh = cv2.boundingRect((crop_alpha > 0).astype(np.uint8))
    if not bw:
        return
    inv = align.invert(matrix)
    corners = align.transform_points(inv, [[bx - 1, by - 1], [bx + bw, by - 1], [bx - 1, by + bh], [bx + bw, by + bh]])
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return
    inv_roi = inv.copy()
    inv_roi[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(crop_rgb, inv_roi, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    alpha = cv2.warpAffine(crop_alpha.astype(np.float32), inv_roi, size, flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    align.blend_into(out[y0:y1, x0:x1], warped, alpha)
    np.maximum(total_alpha[y0:y1, x0:x1], alpha, out=total_alpha[y0:y1, x0:x1])


def _lower_face_template(size: int, framing: align.Framing = align.DEFAULT_FRAMING) -> np.ndarray:
    """Feathered ellipse over nose, mouth and chin in the crop (given for eyes at y = 0.37, 0.3 apart; scaled to
    `framing`)."""
    m = np.zeros((size, size), np.float32)
    k = framing.scale
    cv2.ellipse(m, (size // 2, int(framing.from_default_y(0.72) * size)), (int(0.30 * k * size), int(0.26 * k * size)),
                0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(m, (0, 0), max(0.5, 0.03 * size))
