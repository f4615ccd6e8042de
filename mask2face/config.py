"""Frozen dataclass configs and the presets: one for each model in models/, one for the tests, one for a GPU.

How to run (big_vision style: each preset's docstring says how to run it, how long it takes, what it reaches):

    mask2face pipeline --preset smoke                 # seconds; what the tests use
    mask2face pipeline --preset cpu --faces ../shared/data/lfw   # the teacher of the shipped default, ~2 h on 2 cores
    mask2face pipeline --preset paper --faces DIR     # the reference configuration, for a GPU
    # cpu-full: the shipped default (its teacher is cpu's); cpu-adversarial, cpu-m, cpu-bare, cpu-mixed: the other models in models/ (not shipped in the package)

Any field can be overridden on the command line as `section.field=value`, e.g.
`train.epochs=3 data.image_size=96 teacher.filters=16,32,64`. An unknown key is an error that names the
closest valid key.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field, fields, replace
from typing import Any


class ConfigError(ValueError):
    """A config override that does not name a field or does not parse."""


@dataclass(frozen=True)
class DataConfig:
    image_size: int = 128                # side of the aligned square face crop (pairs are image_size^2)
    mask_types: tuple[str, ...] = ("surgical", "cloth", "n95", "respirator", "gaiter", "polygon")
    val_fraction: float = 0.05           # share of identities held out for validation
    test_size: int = 400                 # number of images (whole identities) in the test split
    shard_size: int = 256                # pairs per shard file
    max_faces: int = 0                   # 0 = every image found; >0 caps the number of source images
    seed: int = 0
    workers: int = 2                     # local processes for detection + rendering
    crop_jitter: float = 0.04            # random scale/shift of the aligned crop, so the runtime's detector-
                                         # based alignment (eyes only) is inside the training distribution
    detector: str = "cascade"            # "hog" | "cascade" (HOG, then padded HOG, then BlazeFace, then MMOD CNN)
    eye_line: float = 0.37               # the crop's framing (edge_runtime.align.Framing): the eyes' height and
    eye_distance: float = 0.30           # distance, shares of the side; export writes them into the model file


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "unet_resnet"            # registry name: unet_resnet | unet | unet_mobile
    filters: tuple[int, ...] = (16, 32, 48, 64, 96, 128)
    kernels: tuple[int, ...] = (3, 3, 3, 3, 3, 3)
    predict_mask: bool = True            # extra sigmoid channel: where the mask is (the runtime blends by it)
    width_multiplier: float = 1.0        # students only
    stem_stride: int = 1                 # students only: 2 = a stride-2 stem and a pixel-shuffle head, so every
                                         # layer runs at half resolution or less
    upsample: str = "nearest"            # teachers (unet_resnet, unet): nearest | bilinear | repeat | transpose;
                                         # unet_mobile: nearest | bilinear | depth_to_space | shuffle | transpose (students:
                                         # depth_to_space or shuffle (no expansion conv), the ones that stay in one
                                         # XNNPACK partition; benchmarks/results/upsample_choice.json)
    blend_input: bool = False            # students only: out = x + m * (rgb - x) inside the model, so pixels
                                         # outside its own mask come back untouched (needs predict_mask)


@dataclass(frozen=True)
class AdversarialConfig:
    """A patch discriminator's term in a training stage (train/adversarial.py); weight 0 = off."""
    weight: float = 0.0                  # of the generator's adversarial loss, beside the reconstruction loss
    loss: str = "hinge"                  # hinge | nonsaturating
    feature_matching: float = 0.0        # L1 between the discriminator's features of restored and real crops,
                                         # in units of `weight`
    r1_gamma: float = 0.0                # gradient penalty on real crops (R1), keeps the discriminator smooth
    filters: tuple[int, ...] = (32, 64, 128, 128)  # stride-2 4x4 conv stages: 16x16 patches at 128 px
    learning_rate: float = 2e-4          # the discriminator's Adam (beta1 0, beta2 0.99)


