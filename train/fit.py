"""`mask2face train` and the generic, resumable training loop that distill and qat reuse.

    mask2face train --preset cpu                       # RUN/data -> RUN/teacher; run it again to resume
    mask2face train --preset smoke --run /tmp/r train.epochs=1 --strategy mirrored

What `fit_model` guarantees
- Checkpoints are atomic files: `last.keras` (model + optimizer state, so Adam moments and the step counter
  survive), `best.keras` (lowest validation loss), `state.json` (epoch, step, best, history) and `log.csv`.
  `last.keras` is written at the end of every epoch and every `checkpoint_minutes` (and/or `checkpoint_steps`)
  inside an epoch, so `kill -9` loses at most that much work.
- Re-running the same command resumes from `last.keras`: the optimizer's step counter (saved inside the same
  file as the weights, so the two can never disagree) gives the epoch and the step inside it; the input order of
  every epoch is a pure function of (seed, epoch), so the resumed epoch skips exactly the batches already seen
  without reading them. A run whose settings differ from the checkpoint's is refused with a message.
- A NaN/inf loss stops training with `TrainingDivergedError` before anything is saved: the last good checkpoint
  stays as it was.
- `strategy` = default | mirrored | multiworker (tf.distribute; multiworker reads TF_CONFIG, the chief writes).
- TensorBoard scalars in OUT/logs, per-epoch CSV in OUT/log.csv, throughput (images/s, forward+backward, first
  steps of each run excluded: they trace the graph) in OUT/train_report.json.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import csv  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mask2face import config as config_mod, runs  # noqa: E402
from mask2face.train import pairs  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402

WARMUP_STEPS_EXCLUDED = 3  # steps of each run (process) left out of the throughput (graph tracing, allocator warm-up)


class TrainingDivergedError(Mask2FaceError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class DataError(Mask2FaceError):
    """No pairs, or pairs that do not fit the model."""


# ----------------------------------------------------------------------------------------------------------------
# Input: pairs shards -> tf.data with a resumable, per-epoch deterministic order
# ----------------------------------------------------------------------------------------------------------------

def _load_arrays(data_dir: Path, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """Read a split's shards in parallel threads (np.load releases the GIL while reading)."""
    paths = pairs.shard_paths(data_dir, split)
    if not paths:
        raise DataError(f"no pairs in {Path(data_dir) / split}: run `mask2face data` first (or pass --data DIR)")
    with ThreadPoolExecutor(max_workers=4) as pool:
        shards = list(pool.map(pairs.read_shard, paths))
    out = {k: np.concatenate([s[k] for s in shards]) for k in ("masked", "clean", "mask")}
    if limit:
        out = {k: v[:limit] for k, v in out.items()}
    return out


def degradation(code: int) -> tuple[float, int]:
    """(downscale factor 0.3..1, JPEG quality 30..90) from a pair's augmentation code bytes."""
    return 0.3 + 0.7 * ((code >> 8) & 255) / 255.0, 30 + (60 * ((code >> 16) & 255)) // 255


def grow_mask(mask01: np.ndarray, radius: int) -> np.ndarray:
    """A (H, W) mask in [0,1] grown by `radius` pixels (grey-level dilation with a disc: a soft mask grows as the
    maximum over the disc). Used on training targets only, so the model learns to replace a band of skin around the
    mask as well: a real mask's rim and the shadow under it sit around where a synthetic mask's pixels end, where a
    mask channel trained on the exact edge says ~0.5, so a student that pastes by its own mask (blend_input) keeps
    about half of the rim: a dark or bright seam on real photos (distill.mask_grow; measured with 0.1.0)."""
    if radius <= 0:
        return mask01
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(np.ascontiguousarray(mask01, np.float32), disc)


