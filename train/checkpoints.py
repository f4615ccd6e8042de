"""What a training stage keeps on disk: atomic model files (on every worker under tf.distribute), the run key
that a resume must match, the per-epoch CSV log, the data fingerprint, and weights copied from another model."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import csv  # noqa: E402
import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import tf_keras as keras  # noqa: E402

from mask2face import config as config_mod, runs  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402


def run_key(settings: dict) -> str:
    blob = json.dumps(config_mod.without_later_defaults(settings), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def save_model(model: keras.Model, path: Path) -> None:
    with runs.atomic_path(path) as tmp:
        model.save(tmp)


def save_on_every_worker(chief: bool, save: Callable[[Path], None], path: Path) -> None:
    """Call `save(path)` on the chief and `save(<scratch copy>)` on every other worker. Under
    MultiWorkerMirroredStrategy reading the variables to save them runs collective ops, so all workers must save at
    the same step or the next all-reduce pairs mismatched ops (and fails); only the chief's file is kept."""
    if chief:
        save(path)
        return
    with tempfile.TemporaryDirectory(prefix="mask2face-worker-") as scratch:
        save(Path(scratch) / path.name)


def write_log_csv(path: Path, history: dict) -> None:
    rows = [history[k] for k in sorted(history, key=int)]
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    runs.write_bytes(path, buf.getvalue().encode())


# CLI

def data_fingerprint(data_dir: Path) -> str | None:
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