@dataclass(frozen=True)
class TrainConfig:
    loss: str = "ssim_l1"                # mse | mae | ssim | ssim_l1 | masked_ssim_l1
    ssim_weight: float = 0.84
    l1_weight: float = 0.16
    mask_region_weight: float = 2.0      # extra weight of masked pixels in masked_* losses
    mask_loss_weight: float = 0.1        # BCE weight of the predicted mask channel
    epochs: int = 15                     # cpu: 62 min alone here; val loss still fell at 5 (runs/cpu15)
    batch_size: int = 16
    learning_rate: float = 2e-3
    lr_schedule: str = "cosine"          # constant | cosine
    steps_per_epoch: int = 0             # 0 = one pass over the training split
    strategy: str = "default"            # default | mirrored | multiworker
    flip: bool = True
    bare_share: float = 0.0              # share of training pairs served without a mask (input = truth, mask = 0):
                                         # teaches "leave bare faces alone". Measured trade-off (models/cpu-bare,
                                         # 0.1): bare faces altered 64% -> 1%, but real masks restored 96% -> 69%
                                         # (benchmarks/results/gate.jsonl), so the default model keeps 0
    degrade: float = 0.0                 # share of training pairs turned into low-quality photos (downscaled 0.3-1x and
                                         # back, JPEG 30-90), input and targets alike: real masked photos are often
                                         # small and compressed, synthetic ones never; see benchmarks/results/gate.jsonl
    init_from: str = ""                  # start from this model's weights (fine-tune, e.g. on your own faces)
    seed: int = 0
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)


@dataclass(frozen=True)
class DistillConfig:
    # Half resolution inside, pixel-shuffle upsampling without expansion convs, and the model pastes its own RGB
    # by its own mask (blend_input), trained against the teacher inside the mask and the truth outside it
    # (benchmarks/results/student_blend_input.md: the SSIM gap to the teacher went from 0.038 to ~0.01).
    student: ModelConfig = field(default_factory=lambda: ModelConfig(
        arch="unet_mobile", filters=(32, 48, 64, 96, 120), kernels=(3, 3, 3, 3, 3),
        upsample="shuffle", stem_stride=2, blend_input=True))
    teacher_weight: float = 0.5          # weight of output matching with the teacher (task loss gets 1 - w)
    composite_teacher: bool = True       # match the teacher inside the true mask and the truth outside it (the
                                         # teacher's blur of unmasked pixels is nothing to learn)
    feature_weight: float = 0.0          # intermediate-feature matching via 1x1 adapters (0 = off)
    epochs: int = 40                     # ~100 images/s here alone: 40 epochs over 7,200 pairs in ~45-50 min; final
                                         # val loss 0.1028 for 20 epochs (runs/cpu15), 0.0950 for 40 (runs/cpu17):
                                         # student SSIM +0.006
    batch_size: int = 16
    learning_rate: float = 2e-3
    steps_per_epoch: int = 0
    start_from: str = ""                 # start the student from this model's weights (fine-tuning on your own
                                         # faces: models/cpu/student.keras; a student distilled from scratch on a
                                         # few hundred pairs learns nothing useful). Not "init_from": that name is
                                         # train's, and hashes of runs made before this field must not change.
    mask_grow: float = 0.0               # grow the student's mask targets (the true mask and the teacher's mask
                                         # channel, in distill and qat) by this share of the crop side (0.03: 4 px at
                                         # 128), so it also replaces the band where a real mask's rim and shadow end
                                         # (a mask channel trained on the exact edge left them as a seam)
    worn_mask_share: float = 0.0         # share of training pairs (distill and qat) whose mask is restyled as a worn
                                         # one (train/mask_styles.py: real colours, shading, folds, prints, half of
                                         # them worn higher and wider) with the same face as the target: the output
                                         # must not carry the mask's colour, and the mask channel learns real fits
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)


@dataclass(frozen=True)
class QatConfig:
    epochs: int = 2                      # from calibrated ranges the val loss is flat after 1 epoch (runs/cpu13/14)
    calibrate_samples: int = 256         # start the activation ranges at the float model's (0 = tfmot's [-6, 6])
    batch_size: int = 16
    learning_rate: float = 2e-5          # 2e-4 (8 epochs) drifted: QAT-int8 19.49 dB vs 19.52 dB here
    steps_per_epoch: int = 0
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)
    # What QAT learns from besides the truth: "teacher" (the run's teacher at distill.teacher_weight, as distill)
    # or "student" (the float student being quantised, at weight 1: the int8 model learns to reproduce it, detail
    # included, instead of being pulled towards the truth's blur-rewarding SSIM+L1 again; cpu-full's QAT kept a
    # structure of 0.79 of the real face's this way against 0.63: models/cpu-full/README.md).
    distill_from: str = "teacher"


@dataclass(frozen=True)
class ExportConfig:
    precisions: tuple[str, ...] = ("fp32", "fp16", "dynamic", "int8", "qat-int8")
    representative_samples: int = 200
    int8_io: bool = False                # int8 input/output tensors (quantisation parameters recorded)


