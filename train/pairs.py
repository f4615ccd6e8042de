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

from mask2face.edge_runtime.align import DEFAULT_FRAMING
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


def data_framing(data_dir: Path) -> dict:
    """The crop framing of a pairs folder ({"eye_line", "eye_distance"}, edge_runtime.align.Framing's fields): what
    `mask2face data` was told (data.eye_line, data.eye_distance; folders made before those existed hold the default
    0.37 / 0.30, as do folders without dataset.json), or what a merged folder records."""
    path = Path(data_dir) / "dataset.json"
    info = json.loads(path.read_text()) if path.is_file() else {}   # hand-made pairs: the default framing
    if "crop" in info:
        return dict(info["crop"])
    made_with = {**DEFAULT_FRAMING.to_dict(), **info.get("config", {})}
    return {"eye_line": float(made_with["eye_line"]), "eye_distance": float(made_with["eye_distance"])}


def merge(out_dir: Path, train_from: list[Path], eval_from: Path) -> dict:
    """A pairs folder whose train split is the train splits of `train_from` (in that order, shards renumbered) and
    whose val and test splits are `eval_from`'s: train a model on several face sets while it is still chosen and
    measured on one set's held-out identities. Shards are linked, not copied (a copy where the file system has no
    links); `dataset.json` records where each came from. Returns that record."""
    import os
    import shutil

    from mask2face.runs import write_json

    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise Mask2FaceError(f"{out_dir} is not empty: merge into a new folder")
    # Every input is checked before the first link, so a refused merge leaves no half-made folder behind.
    plan: list[tuple[Path, Path]] = []
    sizes, framings, counts = set(), set(), {split: 0 for split in SPLITS}
    sources = {split: [str(Path(d).resolve()) for d in (train_from if split == "train" else [eval_from])]
               for split in SPLITS}
    for split in SPLITS:
        shards = []
        for data_dir in train_from if split == "train" else [eval_from]:
            found = shard_paths(data_dir, split)
            if not found or not (Path(data_dir) / "dataset.json").is_file():
                raise Mask2FaceError(f"no {split} pairs in {data_dir}: make it with `mask2face data` first")
            sizes.add(int(dataset_info(data_dir).get("image_size", 0)))
            framings.add(tuple(sorted(data_framing(data_dir).items())))
            shards += found
        for index, shard in enumerate(shards):
            counts[split] += len(read_meta(shard))
            stem = out_dir / split / shard_name(index)
            plan += [(shard.with_suffix(suffix), stem.with_suffix(suffix)) for suffix in (".npz", ".json")]
    if len(sizes) != 1:
        raise Mask2FaceError(f"the pairs folders have crops of different sizes {sorted(sizes)}: merge folders made "
                             "with the same data.image_size")
    if len(framings) != 1:
        raise Mask2FaceError(f"the pairs folders frame their faces differently {[dict(f) for f in sorted(framings)]}: "
                             "merge folders made with the same data.eye_line and data.eye_distance")
    for src, dst in plan:
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.symlink(src.resolve(), dst)
        except OSError:   # no links on this file system
            shutil.copyfile(src, dst)
    info = {"image_size": sizes.pop(), "crop": dict(framings.pop()), "counts": counts, "pairs": sum(counts.values()), "merged_from": sources}
    write_json(out_dir / "dataset.json", info)
    return info


def main(argv=None) -> int:
    """python -m mask2face.train.pairs merge OUT --train A B ... --eval A"""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m mask2face.train.pairs", description="Pairs folders: merge several "
                                "sets' train splits into one folder, val and test from one of them.")
    sub = p.add_subparsers(dest="verb", required=True)
    m = sub.add_parser("merge", help="one pairs folder from several")
    m.add_argument("out", type=Path, help="new pairs folder")
    m.add_argument("--train", type=Path, nargs="+", required=True, help="pairs folders whose train splits to join")
    m.add_argument("--eval", type=Path, required=True, help="pairs folder whose val and test splits to keep")
    args = p.parse_args(argv)
    try:
        info = merge(args.out, args.train, args.eval)
    except Mask2FaceError as exc:
        print(f"pairs merge: {exc}", file=sys.stderr)
        return 2
    print(f"pairs merge: {info['counts']} pairs in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
