"""`mask2face classifier`: the per-face mask decision, a small int8 CNN that says whether a face wears a mask.

    mask2face classifier --preset mask-classifier --data runs/cpu/data --data runs/celeba/data --data runs/aaf/data \
        --data runs/facesdev/data            # -> RUN/classifier/mask_classifier-int8.tflite (+ calibrated.keras)

This module trains and calibrates the Keras model; compress/classifier_export.py exports it and runs the verb.

The inpainting models were trained on masked faces, so their mask channel fires on bare faces too (beards, open
mouths, shadows). This model answers the question first, on the same eye-aligned crop the inpainting model gets
(area-downscaled to `classifier.input_size`): the runtime restores a face only when its probability reaches the
threshold in the file's metadata (edge_runtime/mask_decision.py).

Examples come from pairs folders made by `mask2face data` (train split for training, val for the best epoch and
the temperature; test stays unseen for benchmarks/gate_bench.py):
- positives: the generator's masked faces; a `restyle_share` of them restyled as worn masks (train/mask_styles.py:
  real colours, the face's own shading, fabric noise, soft edges; a `reshape_share` of those also worn higher and
  wider, with folds and printed graphics; a `relief_share` lit and creased as worn masks are in photos), a
  `low_mask_share` with the mask pulled down off the nose;
- negatives: the same faces bare; a `below_chin_share` of them with the mask pulled down under the mouth (a scarf,
  a lowered mask: cloth on the face but nothing to restore);
- both: flips, alignment jitter (the runtime aligns by detector eyes, not landmarks) and, for a `degrade` share,
  hard photos: low light, grey (a `grey_share` of them), blur and small faces, JPEG, colour casts.
Real photos of masked people are never used here: they are the benchmark.

The sigmoid is calibrated by temperature scaling on the val split (folded into the last layer), so the exported
probability means what it says on faces like the training ones. With `members` (calibrated classifiers of earlier
runs) the exported model averages their logits and the new one's (`ensemble`), calibrated again the same way.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from mask2face import runs  # noqa: E402
from mask2face.train import pairs  # noqa: E402
from mask2face.train.mask_styles import restyle_mask  # noqa: E402
from mask2face.train.checkpoints import save_model  # noqa: E402
from mask2face.edge_runtime.align import DEFAULT_FRAMING, Framing  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402

SPLITS = ("train", "val", "test")


class ClassifierError(Mask2FaceError):
    """No pairs to train on, or a classifier file that cannot be used."""


# -- examples ------------------------------------------------------------------------------------------------------
def downscale(crops: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S, 3) uint8 aligned crops -> (N, size, size, 3) by area averaging: what the runtime does too."""
    if crops.shape[1] == size:
        return crops
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])


def shifted_mask(masked: np.ndarray, clean: np.ndarray, mask: np.ndarray, dy: int) -> np.ndarray:
    """The face wearing its mask `dy` pixels lower: the mask's pixels moved down over the bare face."""
    out = clean.copy()
    if dy <= 0:
        return masked.copy()
    m = mask[:-dy] > 127
    region = out[dy:]
    region[m] = masked[:-dy][m]
    return out


def examples_from_pairs(pair: dict[str, np.ndarray], cfg, rng: np.random.Generator,
                        framing: Framing = DEFAULT_FRAMING) -> tuple[np.ndarray, np.ndarray]:
    """(images (2N, size, size, 3) uint8, labels (2N,) float32) from one split's pairs: each pair gives its masked
    face (label 1) and its bare face (label 0), some with the mask moved (see the module docstring). Distances are
    given for the default framing and scaled to the pairs' `framing`."""
    masked, clean, mask = pair["masked"], pair["clean"], pair["mask"]
    s = masked.shape[1]
    k = framing.scale
    pos, neg = masked.copy(), clean.copy()
    for i in range(len(masked)):
        if rng.random() < cfg.restyle_share:
            pos[i] = restyle_mask(masked[i], clean[i], mask[i], rng, cfg.reshape_share, cfg.fit_share,
                                  cfg.relief_share, framing)
        if rng.random() < cfg.low_mask_share:
            pos[i] = shifted_mask(pos[i], clean[i], mask[i], int(rng.uniform(0.05, 0.11) * s * k))
        if rng.random() < cfg.below_chin_share:
            neg[i] = shifted_mask(masked[i], clean[i], mask[i], int(rng.uniform(0.24, 0.36) * s * k))
    images = np.concatenate([downscale(pos, cfg.input_size), downscale(neg, cfg.input_size)])
    labels = np.concatenate([np.ones(len(pos), np.float32), np.zeros(len(neg), np.float32)])
    return images, labels