@dataclass(frozen=True)
class ClassifierConfig:
    """The per-face mask decision (train/mask_classifier.py): a small CNN on the aligned face crop, downscaled."""
    input_size: int = 64                 # the aligned crop, area-downscaled: a mask covers a third of the face
    filters: tuple[int, ...] = (16, 32, 64, 96)   # stem, then one stride-2 stage of separable convs per entry
    epochs: int = 7                      # ~6 min here on four training sets; 14 epochs or wider filters did no
                                         # better on real masked photos (models/mask-classifier/README.md)
    batch_size: int = 64
    learning_rate: float = 3e-3
    below_chin_share: float = 0.2        # share of bare examples wearing the mask pulled down under the mouth
                                         # (a scarf or a lowered mask: cloth on the face, nothing to restore)
    low_mask_share: float = 0.15         # share of masked examples with the mask pulled down off the nose (still
                                         # covers the mouth: restore it)
    restyle_share: float = 0.85          # share of masked examples restyled as worn masks (real colours, shading,
                                         # fabric noise, soft edges): the generator's flat masks alone do not
                                         # teach it real black and white masks
    reshape_share: float = 0.0           # share of restyled masks worn as real ones are: higher toward the eyes, wider
                                         # over the cheeks, with folds and printed graphics (mask_styles.worn_region)
    fit_share: float = 0.0               # share of restyled masks cut to the lower face (mask_styles.fitted_region:
                                         # cheeks' edges, jaw and neck in view, often ear loops), the size of a real
                                         # surgical mask; the generator's and the worn ones reach the crop's edges
    relief_share: float = 0.0            # share of restyled masks lit and creased as real ones are in photos
                                         # (mask_styles.worn_relief: a ridge over the nose, wrinkles, deep pleats)
    members: tuple[str, ...] = ()        # calibrated classifiers (.keras) this one joins: the exported model's
                                         # logit is the mean of theirs and this one's (train.mask_classifier.ensemble)
    init_from: str = ""                  # start from this classifier's weights (fine-tuning)
    degrade: float = 0.6                 # share of examples made into hard photos: low light, grey, blur, JPEG, casts
    misalign_share: float = 0.2          # share of examples cut far off the eyes (profiles, small faces)
    grey_share: float = 0.15             # share of the hard photos made grey (black and white photos, night cameras)
    threshold: float = 0.7               # mask probability at which a face counts as masked (written into the
                                         # .tflite metadata), by gate_bench's rule on the val splits and every
                                         # other real masked photo: the most real masks restored with every bare
                                         # set <= 2% altered. 0.7 for these defaults (0.5 altered 2.1% of LFW val
                                         # photos); the shipped classifier, preset('mask-classifier'): 0.2 for
                                         # the runtime's decision over mirrored views (BlendConfig.mirror_views;
                                         # 0.25 for its refined crop alone, through 0.7.0)
    seed: int = 0


@dataclass(frozen=True)
class BenchConfig:
    warmup: int = 5
    runs: int = 50
    threads: tuple[int, ...] = (1, 2)
    eval_samples: int = 400


@dataclass(frozen=True)
class Config:
    preset: str = "cpu"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    qat: QatConfig = field(default_factory=QatConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)


def _smoke() -> Config:
    """Tiny images and models: the whole pipeline in seconds. Used by the tests; reaches nothing useful."""
    return Config(
        preset="smoke",
        data=DataConfig(image_size=32, test_size=4, shard_size=8, max_faces=24, workers=1, detector="hog",
                        eye_line=0.30, eye_distance=0.25),   # align.WIDE_FRAMING, so the tests run it end to end
        teacher=ModelConfig(filters=(8, 16, 16), kernels=(3, 3, 3)),
        train=TrainConfig(epochs=2, batch_size=4, learning_rate=3e-3, steps_per_epoch=0),
        distill=DistillConfig(student=ModelConfig(arch="unet_mobile", filters=(4, 8, 8), kernels=(3, 3, 3),
                                                  upsample="depth_to_space"),
                              epochs=1, batch_size=4),
        qat=QatConfig(epochs=1, batch_size=4),
        export=ExportConfig(representative_samples=8),
        bench=BenchConfig(warmup=1, runs=5, threads=(1,), eval_samples=8),
        classifier=ClassifierConfig(input_size=16, filters=(4, 8), epochs=1, batch_size=8),
    )


