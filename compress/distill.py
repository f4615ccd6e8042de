"""`mask2face distill`: train the slim student from the frozen teacher.

    mask2face distill --preset cpu                 # RUN/data + RUN/teacher/best.keras -> RUN/student
    mask2face distill --preset smoke --run /tmp/r distill.teacher_weight=0.7

Loss per example = (1 - w) * task + w * teacher_match (+ feature_weight * feature_match), where
- task          = SSIM+L1 (train.loss) of the student's RGB vs the clean truth + train.mask_loss_weight * BCE(mask),
- teacher_match = the same reconstruction loss vs the teacher's output (its mask probability as a soft target),
- feature_match = MSE between the student's encoder features (through 1x1 adapters) and the teacher's at the same
  resolution (distill.feature_weight > 0 only; the teacher then runs online, frozen, inside the training graph).
The teacher's outputs are computed once and cached as uint8 in OUT/teacher_cache.npz (keyed by the teacher file's
sha256 and the data), then appended to the packed targets y = concat(clean, mask, teacher_out). Training itself is
`mask2face.train.loop.fit_model`: atomic checkpoints, resume by re-running, NaN guard.
Each component (task_ssim, task_l1, task_mask_bce, teacher_match, feature_match, total) is measured on the
validation split before and after training, printed, and written to OUT/distill_report.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mask2face import runs  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402


class U8Targets:
    """uint8 array served as float32 in [0,1] when indexed: PairsInput's `extra` without 4x the memory."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = array.shape
        self.dtype = np.dtype(np.float32)  # what indexing returns (PairsInput checks it)

    def __len__(self):
        return len(self.array)

    def __getitem__(self, idx):
        return self.array[idx].astype(np.float32) * np.float32(1 / 255)


def predict_u8(model: keras.Model, images_u8: np.ndarray, batch_size: int = 16, desc: str = "teacher") -> np.ndarray:
    """Model outputs for uint8 images, rounded to uint8 (0..255): the cache format."""
    @tf.function
    def fwd(x):
        return model(x, training=False)

    out = []
    for i in tqdm(range(0, len(images_u8), batch_size), desc=desc, unit="batch", file=sys.stderr,
                  mininterval=5):
        x = tf.constant(images_u8[i:i + batch_size].astype(np.float32) / 255.0)
        out.append(np.clip(np.rint(fwd(x).numpy() * 255.0), 0, 255).astype(np.uint8))
    return np.concatenate(out) if out else np.zeros((0,), np.uint8)


def teacher_cache(teacher: keras.Model, teacher_sha: str, arrays: dict, split: str, out_dir: Path,
                  batch_size: int) -> np.ndarray:
    """Teacher outputs for a split, cached in OUT/teacher_cache-SPLIT.npz; recomputed when the teacher or the
    data changed (sha256 of the teacher file + number and checksum of the inputs)."""
    masked = arrays["masked"]
    key = f"{teacher_sha[:16]}-{len(masked)}-{int(masked[:, ::7, ::7].sum()) & 0xFFFFFFFF:08x}"
    path = out_dir / f"teacher_cache-{split}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                if str(z["key"]) == key:
                    return z["outputs"]
        except (OSError, KeyError, ValueError):
            pass  # damaged or old cache: recompute
    outputs = predict_u8(teacher, masked, batch_size, desc=f"teacher outputs ({split})")
    import io
    buf = io.BytesIO()
    np.savez(buf, outputs=outputs, key=np.array(key))
    runs.write_bytes(path, buf.getvalue())
    return outputs


def loss_components(train_cfg, predict_mask: bool, teacher_channels: int, composite_teacher: bool = False):
    """fn(y_true, y_pred) -> dict of named per-example (B,) components (for logging, not training)."""
    from mask2face.train.losses import mask_bce, reconstruction_loss, ssim, teacher_target

    rec = reconstruction_loss(train_cfg.loss, train_cfg.ssim_weight, train_cfg.l1_weight,
                              train_cfg.mask_region_weight)

    def fn(y_true, y_pred):
        truth, mask, pred = y_true[..., :3], y_true[..., 3:4], y_pred[..., :3]
        comp = {"task_ssim": 1.0 - ssim(truth, pred),
                "task_l1": tf.reduce_mean(tf.abs(truth - pred), axis=(1, 2, 3))}
        if predict_mask:
            comp["task_mask_bce"] = mask_bce(mask, y_pred[..., 3:4])
        if teacher_channels:
            t = y_true[..., 4:4 + teacher_channels]
            comp["teacher_match"] = rec(teacher_target(t[..., :3], truth, mask, composite_teacher), pred, mask)
            if predict_mask and teacher_channels >= 4:
                comp["teacher_match"] += train_cfg.mask_loss_weight * mask_bce(t[..., 3:4], y_pred[..., 3:4])
        return comp

    return fn