def load_examples(data_dirs: list[Path], split: str, cfg, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for i, d in enumerate(data_dirs):
        if not pairs.shard_paths(d, split):
            continue
        rng = np.random.default_rng([cfg.seed, i, SPLITS.index(split)])
        x, y = examples_from_pairs(pairs.load_split(d, split, limit or None), cfg, rng,
                                   Framing(**pairs.data_framing(d)))
        images.append(x)
        labels.append(y)
    if not images:
        raise ClassifierError(f"no {split} pairs in {', '.join(map(str, data_dirs))}: run `mask2face data` first")
    return np.concatenate(images), np.concatenate(labels)


# -- augmentation (numpy + OpenCV, per example) ----------------------------------------------------------------------
def jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Scale, shift and roll the crop: detector eyes are not landmark eyes (strength 1), and on profiles, small and
    blurry faces they can be far off (strength 3: up to 30 degrees, 15% of the crop)."""
    s = image.shape[0]
    angle = rng.uniform(-10, 10) * strength
    scale = 1.0 + rng.uniform(-0.1, 0.1) * strength
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    m[:, 2] += rng.uniform(-0.05, 0.05, 2) * s * strength
    return cv2.warpAffine(image, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def hard_photo(image: np.ndarray, rng: np.random.Generator, grey: float = 0.15) -> np.ndarray:
    """One or more of: low light, grey, small and blurry, JPEG, a colour cast."""
    s = image.shape[0]
    x = image.astype(np.float32) / 255.0
    if rng.random() < 0.35:   # low light / dark skin: darker, gamma, sensor noise
        x = x ** rng.uniform(1.0, 2.2) * rng.uniform(0.3, 0.9)
        x = x + rng.normal(0, rng.uniform(0, 0.03), x.shape).astype(np.float32)
    if rng.random() < 0.35:   # colour cast / white balance
        x = x * rng.uniform(0.8, 1.2, 3).astype(np.float32)
    if rng.random() < 0.3:    # contrast
        c = rng.uniform(0.6, 1.3)
        x = (x - x.mean()) * c + x.mean()
    x = np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < grey:
        x = np.repeat(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if rng.random() < 0.4:    # a small face, upscaled by the aligner
        small = max(6, int(s * rng.uniform(0.2, 0.8)))
        x = cv2.resize(cv2.resize(x, (small, small), interpolation=cv2.INTER_AREA), (s, s),
                       interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.2:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.35:
        ok, enc = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(20, 90))])
        x = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
    return x


def augment(batch: np.ndarray, rng: np.random.Generator, degrade: float, misalign: float = 0.0,
            grey: float = 0.15) -> np.ndarray:
    out = np.empty_like(batch)
    for i, image in enumerate(batch):
        x = image[:, ::-1] if rng.random() < 0.5 else image
        x = jitter(np.ascontiguousarray(x), rng, 3.0 if rng.random() < misalign else 1.0)
        out[i] = hard_photo(x, rng, grey) if rng.random() < degrade else x
    return out


def augmented_copy(images: np.ndarray, cfg, seed: int) -> np.ndarray:
    """A fixed augmented copy (for val): the same hard photos every epoch, so epochs compare."""
    return augment(images, np.random.default_rng(seed), cfg.degrade, cfg.misalign_share, cfg.grey_share)


# -- model ------------------------------------------------------------------------------------------------------------
def build_classifier(cfg):
    """Stride-2 stem, then per entry of `filters[1:]` a stride-2 and a stride-1 depthwise-separable block;
    global average pool, one logit, sigmoid. Conv -> BN -> ReLU only (folds into int8 convs, GPU-delegate ops)."""
    import tf_keras as keras
    from tf_keras import layers

    def cbr(x, f, name, kernel=1, stride=1, depthwise=False):
        conv = (layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")
                if depthwise else layers.Conv2D(f, kernel, strides=stride, padding="same", use_bias=False,
                                                name=f"{name}_conv"))
        x = conv(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x)

    s = cfg.input_size
    inp = keras.Input((s, s, 3), name="face")
    x = cbr(inp, cfg.filters[0], "stem", kernel=3, stride=2)
    for i, f in enumerate(cfg.filters[1:]):
        for j, stride in enumerate((2, 1)):
            x = cbr(x, None, f"s{i}b{j}a", stride=stride, depthwise=True)
            x = cbr(x, f, f"s{i}b{j}b")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    logit = layers.Dense(1, name="logit")(x)
    prob = layers.Activation("sigmoid", name="mask_probability")(logit)
    return keras.Model(inp, prob, name="mask_classifier")


def ensemble(members: list):
    """One model whose logit is the mean of the members' logits (each calibrated, 1/T folded in), as a fixed
    Dense(1) over their concatenated logits, so `apply_temperature` recalibrates the mean like a single model's.
    Members trained on differently restyled masks err on different real masks; one .tflite, one invoke."""
    import tf_keras as keras
    from tf_keras import layers

    inp = keras.Input(members[0].input_shape[1:], name="face")
    heads = [logit_head(m, f"member_{i}")(inp) for i, m in enumerate(members)]
    x = layers.Concatenate(name="member_logits")(heads) if len(heads) > 1 else heads[0]
    mean = layers.Dense(1, name="logit", kernel_initializer=keras.initializers.Constant(1.0 / len(members)),
                        bias_initializer="zeros")
    prob = layers.Activation("sigmoid", name="mask_probability")(mean(x))
    return keras.Model(inp, prob, name="mask_classifier_ensemble")


def logit_head(model, name: str | None = None):
    """The model up to its logit layer (before the sigmoid)."""
    import tf_keras as keras
    return keras.Model(model.input, model.get_layer("logit").output, name=name)


def logits_of(model, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return logit_head(model).predict(images.astype(np.float32) / 255.0, batch_size=batch, verbose=0)[:, 0]


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the log loss of sigmoid(logit / T) (a 1-D search over log T)."""
    def nll(t):
        z = logits / t
        return float(np.mean(np.logaddexp(0, z) - labels * z))
    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 121))
    return float(grid[int(np.argmin([nll(t) for t in grid]))])