def _cpu() -> Config:
    """What trained the shipped default model through 0.5.0 (models/cpu), and the teacher of 0.6.0's (cpu-full), on 2
    CPU cores in about 2 hours, in the background, resumable.

    128x128 crops; a teacher with widths 16..128 and 3x3 kernels (~31 images/s for training on 2 cores alone: 15
    epochs over ~7,200 LFW pairs in 62 min); a depthwise-separable student with widths 32..120 that runs at half
    resolution inside and pastes its own RGB by its own mask (40 distillation epochs, 45-53 min, then 2 QAT epochs
    at lr 2e-5 from calibrated ranges, ~3 min). Reaches (runs/cpu17 = models/cpu): teacher 20.45 dB masked PSNR /
    SSIM 0.852 on the LFW test split; student QAT-int8 19.74 dB / 0.838 (post-training int8 19.70 dB / 0.837),
    155-160 KB, 0.60-0.61 ms on one core (26x the teacher fp32). Every figure is in benchmarks/results/ (README)."""
    return Config(preset="cpu")


def _cpu_adversarial() -> Config:
    """Not the shipped default: 0.5.0's default student (models/cpu/student.keras) fine-tuned against a patch
    discriminator, for lips and nostrils instead of a smooth patch. models/cpu-adversarial is one run of it.

        mask2face data --preset cpu-adversarial --run runs/adv --faces ../shared/data/lfw --workers 2   # ~1 min
        mkdir -p runs/adv/teacher && cp models/cpu/teacher.keras runs/adv/teacher/best.keras       # the cpu teacher
        mask2face distill --preset cpu-adversarial --run runs/adv      # 2 epochs, ~8 min on 2 cores (AMD EPYC)
        mask2face qat --preset cpu-adversarial --run runs/adv          # 200 steps, ~3 min
        mask2face export --preset cpu-adversarial --run runs/adv --model runs/adv/student/best.keras \
            --model runs/adv/qat/best.keras                           # the student's files only

    Teacher weight 0.25, distillation lr 2e-4 cosine; hinge loss weight 0.02 with feature matching 10 (in units of
    it), a 16..64 discriminator at lr 1e-4 without R1; QAT keeps the term with a discriminator of its own. Reaches
    (0.4.0, `mask2face bench`, benchmarks/results/adversarial_student.md): QAT int8 on the LFW test pairs 19.08 dB
    masked PSNR (0.5.0's default: 19.74) with sharpness 0.92 (0.66), blockiness 1.12 (1.11), seam 0.95 (0.91);
    on faces-dev 17.39 dB
    (17.87) and sharpness 0.69 (0.50). By eye on 104 real masked faces it draws lips on 43 (the default: 2) but looks
    like a plausible face on fewer (21 against 45: orange or red patches on dark masks). Stronger: weight 0.05 at lr
    5e-4 for 2 epochs reached sharpness 1.20 at 18.71 dB (float, `mask2face eval`), with striped artefacts by 5."""
    base = _cpu()
    return replace(
        base, preset="cpu-adversarial",
        distill=replace(base.distill, start_from="models/cpu/student.keras", teacher_weight=0.25, learning_rate=2e-4,
                        epochs=2, adversarial=AdversarialConfig(weight=0.02, feature_matching=10.0,
                                                                filters=(16, 32, 64, 64), learning_rate=1e-4)),
        # QAT starts a discriminator of its own (the default 32..128, no feature matching) at the same weight
        qat=replace(base.qat, epochs=1, steps_per_epoch=200,
                    adversarial=AdversarialConfig(weight=0.02, learning_rate=1e-4)))