def degrade_image(img01: np.ndarray, scale: float, quality: int) -> np.ndarray:
    """A float RGB image in [0,1] as a lower-quality photo of it: shrunk by `scale` and grown back (a small face
    from a far camera), then JPEG-compressed at `quality`. Real masked photos are often both; synthetic pairs are
    sharp and clean, so without this the mask detector learns sharp edges and clean noise as "mask"."""
    h, w = img01.shape[:2]
    u8 = np.clip(img01 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if scale < 0.999:
        small = cv2.resize(u8, (max(4, round(w * scale)), max(4, round(h * scale))), interpolation=cv2.INTER_AREA)
        u8 = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if ok:
        u8 = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return u8.astype(np.float32) * np.float32(1 / 255)


class PairsInput:
    """A split held in memory as uint8, served as batches (x, y) of float32 in [0,1].

    x = masked RGB (B,S,S,3); y = concat(clean RGB, mask, extra...) (B,S,S,4+E) — the packed targets of
    `mask2face.train.losses`. `extra` (N,S,S,E) float in [0,1] or uint8 0..255 (e.g. a cached teacher output)
    is appended per pair; `arrays` (dict masked/clean/mask) replaces reading `data_dir/split`.
    The order of epoch e is a permutation drawn from (seed, e), so `dataset(e, start_step)` can resume in the
    middle of an epoch without touching the skipped batches. Random horizontal flips are drawn with the order and
    applied to x and y together; so is the `bare_share` of pairs served as bare faces (x = clean, mask = 0, and
    clean RGB + mask 0 in place of extra targets: for a bare face the right output is the input itself). The last incomplete batch is dropped when shuffling (equal batches keep the graph
    to one trace and split evenly over replicas)."""

    def __init__(self, data_dir: Path | None, split: str, batch_size: int, *, flip: bool = False,
                 shuffle: bool = True, seed: int = 0, extra: np.ndarray | None = None, limit: int | None = None,
                 arrays: dict[str, np.ndarray] | None = None, bare_share: float = 0.0, degrade: float = 0.0,
                 mask_grow: float = 0.0):
        self.arrays = arrays if arrays is not None else _load_arrays(Path(data_dir), split, limit)
        self.split, self.batch_size, self.flip, self.shuffle, self.seed = split, int(batch_size), flip, shuffle, seed
        if not 0.0 <= bare_share < 1.0:
            raise DataError(f"bare_share={bare_share}: expected a share in [0, 1)")
        self.bare_share = float(bare_share)
        if not 0.0 <= degrade <= 1.0:
            raise DataError(f"degrade={degrade}: expected a share in [0, 1]")
        self.degrade = float(degrade)
        if not 0.0 <= mask_grow < 0.25:
            raise DataError(f"mask_grow={mask_grow}: expected a share of the crop side in [0, 0.25)")
        self.extra = extra
        n = len(self.arrays["masked"])
        if extra is not None and len(extra) != n:
            raise DataError(f"extra targets hold {len(extra)} items but the {split} split has {n} pairs")
        self.size = n
        self.image_size = int(self.arrays["masked"].shape[1])
        self.mask_grow_px = int(round(float(mask_grow) * self.image_size))
        self.target_channels = 4 + (0 if extra is None else int(extra.shape[-1]))
        # Masks are stored 0/255; a 0/1 mask (hand-made data) is already a probability.
        self._mask_scale = np.float32(1 / 255) if self.arrays["mask"].max(initial=0) > 1 else np.float32(1)
        if shuffle and n == 0:
            raise DataError(f"the {split} split has no pairs: run `mask2face data --faces DIR` on a folder of face "
                            "photos (its report.json says why files were skipped)")
        if shuffle and n < batch_size:
            raise DataError(f"the {split} split has {n} pairs, fewer than one batch of {batch_size}: make more "
                            f"pairs or lower this stage's batch size to {n} or less (train.batch_size, "
                            "distill.batch_size or qat.batch_size)")

    @property
    def steps_per_epoch(self) -> int:
        if self.shuffle:
            return self.size // self.batch_size
        return math.ceil(self.size / self.batch_size)

    FLIP, BARE, DEGRADE = 1, 2, 4  # bits of the per-pair augmentation code; bits 8-15 and 16-23 hold the
                                   # degradation's two random bytes (scale, JPEG quality)

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices (steps, B), augmentation codes (steps, B) uint32: FLIP | BARE | DEGRADE bits and the
        degradation bytes) of an epoch; a pure function of (seed, epoch). Draws are appended after the flips, so
        bare_share=0 and degrade=0 keep earlier runs' orders."""
        rng = np.random.default_rng([int(self.seed), int(epoch)])
        if not self.shuffle:
            idx = np.arange(self.size)
            return idx, np.zeros(self.size, np.uint32)
        steps = self.steps_per_epoch
        idx = rng.permutation(self.size)[: steps * self.batch_size].reshape(steps, self.batch_size)
        code = np.zeros(idx.shape, np.uint32)
        if self.flip:
            code |= (rng.random(idx.shape) < 0.5).astype(np.uint32) * self.FLIP
        if self.bare_share > 0:
            code |= (rng.random(idx.shape) < self.bare_share).astype(np.uint32) * self.BARE
        if self.degrade > 0:
            code |= (rng.random(idx.shape) < self.degrade).astype(np.uint32) * self.DEGRADE
            code |= rng.integers(0, 256, idx.shape, dtype=np.uint32) << 8
            code |= rng.integers(0, 256, idx.shape, dtype=np.uint32) << 16
        return idx, code

    def _gather(self, idx: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.arrays
        x = a["masked"][idx]
        y = np.concatenate([a["clean"][idx], a["mask"][idx][..., None]], axis=-1)
        xf = x.astype(np.float32) * np.float32(1 / 255)
        yf = y.astype(np.float32) * np.float32(1 / 255)
        yf[..., 3] = y[..., 3] * self._mask_scale
        if self.extra is not None:
            e = self.extra[idx].astype(np.float32)
            if self.extra.dtype == np.uint8:  # extra targets may be cached as uint8 to save memory
                e *= np.float32(1 / 255)
            yf = np.concatenate([yf, e], axis=-1)
        if self.mask_grow_px:
            # the true mask and, when the extra targets are a teacher output with a mask channel, the teacher's
            mask_channels = (3, 7) if yf.shape[-1] >= 8 else (3,)
            for i in range(len(yf)):
                for c in mask_channels:
                    yf[i, ..., c] = grow_mask(yf[i, ..., c], self.mask_grow_px)
        for i in np.flatnonzero(code & self.DEGRADE):
            # The same low-quality photo for input and every RGB target: blur and JPEG carry no "mask" signal.
            scale, quality = degradation(int(code[i]))
            xf[i] = degrade_image(xf[i], scale, quality)
            yf[i, ..., :3] = degrade_image(yf[i, ..., :3], scale, quality)
            if yf.shape[-1] > 4:
                yf[i, ..., 4:7] = degrade_image(yf[i, ..., 4:7], scale, quality)
        bare = (code & self.BARE) > 0
        if bare.any():  # a bare face: the input is the truth, nothing is masked, the best output is the input
            xf[bare] = yf[bare][..., :3]
            yf[bare, ..., 3] = 0.0
            if yf.shape[-1] > 4:  # teacher targets: RGB (+ mask) laid out like the model output
                yf[bare, ..., 4:7] = yf[bare][..., :3]
                yf[bare, ..., 7:] = 0.0
        flips = (code & self.FLIP) > 0
        if flips.any():
            xf[flips] = xf[flips][:, :, ::-1]
            yf[flips] = yf[flips][:, :, ::-1]
        return xf, yf

    def dataset(self, epoch: int = 0, start_step: int = 0, input_context: tf.distribute.InputContext | None = None,
                ) -> tf.data.Dataset:
        """Batches of epoch `epoch` from `start_step` on. With an input_context (tf.distribute), each input
        pipeline gets its share of every global batch, already split into per-replica batches."""
        idx, codes = self.order(epoch)
        if not self.shuffle:  # evaluation order: plain consecutive batches, last one partial
            bounds = range(0, self.size, self.batch_size)
            rows = [(idx[i:i + self.batch_size], codes[i:i + self.batch_size]) for i in bounds][start_step:]
            gen_rows = rows
        else:
            idx, codes = idx[start_step:], codes[start_step:]
            if input_context is not None and (input_context.num_input_pipelines > 1
                                              or input_context.num_replicas_in_sync > 1):
                pipes, pid = input_context.num_input_pipelines, input_context.input_pipeline_id
                local = input_context.num_replicas_in_sync // pipes
                per_replica = input_context.get_per_replica_batch_size(self.batch_size)
                share = idx.shape[1] // pipes
                idx = idx[:, pid * share:(pid + 1) * share].reshape(-1, per_replica)
                codes = codes[:, pid * share:(pid + 1) * share].reshape(-1, per_replica)
                assert local * per_replica == share
            gen_rows = list(zip(idx, codes))
        size, channels = self.image_size, self.target_channels
        if not gen_rows:
            return tf.data.Dataset.from_tensor_slices(
                (np.zeros((0, 0, size, size, 3), np.float32), np.zeros((0, 0, size, size, channels), np.float32)))
        if self.shuffle:
            rows_ds = tf.data.Dataset.from_tensor_slices((np.stack([r[0] for r in gen_rows]),
                                                          np.stack([r[1] for r in gen_rows])))
        else:  # ragged last batch: one element per row via a generator of index arrays
            rows_ds = tf.data.Dataset.from_generator(
                lambda: iter(gen_rows), output_signature=(tf.TensorSpec([None], tf.int64),
                                                          tf.TensorSpec([None], tf.uint32)))

        def load(i, code):
            x, y = tf.numpy_function(self._gather, [i, code], (tf.float32, tf.float32), stateful=False)
            x.set_shape([None, size, size, 3])
            y.set_shape([None, size, size, channels])
            return x, y

        ds = rows_ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        options = tf.data.Options()
        # The sharding is done above (per pipeline); tf.distribute must not shard again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------------------------
# Strategy, optimizer
# ----------------------------------------------------------------------------------------------------------------

def make_strategy(name: str = "default") -> tf.distribute.Strategy:
    """default: one device; mirrored: all local devices (GPUs, or logical CPUs if configured); multiworker: the
    cluster described by the TF_CONFIG environment variable."""
    if name in (None, "", "default"):
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        # NCCL is GPU-only; plain reduction works on CPUs and mixed setups.
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise Mask2FaceError("--strategy multiworker needs the TF_CONFIG environment variable (cluster + this "
                                 "task), see https://www.tensorflow.org/guide/distributed_training")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise Mask2FaceError(f"unknown strategy {name!r}; choose default, mirrored or multiworker")


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0
                                             and "chief" not in resolver.cluster_spec().as_dict())