def calibrate(model, images: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Fit the temperature on these examples and fold it into the model; (T, the logits before it)."""
    logits = logits_of(model, images)
    t = fit_temperature(logits, labels)
    apply_temperature(model, t)
    return t, logits


def apply_temperature(model, t: float) -> None:
    """Fold 1/T into the logit layer, so the model's own sigmoid is calibrated."""
    layer = model.get_layer("logit")
    w, b = layer.get_weights()
    layer.set_weights([w / t, b / t])


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (the rank statistic; ties count half)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


# -- training -----------------------------------------------------------------------------------------------------
def train(cfg, data_dirs: list[Path], out_dir: Path, limit: int = 0) -> dict:
    """Train (resuming from out_dir/last.keras), calibrate, keep the best val epoch; returns the report."""
    import tensorflow as tf
    import tf_keras as keras

    c = cfg.classifier
    missing = [m for m in c.members if not Path(m).is_file()]
    if missing:   # checked before the epochs, not after them
        raise ClassifierError(f"classifier.members: {', '.join(missing)} not found (paths are relative to the working "
                              "folder: run from the repository's root, or give absolute paths)")
    out_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train = load_examples(data_dirs, "train", c, limit)
    x_val, y_val = load_examples(data_dirs, "val", c, limit // 4 if limit else 0)
    x_val_aug = augmented_copy(x_val, c, c.seed + 1)
    print(f"classifier: {len(x_train)} training and {len(x_val)} val examples at {c.input_size}^2 from "
          f"{len(data_dirs)} pairs folder(s)", file=sys.stderr)
    state_path, last_path, best_path = out_dir / "state.json", out_dir / "last.keras", out_dir / "best.keras"
    state = json.loads(state_path.read_text()) if state_path.is_file() and last_path.is_file() else \
        {"epoch": 0, "best_val_loss": None, "history": []}
    tf.keras.utils.set_random_seed(c.seed)
    if state["epoch"]:
        model = keras.models.load_model(last_path)
    elif c.init_from:
        model = keras.models.load_model(c.init_from)   # fine-tune: the weights, a fresh optimizer and schedule
    else:
        model = build_classifier(c)
    steps = max(1, len(x_train) // c.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(c.learning_rate, decay_steps=steps * c.epochs, alpha=0.02)
    if not state["epoch"]:
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss="binary_crossentropy",
                      metrics=[keras.metrics.AUC(name="auc")])
    for epoch in range(state["epoch"], c.epochs):
        rng = np.random.default_rng([c.seed, epoch])
        order = rng.permutation(len(x_train))
        t0 = time.time()
        losses = []
        for k in range(steps):
            idx = order[k * c.batch_size:(k + 1) * c.batch_size]
            xb = augment(x_train[idx], rng, c.degrade, c.misalign_share, c.grey_share).astype(np.float32) / 255.0
            loss = model.train_on_batch(xb, y_train[idx], return_dict=True)["loss"]
            if not math.isfinite(loss):
                raise ClassifierError(f"classifier loss became {loss} at epoch {epoch + 1}; lower "
                                      "classifier.learning_rate")
            losses.append(loss)
        val = model.evaluate(x_val_aug.astype(np.float32) / 255.0, y_val, batch_size=256, verbose=0,
                             return_dict=True)
        row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": float(val["loss"]),
               "val_auc": float(val["auc"]), "seconds": round(time.time() - t0, 1)}
        state["history"].append(row)
        print(f"classifier: epoch {row['epoch']}/{c.epochs} loss {row['train_loss']:.4f} val {row['val_loss']:.4f} "
              f"auc {row['val_auc']:.4f} ({row['seconds']} s)", file=sys.stderr)
        if state["best_val_loss"] is None or row["val_loss"] < state["best_val_loss"]:
            state["best_val_loss"] = row["val_loss"]
            save_model(model, best_path)
        state["epoch"] = epoch + 1
        save_model(model, last_path)
        runs.write_json(state_path, state)
    best = keras.models.load_model(best_path)
    t, logits = calibrate(best, x_val_aug, y_val)
    calibrated = out_dir / "calibrated.keras"
    member = {"temperature": t, "val_auc": roc_auc(logits, y_val)}
    if c.members:   # this model joins the members: the exported model averages their logits, recalibrated
        save_model(best, out_dir / "member.keras")
        best = ensemble([keras.models.load_model(m) for m in c.members] + [best])
        t, logits = calibrate(best, x_val_aug, y_val)
    save_model(best, calibrated)
    report = {"examples": {"train": int(len(x_train)), "val": int(len(x_val))}, "temperature": t,
              "val_auc": roc_auc(logits, y_val), "history": state["history"], "model": str(calibrated),
              "parameters": int(best.count_params()),
              **({"members": list(c.members), "trained_member": member} if c.members else {})}
    runs.write_json(out_dir / "train_report.json", report)
    return report