def _cpu_full() -> Config:
    """A full-resolution student as large as the teacher: the `cpu` teacher's own design and weights (16..128, 1.25 M
    parameters), its nearest upsampling computed as `repeat` (one XNNPACK partition), fine-tuned by distillation
    against a patch discriminator on LFW pairs half of whose masks are restyled as worn ones, then QAT with the term
    kept, learning to reproduce the float student (`qat.distill_from="student"`). No 2x2 blocks: every layer of the
    decoder's last stage runs at the crop's resolution.

        mask2face data --preset cpu-full --run runs/full --faces ../shared/data/lfw --workers 2   # ~2 min
        mkdir -p runs/full/teacher && cp models/cpu/teacher.keras runs/full/teacher/best.keras   # the cpu teacher
        mask2face distill --preset cpu-full --run runs/full      # 400 steps from the teacher's weights, ~20 min
        mask2face qat --preset cpu-full --run runs/full          # 150 steps, ~6 min (+3 min of float outputs)
        mask2face export --preset cpu-full --run runs/full --model runs/full/qat/best.keras
        python -m mask2face.compress.recover runs/full/export/student-qat-int8.tflite --preset cpu-full \
            --data runs/full/data --out runs/full/student.keras     # its weights in float: fp16, fine-tuning

    Teacher weight 0.25 (inside the true mask; the truth outside it), lr 2e-4 cosine, hinge loss weight 0.03 with
    feature matching 10, the 16..64 discriminator of `cpu-adversarial` (the teacher starts at structure 0.62,
    blurrier than the float student's 0.78). Steps, not epochs: ~5 pairs/s on 2 cores (AMD EPYC) with the
    discriminator and the worn masks. QAT against the truth and the teacher (0.6.0's recipe) took the int8 file's
    structure to 0.63; against the float student it keeps it (0.79 in int8; benchmarks/results/structure_metric.md).
    Reaches (models/cpu-full, the shipped default since 0.6.0, this recipe's since 0.7.0): QAT int8 on the LFW test
    pairs 19.25 dB masked PSNR (0.6.0's file: 20.11; 0.5.0's: 19.74) with structure 0.79 (0.63); on faces-dev 17.7 dB
    (18.2) and structure 0.60 (0.49); by eye, blind, lips drawn on 36 of 107 real masked faces (0.6.0's file: 5);
    1.3 MB, 10-13 ms per invoke on 2 threads.
    """
    base = _cpu()
    adversarial = AdversarialConfig(weight=0.03, feature_matching=10.0, filters=(16, 32, 64, 64), learning_rate=1e-4)
    return replace(
        base, preset="cpu-full",
        distill=replace(base.distill, student=replace(base.teacher, upsample="repeat"),
                        start_from="models/cpu/teacher.keras", teacher_weight=0.25, learning_rate=2e-4, epochs=2,
                        steps_per_epoch=200, worn_mask_share=0.5, adversarial=adversarial),
        qat=replace(base.qat, epochs=1, steps_per_epoch=150, distill_from="student",
                    adversarial=AdversarialConfig(weight=0.03, learning_rate=1e-4)))


def _five_epoch_teacher_student(name: str, student: ModelConfig, distill_epochs: int, qat_epochs: int,
                                **train: Any) -> Config:
    """The `cpu` preset as the students of the 5-epoch teacher were made (models/cpu-m, cpu-bare, cpu-mixed): the
    teacher trained 5 epochs, a student that does not paste its own RGB, distilled against the teacher's whole
    output, and QAT at lr 2e-4 from tfmot's [-6, 6] ranges. The fields that hold these values came after those
    runs; their config.json files lack them, which is what each meant then."""
    base = _cpu()
    return replace(
        base, preset=name, train=replace(base.train, **{"epochs": 5, **train}),
        distill=replace(base.distill, student=student, composite_teacher=False, epochs=distill_epochs),
        qat=replace(base.qat, epochs=qat_epochs, learning_rate=2e-4, calibrate_samples=0))


def _cpu_m() -> Config:
    """Not shipped in the package (models/cpu-m, kept for comparison: the default is better and faster). The 5-epoch
    teacher and a full-resolution student with widths 16..96, the quality side of that teacher's students.

        mask2face pipeline --preset cpu-m --faces ../shared/data/lfw

    On 2 cores (AMD EPYC): data ~2 min, teacher 5 epochs 32 min (20 images/s), distillation 8 epochs 21 min,
    QAT 2 epochs 5 min (the stages' reports). Reaches (benchmarks/results/cpu_student_m.md, LFW test pairs): the
    teacher 19.9 dB masked PSNR / SSIM 0.839; the student QAT int8 18.7 dB / 0.807, 175 KB, 1.43 ms on one core
    (0.5.0's default, models/cpu: 19.74 dB, 0.61 ms)."""
    return _five_epoch_teacher_student(
        "cpu-m", ModelConfig(arch="unet_mobile", filters=(16, 32, 48, 64, 96), kernels=(3, 3, 3, 3, 3),
                             upsample="depth_to_space"), distill_epochs=8, qat_epochs=2)