def make_optimizer(learning_rate: float, schedule: str, total_steps: int) -> keras.optimizers.Optimizer:
    """Adam; `cosine` decays to 2% of the rate over the run after a short linear warm-up (BN statistics settle)."""
    if schedule == "cosine":
        warmup = min(100, max(total_steps // 20, 0))
        lr = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=learning_rate * 0.1 if warmup else learning_rate,
            decay_steps=max(total_steps - warmup, 1), alpha=0.02,
            warmup_target=learning_rate if warmup else None, warmup_steps=warmup)
    elif schedule == "constant":
        lr = learning_rate
    else:
        raise Mask2FaceError(f"unknown learning-rate schedule {schedule!r}; choose cosine or constant")
    return keras.optimizers.Adam(lr)


def _current_lr(optimizer) -> float:
    lr = getattr(optimizer, "_learning_rate", None) or optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        return float(lr(optimizer.iterations))
    return float(tf.convert_to_tensor(lr))


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class FitResult:
    out_dir: Path
    epochs_done: int
    global_step: int
    best_val_loss: float | None
    last_val_loss: float | None
    images_per_s: float | None
    resumed_from_step: int
    finished: bool

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["out_dir"] = str(self.out_dir)
        return d


def _scalar(tag: str, value: float, step: int) -> None:
    """A TensorBoard scalar without needing the tensorboard package (tf.summary.scalar imports it)."""
    from tensorflow.core.framework import summary_pb2

    meta = summary_pb2.SummaryMetadata()
    meta.plugin_data.plugin_name = "scalars"  # what TensorBoard's scalar dashboard reads
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=meta)


