"""`mask2face qat`: quantization-aware fine-tuning of the distilled student (tfmot), with the distillation loss.

    mask2face qat --preset cpu          # RUN/student/best.keras -> RUN/qat/{best,last}.keras + qat_spec.json

`quantize_student` annotates every layer with tfmot's default 8-bit scheme; the custom `DepthToSpace` layer gets
`DepthToSpaceQuantizeConfig` (quantises nothing: a permutation keeps its input's scale); the blend's `Subtract` and
`Multiply` (not in tfmot's registry) get `OutputQuantizeConfig`. The teacher outputs
cached by `mask2face distill` are reused, so the loss is the same (1-w)*task + w*teacher_match.

Loading: tfmot 0.8.1 QAT models do not round-trip through `keras.models.load_model(.keras)` (the QuantizeLayer is
built twice on load: "expected 5 variables, but received 3", tensorflow/model-optimization PR #1123, open). So
`load_qat_model(path)` rebuilds the quantised graph from the float architecture saved beside it
(`qat_spec.json`, the float student's Keras JSON) and loads the weights into it; fit_model's resume does the same.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import tf_keras as keras  # noqa: E402

from mask2face import runs  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402

SPEC_NAME = "qat_spec.json"


def quantize_student(model: keras.Model) -> keras.Model:
    """tfmot quantize_model for the student (custom QuantizeConfig for DepthToSpace)."""
    import tensorflow_model_optimization as tfmot

    from mask2face.train import student_arch as sa

    qk = tfmot.quantization.keras
    d2s_cfg, out_cfg = sa.depth_to_space_quantize_config(), sa.output_quantize_config()

    def annotate(layer):
        if isinstance(layer, sa.DepthToSpace):     # and SpaceToDepth, its subclass: permutations
            return qk.quantize_annotate_layer(layer, d2s_cfg())
        if isinstance(layer, (keras.layers.Subtract, keras.layers.Multiply)):
            return qk.quantize_annotate_layer(layer, out_cfg())
        return layer

    annotated = keras.models.clone_model(model, clone_function=annotate)
    annotated.set_weights(model.get_weights())
    annotated = qk.quantize_annotate_model(annotated)
    with qk.quantize_scope(sa.quantize_scope_objects()):
        return qk.quantize_apply(annotated)


def calibrate_ranges(qmodel: keras.Model, float_model: keras.Model, images, batch_size: int = 16) -> dict:
    """Start every moving-average activation range of the QAT model at the float model's measured range.

    tfmot starts each range at [-6, 6] and moves it by an EMA with decay 0.999 per training step (hard-coded), so
    after one epoch of 451 steps 64% of that start is still in it: a sigmoid output quantised over [-3.8, 4.2]
    instead of [0, 1]. The weights then learn around ranges that are still shrinking, and after 8 epochs the
    output range was still [-0.27, 1.23] (runs/cpu12): QAT-int8 scored below plain post-training int8. Here each
    `quant_X/{output,post_activation}_{min,max}` is set to the mean over `images` batches of the float layer X's
    batch min / max (what the EMA converges to), widened to include 0 as TFLite requires. Weight ranges
    (`*kernel_min/max`) are recomputed from the weights at every step and are left alone.
    Returns {variable name: (old, new)} for the log."""
    import numpy as np

    targets = {}
    for var in qmodel.non_trainable_weights:
        owner, _, leaf = var.name.rpartition("/")
        if leaf.split(":")[0] in ("output_min", "output_max", "post_activation_min", "post_activation_max") \
                and owner.startswith("quant_"):
            targets.setdefault(owner[len("quant_"):], []).append(var)
    names = [n for n in targets if n in {l.name for l in float_model.layers}]
    if not names:
        return {}
    probe = keras.Model(float_model.input, [float_model.get_layer(n).output for n in names])
    lows, highs = {n: [] for n in names}, {n: [] for n in names}
    for start in range(0, len(images), batch_size):
        outs = probe(images[start:start + batch_size], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, out in zip(names, outs):
            lows[n].append(float(np.min(out)))
            highs[n].append(float(np.max(out)))
    changed = {}
    for n in names:
        low, high = min(float(np.mean(lows[n])), 0.0), max(float(np.mean(highs[n])), 0.0)
        for var in targets[n]:
            new = low if var.name.split(":")[0].endswith("_min") else high
            changed[var.name] = (float(var.numpy()), new)
            var.assign(new)
    return changed


def load_qat_model(path) -> keras.Model:
    """Load a QAT checkpoint written by `mask2face qat` (needs qat_spec.json, or NAME.spec.json for NAME.keras as
    in models/, beside it)."""
    from mask2face.train import student_arch  # noqa: F401  (registers DepthToSpace)

    path = Path(path)
    spec = path.with_name(f"{path.stem}.spec.json")
    spec = spec if spec.is_file() else path.parent / SPEC_NAME
    if not path.is_file():
        raise Mask2FaceError(f"QAT model {path} not found: run `mask2face qat` first")
    if not spec.is_file():
        raise Mask2FaceError(f"{spec} is missing beside {path}: the QAT model cannot be rebuilt; run `mask2face qat` "
                             "again")
    float_model = keras.models.model_from_json(spec.read_text())
    model = quantize_student(float_model)
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError) as exc:
        raise Mask2FaceError(f"cannot load QAT weights from {path} ({exc}); delete RUN/qat and run `mask2face qat` "
                             "again") from exc
    return model


def has_quantize_wrappers(model: keras.Model) -> bool:
    import tensorflow_model_optimization as tfmot
    return any(isinstance(l, tfmot.quantization.keras.QuantizeWrapperV2) for l in model.layers)


def cli_main(cfg, args) -> int:
    from mask2face import config as config_mod
    from mask2face.compress.distill import U8Targets, teacher_cache, evaluate_components, loss_components
    from mask2face.train.checkpoints import data_fingerprint
    from mask2face.train.input_pipeline import DataError, PairsInput
    from mask2face.train.loop import fit_model
    from mask2face.train import student_arch  # noqa: F401  (registers DepthToSpace for loading)
    from mask2face.train.losses import build_loss
    from mask2face.train.models import load_model

    cfg = cfg or config_mod.load("cpu")
    run_dir = runs.run_dir(cfg, args)
    data_dir = Path(getattr(args, "data", None) or run_dir / "data")
    student_path = Path(getattr(args, "student", None) or run_dir / "student" / "best.keras")
    out_dir = Path(getattr(args, "out", None) or run_dir / "qat")
    teacher_path = run_dir / "teacher" / "best.keras"
    qc, dc, tc = cfg.qat, cfg.distill, cfg.train
    keras.utils.set_random_seed(tc.seed)
    if not student_path.is_file():
        raise Mask2FaceError(f"student model {student_path} not found: run `mask2face distill` first or pass --student")
    student = load_model(student_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    runs.write_bytes(out_dir / SPEC_NAME, student.to_json().encode())
    qmodel = quantize_student(student)

    train_in = PairsInput(data_dir, "train", qc.batch_size, flip=tc.flip, shuffle=True, seed=tc.seed + 1)
    try:
        val_arrays = PairsInput(data_dir, "val", qc.batch_size, shuffle=False).arrays
    except DataError:
        val_arrays = None
    teacher_weight = dc.teacher_weight
    if qc.distill_from == "student":   # the float student is the target (config.CHOICES checks the value at load)
        teacher_path, teacher_weight = student_path, 1.0
    if teacher_weight and teacher_path.is_file():
        teacher = load_model(teacher_path)
        sha = runs.sha256_file(teacher_path)
        cache_dir = student_path.parent  # distill's cache, computed once for both stages
        t_train = teacher_cache(teacher, sha, train_in.arrays, "train", cache_dir, qc.batch_size)
        t_val = teacher_cache(teacher, sha, val_arrays, "val", cache_dir, qc.batch_size) if val_arrays else None
        t_channels = int(t_train.shape[-1])
    else:
        if teacher_weight:
            print(f"qat: no teacher at {teacher_path}; fine-tuning on the task loss alone", file=sys.stderr)
        teacher_weight, t_train, t_val, t_channels, sha = 0.0, None, None, 0, None
    train_in = PairsInput(None, "train", qc.batch_size, flip=tc.flip, shuffle=True, seed=tc.seed + 1,
                          bare_share=tc.bare_share, degrade=tc.degrade, arrays=train_in.arrays,
                          extra=U8Targets(t_train) if t_train is not None else None, mask_grow=dc.mask_grow,
                          worn_mask_share=dc.worn_mask_share)
    val_in = (PairsInput(None, "val", qc.batch_size, shuffle=False, arrays=val_arrays,
                         extra=U8Targets(t_val) if t_val is not None else None, mask_grow=dc.mask_grow)
              if val_arrays else None)
    loss = build_loss(tc, dc.student.predict_mask, teacher_weight=teacher_weight, teacher_channels=t_channels,
                      composite_teacher=dc.composite_teacher)
    settings = {"qat": config_mod.to_dict(qc), "student_sha256": runs.sha256_file(student_path),
                "teacher_weight": teacher_weight, "data": data_fingerprint(data_dir)}
    if qc.calibrate_samples:
        calib = train_in.arrays["masked"][:qc.calibrate_samples].astype("float32") / 255.0
        changed = calibrate_ranges(qmodel, student, calib, qc.batch_size)
        print(f"qat: {len(changed)} activation ranges set from the float model on {len(calib)} training inputs "
              "(tfmot starts them at [-6, 6]); a resumed run takes the checkpoint's ranges instead", file=sys.stderr)
    result = fit_model(qmodel, train_in, val_in, loss, out_dir, epochs=qc.epochs, learning_rate=qc.learning_rate,
                       schedule="constant", steps_per_epoch=qc.steps_per_epoch, settings=settings, name="qat",
                       checkpoint_minutes=float(getattr(args, "checkpoint_minutes", None) or 5.0),
                       adversarial=qc.adversarial)
    best = load_qat_model(out_dir / "best.keras")
    report = {"result": result.as_dict(), "student": str(student_path), "teacher_weight": teacher_weight}
    if val_in is not None:
        comps = loss_components(tc, dc.student.predict_mask, t_channels, dc.composite_teacher)
        report["components_student_float"] = evaluate_components(student, val_in, loss, comps)
        report["components_qat"] = evaluate_components(best, val_in, loss, comps)
        print("qat: val " + ", ".join(f"{k} float {report['components_student_float'][k]:.4f} -> qat {v:.4f}"
                                      for k, v in report["components_qat"].items()), file=sys.stderr)
    runs.write_json(out_dir / "qat_report.json", report)
    outputs = [out_dir / n for n in ("best.keras", "last.keras", SPEC_NAME, "state.json", "qat_report.json")]
    runs.write_manifest(out_dir, stage="qat", config=config_mod.to_dict(cfg), inputs=[student_path],
                        outputs=outputs, parents=[str(student_path)], extra={"report": json.loads(json.dumps(
                            report, default=str))})
    print(f"qat: done, model in {out_dir / 'best.keras'} (load with mask2face.compress.qat.load_qat_model)")
    return 0