def _cpu_bare() -> Config:
    """Not shipped in the package (models/cpu-bare): leaves photos of unmasked people alone, but misses more real
    masks. The 5-epoch teacher trained 12 more epochs at lr 1e-3 with one training pair in ten served without a
    mask, then a full-resolution 8..64 student distilled and QAT-trained on the same pairs.

        mask2face pipeline --preset cpu-m --faces ../shared/data/lfw --until train   # the 5-epoch teacher it starts from
        mask2face pipeline --preset cpu-bare --faces ../shared/data/lfw
        mask2face export --preset cpu-bare --out runs/cpu-bare/export-int8io export.int8_io=true \
            export.precisions=qat-int8                                                # its int8-I/O file

    (models/cpu-bare started from the 5-epoch teacher models/cpu held before its 15-epoch one: `git show
    7b66cd2:models/cpu/teacher.keras`, the sha256 its teacher's state.json names.) On 2 cores (AMD EPYC): teacher
    12 epochs 63 min (24.7 images/s), distillation 12 epochs 17 min, QAT 2 epochs 3 min (the stages' reports).
    Reaches (benchmarks/results/cpu_bare_models.md, gate.jsonl): the teacher 20.37 dB masked PSNR / SSIM 0.850 on the
    LFW test pairs, the student QAT int8 18.1 dB / 0.792, 107 KB, 0.92 ms on one core; without the mask classifier
    it changes 1.0% of the LFW test photos of unmasked people and restores 68.8% of real masked photos."""
    return _five_epoch_teacher_student(
        "cpu-bare", ModelConfig(arch="unet_mobile", filters=(8, 16, 32, 48, 64), kernels=(3, 3, 3, 3, 3),
                                upsample="depth_to_space"), distill_epochs=12, qat_epochs=2,
        epochs=12, learning_rate=1e-3, bare_share=0.1, init_from="runs/cpu-m/teacher/best.keras")


def _cpu_mixed() -> Config:
    """Not shipped in the package (models/cpu-mixed, the `mixed` model of 0.1.0; since 0.2.0 the mask classifier
    decides instead). The 5-epoch teacher's student at half resolution, widths 32..80, distilled with 5% of the
    pairs served without a mask and half of them as low-quality photos (downscaled and JPEG-compressed).

        mask2face pipeline --preset cpu-m --faces ../shared/data/lfw --until train   # the 5-epoch teacher
        mkdir -p runs/cpu-mixed && cp -r runs/cpu-m/data runs/cpu-m/teacher runs/cpu-mixed/
        mask2face distill --preset cpu-mixed && mask2face qat --preset cpu-mixed && mask2face export --preset cpu-mixed

    Its teacher is plain: `mask2face pipeline --preset cpu-mixed` would train one on the student's bare and
    low-quality shares too (train.bare_share and train.degrade serve every stage), a different teacher from the one
    models/cpu-mixed was distilled from. On 2 cores (AMD EPYC): distillation 14 epochs at 58.5 images/s (~29 min),
    QAT 3 epochs at 63.7 images/s (~6 min) (the stages' reports). Reaches (benchmarks/results/student_designs.md,
    gate.jsonl): QAT int8 18.7 dB masked PSNR / SSIM 0.800 on the LFW test pairs, 150.8 KB, 0.63 ms on one core;
    without the mask classifier it changes 2.5% of the LFW test photos of unmasked people and restores 90.8% of
    real masked photos (BlazeFace-only detector; with CenterFace 4.75% / 94.16%)."""
    return _five_epoch_teacher_student(
        "cpu-mixed", ModelConfig(arch="unet_mobile", filters=(32, 48, 64, 80), kernels=(3, 3, 3, 3),
                                 upsample="depth_to_space", stem_stride=2), distill_epochs=14, qat_epochs=3,
        bare_share=0.05, degrade=0.5)


def _paper() -> Config:
    """The reference configuration, for users with a GPU: 256x256x3, filters 64,128,128,256,256,512,
    kernels 7,7,7,3,3,3, unet_resnet, SSIM+L1 loss, Adam, 20 epochs, batch 12, 1000 test images.
    About 3 s per image forward in fp32 on one CPU core: not for CPU training."""
    return Config(
        preset="paper",
        data=DataConfig(image_size=256, test_size=1000, eye_line=0.30, eye_distance=0.25),   # the whole mask in the crop
        teacher=ModelConfig(arch="unet_resnet", filters=(64, 128, 128, 256, 256, 512), kernels=(7, 7, 7, 3, 3, 3)),
        train=TrainConfig(loss="ssim_l1", epochs=20, batch_size=12, learning_rate=1e-3),
        distill=DistillConfig(student=ModelConfig(arch="unet_mobile", filters=(16, 32, 48, 64, 96),
                                                  kernels=(3, 3, 3, 3, 3), upsample="depth_to_space"), epochs=10, batch_size=12),
        qat=QatConfig(epochs=2, batch_size=12),
    )