def run_key(settings: dict) -> str:
    blob = json.dumps(config_mod.without_later_defaults(settings), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _save_model(model: keras.Model, path: Path) -> None:
    with runs.atomic_path(path) as tmp:
        model.save(tmp)


def _save_on_every_worker(chief: bool, save: Callable[[Path], None], path: Path) -> None:
    """Call `save(path)` on the chief and `save(<scratch copy>)` on every other worker. Under
    MultiWorkerMirroredStrategy reading the variables to save them runs collective ops, so all workers must save at
    the same step or the next all-reduce pairs mismatched ops (and fails); only the chief's file is kept."""
    if chief:
        save(path)
        return
    with tempfile.TemporaryDirectory(prefix="mask2face-worker-") as scratch:
        save(Path(scratch) / path.name)


def _write_csv(path: Path, history: dict) -> None:
    rows = [history[k] for k in sorted(history, key=int)]
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    runs.write_bytes(path, buf.getvalue().encode())


def fit_model(model: keras.Model, train: PairsInput | tf.data.Dataset, val: PairsInput | tf.data.Dataset | None,
              loss: Callable, out_dir: Path, *, epochs: int, learning_rate: float, schedule: str = "cosine",
              steps_per_epoch: int = 0, strategy: tf.distribute.Strategy | None = None, global_batch_size:
              int | None = None, checkpoint_minutes: float = 5.0, checkpoint_steps: int = 0,
              settings: dict | None = None, max_steps: int | None = None, log_every: int = 20,
              name: str = "train", verbose: bool = True, adversarial=None) -> FitResult:
    """Train `model` (built inside `strategy.scope()`) on `train` minimising `loss(y_true, y_pred) -> (B,)`.

    `train`/`val` are PairsInput (exact mid-epoch resume, distribution-aware) or tf.data.Datasets of (x, y)
    batches (resume skips batches of a re-iterated dataset). `steps_per_epoch` 0 = one pass. `settings` is
    anything that must match for a resume to be valid (model config, data hash...); the loop adds its own.
    `max_steps` stops after that many steps in this run (benchmarks). `adversarial` (an AdversarialConfig with
    weight > 0) adds a patch discriminator's term (train/adversarial.py): it is saved as OUT/discriminator.keras
    beside last.keras, its terms are logged by name, and best.keras then follows the last epoch (the validation
    loss measures reconstruction only, which the adversarial term trades for detail). Returns a FitResult;
    writes OUT/{last,best}.keras, state.json, log.csv, logs/ (TensorBoard), train_report.json."""
    from mask2face.train.adversarial import TERMS, Adversary
    strategy = strategy or tf.distribute.get_strategy()
    out_dir = Path(out_dir)
    chief = _is_chief(strategy)
    if chief:
        out_dir.mkdir(parents=True, exist_ok=True)
    is_pairs = isinstance(train, PairsInput)
    if is_pairs:
        spe = min(steps_per_epoch, train.steps_per_epoch) if steps_per_epoch else train.steps_per_epoch
        global_batch_size = train.batch_size
    else:
        if not steps_per_epoch:
            steps_per_epoch = int(train.cardinality().numpy())
            if steps_per_epoch <= 0:
                raise DataError("a tf.data training set of unknown length needs steps_per_epoch")
        spe = steps_per_epoch
    if global_batch_size is None:
        raise DataError("global_batch_size is needed for a tf.data training set")
    replicas = strategy.num_replicas_in_sync
    if global_batch_size % replicas:
        raise DataError(f"batch size {global_batch_size} does not split over {replicas} replicas: use a multiple "
                        f"of {replicas} (train.batch_size=...)")
    total_steps = epochs * spe
    key_settings = dict(settings or {}, epochs=epochs, steps_per_epoch=spe, learning_rate=learning_rate,
                        schedule=schedule, batch_size=global_batch_size, loss=getattr(loss, "__name__", "loss"))
    if adversarial is not None and adversarial.weight:
        key_settings["adversarial"] = config_mod.to_dict(adversarial)
    key = run_key(key_settings)
    disc_path = out_dir / "discriminator.keras"

    last_path, best_path, state_path = out_dir / "last.keras", out_dir / "best.keras", out_dir / "state.json"
    try:
        state = runs.read_json(state_path, None) if last_path.exists() else None
    except ValueError as exc:   # json.JSONDecodeError: a state file edited or damaged by hand
        raise Mask2FaceError(f"{state_path} is damaged ({exc}): delete {state_path} and {last_path} to start this "
                             "stage over (best.keras is kept)") from None
    if state is not None and state.get("run_key") != key:
        raise Mask2FaceError(
            f"{out_dir} holds a checkpoint made with other settings (run key {state.get('run_key')} != {key}): "
            "use another output folder (--out DIR) or delete that folder to start over")

    with strategy.scope():
        optimizer = make_optimizer(learning_rate, schedule, total_steps)
        model.compile(optimizer=optimizer)  # so .keras files carry the optimizer state
        optimizer.build(model.trainable_variables)
        adversary = Adversary.from_config(adversarial, int(model.input_shape[1])) if adversarial else None
        if state is not None:
            try:
                model.load_weights(last_path)  # weights + optimizer slots + step counter, from one atomic file
                if adversary is not None:
                    adversary.load(disc_path)
            except (OSError, ValueError) as exc:
                raise Mask2FaceError(f"{last_path} or {disc_path.name} cannot be read "
                                     f"({' '.join(str(exc).split())[:120]}): delete {last_path} and {state_path} "
                                     "to start this stage over (best.keras is kept)") from None
    global_step = int(optimizer.iterations.numpy())
    resumed_from = global_step
    history: dict = dict((state or {}).get("history", {}))
    best = (state or {}).get("best_val_loss")
    if state is not None and verbose:
        if global_step >= total_steps:
            print(f"{name}: {out_dir} already holds the finished run ({epochs} epochs); nothing to do",
                  file=sys.stderr)
        else:
            print(f"{name}: resuming from {last_path} at step {global_step} (epoch {global_step // spe + 1}/"
                  f"{epochs}, step {global_step % spe}/{spe})", file=sys.stderr)

    def write_state(done: bool, extra: dict | None = None):
        if not chief:
            return
        st = {"run_key": key, "settings": key_settings, "epoch": global_step // spe, "step_in_epoch":
              global_step % spe, "global_step": global_step, "steps_per_epoch": spe, "epochs": epochs,
              "best_val_loss": best, "history": history, "finished": done, "updated": time.time()}
        st.update(extra or {})
        runs.write_json(state_path, st)

    def save_last():
        if adversary is not None:   # first: a kill between the two files leaves it one save ahead, no worse
            _save_on_every_worker(chief, adversary.save, disc_path)
        _save_on_every_worker(chief, lambda path: _save_model(model, path), last_path)

    # ---- compiled steps ----
    def replica_step(x, y):
        terms = {}
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = loss(y, pred)
            value = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
            terms["reconstruction"] = value
            if model.losses:
                value += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            if adversary is not None:
                g_terms = adversary.generator_terms(tf.cast(y, tf.float32), tf.cast(pred, tf.float32))
                value += adversary.generator_loss(g_terms) / replicas
                terms.update({k: v / replicas for k, v in g_terms.items()})
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if adversary is not None:
            d_terms = adversary.discriminator_step(tf.cast(y, tf.float32), tf.cast(pred, tf.float32), replicas)
            terms.update({k: v / replicas for k, v in d_terms.items()})
        terms["loss"] = value
        return terms

    @tf.function
    def train_step(batch):
        per_replica = strategy.run(replica_step, args=batch)
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    @tf.function
    def val_step(x, y):
        return loss(y, model(x, training=False))

    def evaluate() -> float | None:
        if val is None:
            return None
        total, count = 0.0, 0
        ds = val.dataset(0) if isinstance(val, PairsInput) else val
        for x, y in ds:
            v = val_step(x, y).numpy()
            total += float(v.sum())
            count += len(v)
        return total / max(count, 1)

    def make_train_iter(epoch: int, start: int):
        if is_pairs:
            ds = strategy.distribute_datasets_from_function(
                lambda ctx: train.dataset(epoch, start, ctx))
        else:
            ds = strategy.experimental_distribute_dataset(train.skip(start))
        return iter(ds)

    writer = tf.summary.create_file_writer(str(out_dir / "logs")) if chief else tf.summary.create_noop_writer()
    last_ckpt = time.monotonic()
    session_images, session_time, session_steps = 0, 0.0, 0
    t_session = time.monotonic()
    interactive = sys.stderr.isatty()
    finished = global_step >= total_steps
    last_val = None
    write_state(finished)

    while global_step < total_steps:
        if max_steps is not None and session_steps >= max_steps:
            break
        epoch, start = divmod(global_step, spe)
        it = make_train_iter(epoch, start)
        bar = tqdm(total=spe, initial=start, desc=f"{name} epoch {epoch + 1}/{epochs}", unit="step",
                   disable=not verbose, mininterval=0.5 if interactive else 30, file=sys.stderr, dynamic_ncols=True)
        running, running_n, epoch_t0 = 0.0, 0, time.monotonic()
        running_terms: dict[str, float] = {}
        for _ in range(start, spe):
            if max_steps is not None and session_steps >= max_steps:
                break
            t0 = time.monotonic()
            batch = next(it)
            step_terms = {k: float(v.numpy()) for k, v in train_step(batch).items()}
            value = step_terms["loss"] if all(map(math.isfinite, step_terms.values())) else math.nan
            dt = time.monotonic() - t0
            if not math.isfinite(value):
                bar.close()
                raise TrainingDivergedError(
                    f"{name}: the loss became {value} at epoch {epoch + 1}, step {global_step - epoch * spe + 1} "
                    f"(global step {global_step + 1}); stopped without saving. The last good checkpoint is kept "
                    f"in {last_path if last_path.exists() else out_dir}. Lower the learning rate (e.g. "
                    f"train.learning_rate={learning_rate / 3:.2g}) and run again (it resumes).")
            global_step += 1
            session_steps += 1
            if session_steps > WARMUP_STEPS_EXCLUDED:
                session_images += global_batch_size
                session_time += dt
            running += value
            running_n += 1
            for k, v in step_terms.items():
                running_terms[k] = running_terms.get(k, 0.0) + v
            bar.update(1)
            if running_n % 5 == 0 or running_n == 1:
                bar.set_postfix(loss=f"{running / running_n:.4f}",
                                img_s=f"{session_images / session_time:.1f}" if session_time else "-")
            if global_step % log_every == 0:
                lr_now = _current_lr(optimizer)   # on every worker: reading the step counter is a collective
                with writer.as_default():          # a no-op writer on the other workers
                    _scalar("train/loss", value, global_step)
                    _scalar("train/learning_rate", lr_now, global_step)
                    if adversary is not None:
                        for k, v in step_terms.items():
                            _scalar(f"train/{k}", v, global_step)
            mid_epoch = global_step % spe != 0
            due = (checkpoint_steps and global_step % checkpoint_steps == 0) or (
                checkpoint_minutes and time.monotonic() - last_ckpt > checkpoint_minutes * 60)
            if mid_epoch and due:
                save_last()
                write_state(False)
                last_ckpt = time.monotonic()
        bar.close()
        if global_step % spe != 0:  # stopped by max_steps in the middle of an epoch
            save_last()
            write_state(False)
            break
        # ---- end of epoch ----
        last_val = evaluate()
        if last_val is not None and not math.isfinite(last_val):
            raise TrainingDivergedError(f"{name}: the validation loss became {last_val} after epoch {epoch + 1}; "
                                        f"stopped without saving (last good checkpoint kept in {out_dir}). "
                                        "Lower the learning rate and run again.")
        improved = adversary is not None or last_val is None or best is None or last_val < best
        if improved:
            best = last_val
            _save_on_every_worker(chief, lambda path: _save_model(model, path), best_path)
        history[str(epoch + 1)] = {
            "epoch": epoch + 1, "global_step": global_step,
            "train_loss": round(running / max(running_n, 1), 6) if running_n else None,
            "val_loss": None if last_val is None else round(last_val, 6),
            "learning_rate": _current_lr(optimizer), "seconds": round(time.monotonic() - epoch_t0, 1),
            "images_per_s": round(session_images / session_time, 2) if session_time else None}
        if adversary is not None and running_n:
            history[str(epoch + 1)]["terms"] = {k: round(running_terms.get(k, 0.0) / running_n, 6)
                                                for k in ("reconstruction",) + TERMS}
        finished = global_step >= total_steps
        write_state(finished)          # state first, then weights: a kill in between only repeats steps
        save_last()
        last_ckpt = time.monotonic()
        if chief:
            _write_csv(out_dir / "log.csv", history)
            with writer.as_default():
                if last_val is not None:
                    _scalar("val/loss", last_val, global_step)
                _scalar("train/epoch_loss", running / max(running_n, 1), global_step)
            writer.flush()
        if verbose:
            print(f"{name}: epoch {epoch + 1}/{epochs} train loss {running / max(running_n, 1):.4f}"
                  + (f" val loss {last_val:.4f}" if last_val is not None else "")
                  + (" (best)" if improved and last_val is not None else ""), file=sys.stderr)

    ips = session_images / session_time if session_time else None
    if ips is None and chief:  # nothing trained in this run: report the last measured figure
        ips = (runs.read_json(out_dir / "train_report.json", {}) or {}).get("images_per_s")
    result = FitResult(out_dir, global_step // spe, global_step, best, last_val, ips, resumed_from, finished)
    if chief:
        report = runs.read_json(out_dir / "train_report.json", {}) or {}
        sessions = report.get("sessions", [])
        if session_steps and session_time:
            sessions.append({"steps": session_steps, "from_step": resumed_from,
                             "wall_s": round(time.monotonic() - t_session, 1),
                             "images_per_s": None if ips is None else round(ips, 2)})
        measured = [s["images_per_s"] for s in sessions if s.get("images_per_s")]
        report.update({"name": name, "images_per_s": measured[-1] if measured else None,
                       "images_per_s_note": "forward+backward training steps, first "
                       f"{WARMUP_STEPS_EXCLUDED} steps of each run excluded (tracing)",
                       "global_batch_size": global_batch_size, "replicas": replicas,
                       "strategy": type(strategy).__name__, "steps_per_epoch": spe, "epochs": epochs,
                       "global_step": global_step, "finished": finished, "best_val_loss": best,
                       "history": history, "sessions": sessions, "machine": runs.machine_info()})
        runs.write_json(out_dir / "train_report.json", report)
    return result


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------

def _data_fingerprint(data_dir: Path) -> str | None:
    info = runs.read_json(Path(data_dir) / "dataset.json", None)
    if info is None:
        return None
    return info.get("config_hash") or run_key(info)


def copy_weights(source: Path, model: keras.Model, key: str = "train.init_from", section: str = "teacher") -> None:
    """Initialise `model` with the weights of the saved model `source` (same weight shapes): fine-tuning.
    Only the weights are taken; the optimizer and schedule start fresh for the new run."""
    from mask2face.train.models import load_model

    if not source.is_file():
        raise Mask2FaceError(f"{key}={source}: no such model file (the shipped ones are in the repository's "
                             "models/cpu/: teacher.keras, student.keras)")
    src = load_model(source)
    theirs, ours = src.get_weights(), model.get_weights()
    if [w.shape for w in theirs] != [w.shape for w in ours]:
        raise Mask2FaceError(f"{key}={source}: its layers do not match the configured model "
                             f"({src.count_params():,} vs {model.count_params():,} parameters); use the same "
                             f"{section}.* settings it was trained with (see its config.json)")
    model.set_weights(theirs)


def cli_main(cfg, args) -> int:
    """`mask2face train`: RUN/data -> RUN/teacher (best.keras, last.keras, state.json, logs, manifest)."""
    from mask2face.train.losses import build_loss
    from mask2face.train.models import build_model

    cfg = cfg or config_mod.load("cpu")
    run_dir = Path(getattr(args, "run", None) or Path("runs") / cfg.preset)
    data_dir = Path(getattr(args, "data", None) or run_dir / "data")
    out_dir = Path(getattr(args, "out", None) or run_dir / "teacher")
    tc = cfg.train
    strategy = make_strategy(getattr(args, "strategy", None) or tc.strategy)  # before other TF work
    keras.utils.set_random_seed(tc.seed)

    print(f"train: loading pairs from {data_dir}", file=sys.stderr)
    train_in = PairsInput(data_dir, "train", tc.batch_size, flip=tc.flip, shuffle=True, seed=tc.seed,
                          bare_share=tc.bare_share, degrade=tc.degrade)
    try:
        val_in = PairsInput(data_dir, "val", tc.batch_size, shuffle=False)
    except DataError:
        val_in = None
        print(f"train: no validation pairs in {data_dir / 'val'}; best.keras follows the last epoch",
              file=sys.stderr)
    size = train_in.image_size
    if size != cfg.data.image_size:
        print(f"train: note: pairs are {size}x{size} but data.image_size={cfg.data.image_size}; "
              f"the model is built for {size}", file=sys.stderr)
    with strategy.scope():
        model = build_model(cfg.teacher, size)
        if tc.init_from:
            copy_weights(Path(tc.init_from), model)
            print(f"train: starting from the weights of {tc.init_from}", file=sys.stderr)
    loss = build_loss(tc, cfg.teacher.predict_mask)
    if _is_chief(strategy):
        out_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / "config.json").exists():
            runs.init_run(run_dir, config_mod.to_dict(cfg))
        runs.write_json(out_dir / "config.json", config_mod.to_dict(cfg))
    print(f"train: {train_in.size} training pairs, {val_in.size if val_in else 0} validation pairs, "
          f"{size}x{size}, {model.count_params():,} parameters, {strategy.num_replicas_in_sync} replica(s)",
          file=sys.stderr)
    settings = {"teacher": config_mod.to_dict(cfg.teacher), "train": config_mod.to_dict(tc), "image_size": size,
                "train_pairs": train_in.size, "data": _data_fingerprint(data_dir),
                "init_from_sha256": runs.sha256_file(Path(tc.init_from)) if tc.init_from else None}
    settings["train"].pop("strategy", None)  # a resume may use another strategy
    result = fit_model(model, train_in, val_in, loss, out_dir, epochs=tc.epochs, learning_rate=tc.learning_rate,
                       schedule=tc.lr_schedule, steps_per_epoch=tc.steps_per_epoch, strategy=strategy,
                       checkpoint_minutes=float(getattr(args, "checkpoint_minutes", None) or 5.0),
                       checkpoint_steps=int(getattr(args, "checkpoint_steps", None) or 0), settings=settings,
                       name="train", adversarial=tc.adversarial)
    if _is_chief(strategy):
        outputs = [out_dir / n for n in ("best.keras", "last.keras", "state.json", "train_report.json", "log.csv")]
        runs.write_manifest(out_dir, stage="teacher", config=config_mod.to_dict(cfg),
                            inputs=[data_dir / "dataset.json"] if (data_dir / "dataset.json").exists() else
                            [str(data_dir)], outputs=outputs,
                            parents=[str(data_dir)] + ([tc.init_from] if tc.init_from else []),
                            extra={"result": result.as_dict()})
    ips = f"{result.images_per_s:.1f} images/s" if result.images_per_s else "throughput n/a"
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    print(f"train: done {result.epochs_done}/{tc.epochs} epochs, best val loss {best}, {ips}; "
          f"model in {out_dir / 'best.keras'}")
    return 0


# ----------------------------------------------------------------------------------------------------------------
# Throughput measurement (for choosing preset sizes)
# ----------------------------------------------------------------------------------------------------------------
