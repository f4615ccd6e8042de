"""The pairs format: the contract between `mask2face data` and everything that trains or measures.

A pairs folder holds, per split (train/val/test), shard files `SPLIT/shard-NNNNN.npz` with uint8 arrays
    masked (N, S, S, 3) RGB   - the input with a drawn mask
    clean  (N, S, S, 3) RGB   - the original face (truth)
    mask   (N, S, S)    0/255 - where the mask covers the face
and beside each a `shard-NNNNN.json` list of N metadata dicts (source file, identity, mask type, colour, seed,
landmarks). `dataset.json` at the top lists splits, shards, counts and the config hash. numpy only: the
benchmarks and the edge runtime read it without TensorFlow; tf.data wraps the same arrays.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from mask2face.edge_runtime.errors import Mask2FaceError

SPLITS = ("train", "val", "test")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def write_shard(path_stem: Path, masked: np.ndarray, clean: np.ndarray, mask: np.ndarray, meta: list[dict]) -> Path:
    """Write one shard atomically (npz + json). The npz is renamed into place last: it marks the shard done."""
    from mask2face.runs import write_bytes  # the writer runs on the training side only

    assert masked.shape == clean.shape and masked.shape[:3] == mask.shape and len(meta) == len(masked)
    buf = io.BytesIO()
    np.savez(buf, masked=masked.astype(np.uint8), clean=clean.astype(np.uint8), mask=mask.astype(np.uint8))
    path_stem = Path(path_stem)
    write_bytes(path_stem.with_suffix(".json"), json.dumps(meta, default=_jsonable).encode())
    write_bytes(path_stem.with_suffix(".npz"), buf.getvalue())
    return path_stem.with_suffix(".npz")


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    raise TypeError(type(obj))


def shard_paths(data_dir: Path, split: str) -> list[Path]:
    return sorted((Path(data_dir) / split).glob("shard-*.npz"))


def read_shard(path: Path) -> dict[str, np.ndarray]:
    """A shard's arrays; a damaged or foreign file is one clear error that names it and says how to rebuild it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in ("masked", "clean", "mask")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise Mask2FaceError(f"{path} is damaged ({' '.join(str(exc).split())[:120]}): delete it and run "
                             "`mask2face data` again with the same options; it rebuilds the missing shards") from None


def shard_is_whole(path: Path) -> bool:
    """Cheap check that a shard and its metadata are complete files (the zip's central directory is at its end,
    so a cut-off .npz fails it), for resuming `mask2face data` over shards damaged after they were written."""
    try:
        return zipfile.is_zipfile(path) and isinstance(read_meta(path), list)
    except (OSError, ValueError):
        return False


def read_meta(path: Path) -> list[dict]:
    return json.loads(Path(path).with_suffix(".json").read_text())


def load_split(data_dir: Path, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """All pairs of a split in memory: {'masked', 'clean', 'mask'} uint8 arrays (first `limit` if given)."""
    parts: dict[str, list] = {"masked": [], "clean": [], "mask": []}
    count = 0
    for path in shard_paths(data_dir, split):
        shard = read_shard(path)
        for k in parts:
            parts[k].append(shard[k])
        count += len(shard["masked"])
        if limit and count >= limit:
            break
    if not count:
        raise FileNotFoundError(f"no pairs in {Path(data_dir) / split}: run `mask2face data` first")
    out = {k: np.concatenate(v) for k, v in parts.items()}
    if limit:
        out = {k: v[:limit] for k, v in out.items()}
    return out


def dataset_info(data_dir: Path) -> dict:
    return json.loads((Path(data_dir) / "dataset.json").read_text())