def _mask_classifier() -> Config:
    """The shipped mask classifier (models/mask-classifier, edge_runtime/assets/mask2face_mask_classifier.tflite):
    is there a mask on this face? Two members whose calibrated logits are averaged in one .tflite: the first
    (`models/mask-classifier/member-worn.keras`, the 0.5.0-0.8.0 classifier) is this recipe with `relief_share=0`
    and no members; this recipe trains the second, whose restyled masks are all lit and creased as real ones are in
    photos (`mask_styles.worn_relief`). Both: the `cpu` preset with the positives restyled as masks are worn (60% of
    the restyled ones higher toward the eyes, wider over the cheeks, with folds and printed graphics) and the
    threshold that gate_bench's rule picks on the validation photos and every other real masked photo.

        for s in lfw:cpu celeba:celeba all-age-faces:aaf faces-dev:facesdev; do
          mask2face data --preset cpu --run runs/${s#*:} --faces ../shared/data/${s%%:*}     # ~1-3 min each
        done
        mask2face classifier --preset mask-classifier --run runs/clf --data runs/cpu/data --data runs/celeba/data \
            --data runs/aaf/data --data runs/facesdev/data               # 7 epochs, ~10 min on 2 cores (AMD EPYC)

    Reaches (benchmarks/results/gate.jsonl, models/mask-classifier/README.md): with 0.7.0's inpainting model and the
    runtime's decision over the face's views (BlendConfig.mirror_views), on the test photos of four sets of unmasked
    people and all 565 real masked photos, threshold 0.25, 94.0% of the real masked photos restored while 1.5% / 0.5%
    / 0.5% / 0.52% of the LFW / CelebA / All-Age-Faces / faces-dev photos of unmasked people are changed (the first
    member alone at 0.2, 0.8.0: 93.5%, 1.75% / 0.5% / 0.75% / 0.78%; the 0.2.0 classifier at its threshold 0.7:
    88.0%, 1.25% / 0.75% / 0.5% / 0.52%)."""
    base = _cpu()
    return replace(base, preset="mask-classifier",
                   classifier=replace(base.classifier, reshape_share=0.6, relief_share=1.0,
                                      members=("models/mask-classifier/member-worn.keras",), threshold=0.25))


# The students of the 5-epoch teacher (cpu-m, cpu-bare, cpu-mixed) are not shipped in the package; models/ keeps
# them for comparison, and their presets are the recipes that made them.
PRESETS = {"smoke": _smoke, "cpu": _cpu, "cpu-adversarial": _cpu_adversarial, "cpu-full": _cpu_full, "cpu-m": _cpu_m,
           "cpu-bare": _cpu_bare,
           "cpu-mixed": _cpu_mixed, "mask-classifier": _mask_classifier, "paper": _paper}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()