def evaluate_components(model, inputs, loss, components) -> dict[str, float]:
    """Mean of every named component and of the training loss over a PairsInput (evaluation order)."""
    sums: dict[str, float] = {}
    n = 0

    @tf.function
    def step(x, y):
        pred = model(x, training=False)
        pred = pred[0] if isinstance(pred, (list, tuple)) else pred
        out = components(y, pred)
        out["total"] = loss(y, model(x, training=False))
        return out

    for x, y in inputs.dataset(0):
        out = step(x, y)
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(tf.reduce_sum(v))
        n += int(x.shape[0])
    return {k: round(v / max(n, 1), 6) for k, v in sums.items()}


# ----------------------------------------------------------------------------------------------------------------
# Optional feature matching: a training wrapper that carries the frozen teacher and 1x1 adapters.
# ----------------------------------------------------------------------------------------------------------------

def _teacher_features(teacher: keras.Model, sizes: list[int]) -> list:
    """One teacher layer output per spatial size (the last encoder layer at that size)."""
    feats = {}
    for layer in teacher.layers:
        if not layer.name.startswith("enc"):
            continue
        shape = layer.output.shape
        if len(shape) == 4:
            feats[int(shape[1])] = layer.output  # later layers at the same size win: the block output
    return [feats.get(s) for s in sizes]


def build_feature_wrapper(student: keras.Model, teacher: keras.Model, feature_weight: float) -> keras.Model:
    """Functional model x -> student(x); adds feature_weight * mean MSE(adapter(student_feat), teacher_feat) as
    `model.losses` (fit_model adds model.losses to the loss). The student stays a nested model, saved on its own."""
    from mask2face.train.student_arch import feature_layer_names

    teacher.trainable = False
    names = feature_layer_names(student)
    s_feats = [student.get_layer(n).output for n in names]
    taps = keras.Model(student.inputs, [student.outputs[0]] + s_feats, name="student_taps")
    t_feats = _teacher_features(teacher, [int(f.shape[1]) for f in s_feats])
    pairs = [(i, t) for i, t in enumerate(t_feats) if t is not None]
    if not pairs:
        raise Mask2FaceError("feature matching: no teacher encoder layer matches the student's feature sizes; "
                             "set distill.feature_weight=0")
    t_model = keras.Model(teacher.inputs, [t for _, t in pairs], name="teacher_taps")
    t_model.trainable = False
    x = keras.Input(student.input_shape[1:], name="masked")
    outs = taps(x)
    t_outs = t_model(x, training=False)
    t_outs = t_outs if isinstance(t_outs, (list, tuple)) else [t_outs]
    terms = []
    for (i, _), t in zip(pairs, t_outs):
        a = keras.layers.Conv2D(int(t.shape[-1]), 1, name=f"adapter{i}")(outs[1 + i])
        terms.append(keras.layers.Subtract(name=f"feat_diff{i}")([a, t]))
    wrapper = keras.Model(x, outs[0], name="distill_wrapper")
    for d in terms:
        wrapper.add_loss(feature_weight * tf.reduce_mean(tf.square(d)) / len(terms))
    return wrapper


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------

def _paths(cfg, args):
    run_dir = runs.run_dir(cfg, args)
    data_dir = Path(getattr(args, "data", None) or run_dir / "data")
    teacher_path = Path(getattr(args, "teacher", None) or run_dir / "teacher" / "best.keras")
    out_dir = Path(getattr(args, "out", None) or run_dir / "student")
    return run_dir, data_dir, teacher_path, out_dir


