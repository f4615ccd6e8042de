"""The generic, resumable training loop (`fit_model`) that train, distill and qat run, and its tf.distribute
strategies.

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

import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mask2face import config as config_mod, runs  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402
from mask2face.train.checkpoints import run_key, save_model, save_on_every_worker, write_log_csv  # noqa: E402
from mask2face.train.input_pipeline import DataError, PairsInput  # noqa: E402

WARMUP_STEPS_EXCLUDED = 3  # steps of each run (process) left out of the throughput (graph tracing, allocator warm-up)


class TrainingDivergedError(Mask2FaceError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# Strategy, optimizer

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


def is_chief(strategy: tf.distribute.Strategy) -> bool:
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
    chief = is_chief(strategy)
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
            save_on_every_worker(chief, adversary.save, disc_path)
        save_on_every_worker(chief, lambda path: save_model(model, path), last_path)

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
            save_on_every_worker(chief, lambda path: save_model(model, path), best_path)
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
            write_log_csv(out_dir / "log.csv", history)
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