def flat_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every overridable dotted key, e.g. 'train.epochs', 'distill.student.filters'."""
    keys = []
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += flat_keys(value, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def parse_value(raw: str, current: Any, key: str) -> Any:
    """`raw` as the type of `current` (bool words, int, float, comma-separated tuple); ConfigError otherwise."""
    try:
        if isinstance(current, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(current, int):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, tuple):
            items = [s.strip() for s in raw.strip("()[] ").split(",") if s.strip()]
            kind = type(current[0]) if current else str
            return tuple(kind(s) for s in items)
        return raw
    except ValueError:
        raise ConfigError(f"{key}={raw!r}: expected {type(current).__name__} like {current!r}") from None


def _set(cfg: Any, path: list[str], raw: str, full_key: str) -> Any:
    name = path[0]
    current = getattr(cfg, name)
    if len(path) == 1:
        return replace(cfg, **{name: parse_value(raw, current, full_key)})
    return replace(cfg, **{name: _set(current, path[1:], raw, full_key)})


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply `key=value` strings; unknown keys raise ConfigError naming the closest valid key."""
    valid = flat_keys(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value (e.g. train.epochs=3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        if key not in valid:
            # Also accept a bare field name when it is unique (epochs=3 -> train.epochs only if unambiguous).
            matches = [k for k in valid if k.split(".")[-1] == key]
            if len(matches) == 1:
                key = matches[0]
            else:
                close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                if len(matches) > 1:
                    hint = f"; it is ambiguous: {', '.join(matches)}"
                raise ConfigError(f"unknown config key {key!r}{hint}")
        cfg = _set(cfg, key.split("."), raw, key)
    return cfg


# Ranges a value must lie in to mean anything, by field name (anywhere in the config). A zero batch divides by
# zero deep in TensorFlow; zero or negative epochs "finish" a run that trained nothing; nan/inf poison training.
AT_LEAST_ONE = ("epochs", "batch_size", "image_size", "shard_size", "workers", "test_size")
SHARES = ("val_fraction", "bare_share", "degrade", "teacher_weight", "below_chin_share", "low_mask_share",
          "threshold", "restyle_share", "misalign_share", "reshape_share", "grey_share",
          "worn_mask_share", "fit_share")     # in [0, 1]
NOT_NEGATIVE = ("steps_per_epoch", "max_faces", "mask_grow", "crop_jitter", "feature_weight", "ssim_weight",
                "l1_weight", "mask_region_weight", "mask_loss_weight", "calibrate_samples", "weight",
                "feature_matching", "r1_gamma")


CHOICES = {"distill_from": ("teacher", "student")}


def check_ranges(cfg: Any, prefix: str = "") -> None:
    """Raise ConfigError for a value outside its field's meaningful range (see the tables above)."""
    for f in fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_ranges(value, key + ".")
            continue
        if f.name in CHOICES and value not in CHOICES[f.name]:
            raise ConfigError(f"{key}={value}: choose one of {', '.join(CHOICES[f.name])}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}={value}: must be a finite number")
        if f.name in AT_LEAST_ONE and value < 1:
            raise ConfigError(f"{key}={value}: must be 1 or more")
        if f.name == "learning_rate" and value <= 0:
            raise ConfigError(f"{key}={value}: must be above 0 (e.g. {key}=1e-3)")
        if f.name in SHARES and not 0 <= value <= 1:
            raise ConfigError(f"{key}={value}: is a share, between 0 and 1")
        if f.name in NOT_NEGATIVE and value < 0:
            raise ConfigError(f"{key}={value}: must be 0 or more")
        if f.name == "epochs" and value > 100_000:
            raise ConfigError(f"{key}={value}: more epochs than any run here can take; use at most 100000")


def load(preset_name: str = "cpu", overrides: list[str] | None = None) -> Config:
    cfg = apply_overrides(preset(preset_name), list(overrides or []))
    check_ranges(cfg)
    return cfg


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _rebuild(cls: type, data: dict) -> Any:
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        ftype = hints[f.name]
        if isinstance(value, dict) and dataclasses.is_dataclass(ftype):
            value = _rebuild(ftype, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def from_dict(data: dict) -> Config:
    """Inverse of to_dict (reads a run's config.json)."""
    return _rebuild(Config, data)


# Fields added after runs, checkpoints and exports already existed, with the value that means "as before". At that
# value they are left out of config hashes and training run keys (train.checkpoints.run_key), so upgrading mask2face neither
# refuses to resume an older run nor changes the hash its exported files carry.
FIELDS_ADDED_LATER = {"eye_line": 0.37, "eye_distance": 0.30, "mask_grow": 0.0, "start_from": "", "worn_mask_share": 0.0, "reshape_share": 0.0, "grey_share": 0.15,
                      "fit_share": 0.0, "relief_share": 0.0, "members": [], "distill_from": "teacher",
                      "adversarial": json.loads(json.dumps(dataclasses.asdict(AdversarialConfig()))),
                      "classifier": json.loads(json.dumps(dataclasses.asdict(ClassifierConfig())))}


def _as_json(value: Any) -> Any:
    """The value as config.json holds it (tuples become lists), so a loaded and a built config compare alike."""
    return json.loads(json.dumps(value))


def without_later_defaults(tree: Any) -> Any:
    """A nested dict without FIELDS_ADDED_LATER keys that hold their "as before" value (what hashes are made of)."""
    if isinstance(tree, dict):
        # inner fields first: a section added later still matches its "as before" value when fields added to it
        # since hold theirs
        inner = {k: without_later_defaults(v) for k, v in tree.items()}
        return {k: v for k, v in inner.items()
                if not (k in FIELDS_ADDED_LATER and _as_json(v) == without_later_defaults(FIELDS_ADDED_LATER[k]))}
    return tree


def config_hash(section: Any) -> str:
    """Short stable hash of a config (or a section of it): a stage whose outputs exist with the same hash is skipped."""
    blob = json.dumps(without_later_defaults(dataclasses.asdict(section)), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:12]