def cli_main(cfg, args) -> int:
    from mask2face import config as config_mod
    from mask2face.train import student_arch  # noqa: F401  (registers DepthToSpace for loading)
    from mask2face.train.checkpoints import copy_weights, data_fingerprint
    from mask2face.train.input_pipeline import DataError, PairsInput
    from mask2face.train.loop import fit_model
    from mask2face.train.losses import build_loss
    from mask2face.train.models import build_model, load_model

    cfg = cfg or config_mod.load("cpu")
    run_dir, data_dir, teacher_path, out_dir = _paths(cfg, args)
    dc, tc = cfg.distill, cfg.train
    keras.utils.set_random_seed(tc.seed)
    if not teacher_path.is_file():
        raise Mask2FaceError(f"teacher model {teacher_path} not found: run `mask2face train` first or pass --teacher")
    teacher = load_model(teacher_path)
    teacher.trainable = False
    teacher_sha = runs.sha256_file(teacher_path)
    out_dir.mkdir(parents=True, exist_ok=True)

    print(f"distill: loading pairs from {data_dir}", file=sys.stderr)
    train_in = PairsInput(data_dir, "train", dc.batch_size, flip=tc.flip, shuffle=True, seed=tc.seed)
    size = train_in.image_size
    if int(teacher.input_shape[1]) != size:
        raise Mask2FaceError(f"the teacher takes {teacher.input_shape[1]}px inputs but the pairs are {size}px: "
                             "distill on the data the teacher was trained on (--data)")
    t_train = teacher_cache(teacher, teacher_sha, train_in.arrays, "train", out_dir, dc.batch_size)
    t_channels = int(t_train.shape[-1])
    train_in = PairsInput(None, "train", dc.batch_size, flip=tc.flip, shuffle=True, seed=tc.seed,
                          bare_share=tc.bare_share, degrade=tc.degrade, extra=U8Targets(t_train),
                          arrays=train_in.arrays, mask_grow=dc.mask_grow, worn_mask_share=dc.worn_mask_share)
    try:
        val_arrays = PairsInput(data_dir, "val", dc.batch_size, shuffle=False).arrays
        t_val = teacher_cache(teacher, teacher_sha, val_arrays, "val", out_dir, dc.batch_size)
        val_in = PairsInput(None, "val", dc.batch_size, shuffle=False, extra=U8Targets(t_val), arrays=val_arrays,
                            mask_grow=dc.mask_grow)
    except DataError:
        val_in = None
        print(f"distill: no validation pairs in {data_dir / 'val'}; best.keras follows the last epoch",
              file=sys.stderr)

    student = build_model(dc.student, size)
    if dc.start_from:   # fine-tuning: a few hundred pairs refine a trained student, but cannot train one
        copy_weights(Path(dc.start_from), student, key="distill.start_from", section="distill.student")
        print(f"distill: starting from the weights of {dc.start_from}", file=sys.stderr)
    loss = build_loss(tc, dc.student.predict_mask, teacher_weight=dc.teacher_weight, teacher_channels=t_channels,
                      composite_teacher=dc.composite_teacher)
    components = loss_components(tc, dc.student.predict_mask, t_channels, dc.composite_teacher)
    train_model = student
    if dc.feature_weight > 0:
        train_model = build_feature_wrapper(student, teacher, dc.feature_weight)
    probe = val_in or PairsInput(None, "train", dc.batch_size, shuffle=False, extra=U8Targets(t_train),
                                 arrays={k: v[:64] for k, v in train_in.arrays.items()})
    if isinstance(probe.extra, U8Targets) and probe is not val_in:
        probe.extra = U8Targets(t_train[:64])
    state_before = runs.read_json(out_dir / "distill_report.json", {}) or {}
    before = state_before.get("components_before") or evaluate_components(student, probe, loss, components)
    runs.write_json(out_dir / "distill_report.json", {"components_before": before, "finished": False})
    print(f"distill: student {student.count_params():,} parameters vs teacher {teacher.count_params():,}; "
          f"before: " + ", ".join(f"{k} {v:.4f}" for k, v in before.items()), file=sys.stderr)
    settings = {"student": config_mod.to_dict(dc), "train_loss": config_mod.to_dict(tc), "image_size": size,
                "teacher_sha256": teacher_sha, "data": data_fingerprint(data_dir), "train_pairs": train_in.size}
    result = fit_model(train_model, train_in, val_in, loss, out_dir / ("wrapper" if train_model is not student
                                                                       else ""),
                       epochs=dc.epochs, learning_rate=dc.learning_rate, schedule=tc.lr_schedule,
                       steps_per_epoch=dc.steps_per_epoch, settings=settings, name="distill",
                       checkpoint_minutes=float(getattr(args, "checkpoint_minutes", None) or 5.0),
                       adversarial=dc.adversarial)
    if train_model is not student:
        # best/last of the wrapper hold the student as a nested model: save the student alone as the contract says
        best = keras.models.load_model(out_dir / "wrapper" / "best.keras", compile=False, safe_mode=False)
        student.set_weights(best.get_layer("student_taps").get_weights()[:len(student.get_weights())])
        with runs.atomic_path(out_dir / "best.keras") as tmp:
            student.save(tmp)
    else:
        student = load_model(out_dir / "best.keras")
    after = evaluate_components(student, probe, loss, components)
    report = {"components_before": before, "components_after": after, "result": result.as_dict(),
              "teacher": str(teacher_path), "teacher_sha256": teacher_sha, "teacher_params": teacher.count_params(),
              "student_params": student.count_params(), "component_split": "val" if val_in else "train[:64]",
              "finished": result.finished}
    runs.write_json(out_dir / "distill_report.json", report)
    runs.write_json(out_dir / "config.json", config_mod.to_dict(cfg))
    outputs = [out_dir / n for n in ("best.keras", "last.keras", "state.json", "distill_report.json", "log.csv")]
    runs.write_manifest(out_dir, stage="student", config=config_mod.to_dict(cfg), inputs=[teacher_path],
                        outputs=outputs, parents=[str(teacher_path), str(data_dir)] + ([dc.start_from] if dc.start_from
                                                                                         else []),
                        extra={"report": report})
    print("distill: after: " + ", ".join(f"{k} {v:.4f}" for k, v in after.items()), file=sys.stderr)
    print(f"distill: done, student in {out_dir / 'best.keras'}")
    return 0
