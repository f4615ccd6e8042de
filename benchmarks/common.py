"""What every benchmark shares: where the shared photos and the result rows are, the environment each row carries,
how rows are written, and timing LiteRT invokes. Imported by the benchmarks, importing none of them."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from mask2face.edge_runtime import detect

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The shared face photos: $MASK2FACE_SHARED_DATA, else ../shared/data beside the source tree, else beside the
    working directory (a non-editable install puts this file in site-packages, far from the clone)."""
    if os.environ.get("MASK2FACE_SHARED_DATA"):
        return Path(os.environ["MASK2FACE_SHARED_DATA"])
    candidates = [REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def default_results_dir() -> Path:
    """Where benchmark rows are appended: the source tree's benchmarks/results/ when run from a clone (the
    project's measured figures live there), else ./mask2face-results (an installed package is no place to write)."""
    if (REPO / "pyproject.toml").is_file():
        return REPO / "benchmarks" / "results"
    return Path.cwd() / "mask2face-results"


DATA = shared_data_dir()
RESULTS = default_results_dir()


def environment() -> dict:
    """Every benchmark row's environment: the machine, package versions, when the row was made and which face
    detector asset ran."""
    from mask2face.edge_runtime import centerface
    from mask2face.runs import machine_info, package_versions, sha256_file

    asset = {"file": centerface.ASSET.name, "bytes": centerface.ASSET.stat().st_size,
             "sha256": sha256_file(centerface.ASSET)[:16]} if centerface.ASSET.is_file() else None
    return {"machine": machine_info(), "versions": package_versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "centerface_asset": asset}


def stages_arg(text: str) -> tuple[str, ...]:
    """argparse type for --stages / --detector-stages: comma-separated names from detect.STAGES."""
    stages = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in stages if s not in detect.STAGES]
    if not stages or unknown:
        raise argparse.ArgumentTypeError(f"unknown detector stage(s) {unknown}; choose from {','.join(detect.STAGES)}")
    return stages


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append JSON lines atomically (read, extend, replace): a crash never leaves half a row."""
    from mask2face.runs import write_bytes

    old = path.read_bytes() if path.exists() else b""
    new = b"".join((json.dumps(r, sort_keys=True, default=str) + "\n").encode() for r in rows)
    write_bytes(path, old + new)


def append_row(path: Path, row: dict) -> None:
    append_rows(path, [row])


def report_row(row: dict, keys: tuple[str, ...], file_name: str, save: bool = True,
               results: Path | None = None) -> None:
    """Print the row's headline `keys` as JSON and (if `save`) append the whole row to RESULTS/file_name."""
    print(json.dumps({k: row[k] for k in keys if k in row}, indent=1))
    if save:
        path = Path(results or RESULTS) / file_name
        append_row(path, row)
        print(f"wrote a row to {path}")


def time_invokes(interpreter, warmup: int, runs: int, before=None) -> np.ndarray:
    """Milliseconds of `runs` invoke() calls after `warmup` untimed ones. The input must already be set: every
    latency figure in the project times the model alone, not the copies around it. `before()`, if given, runs
    untimed before each timed invoke (to put the machine in a given state)."""
    for _ in range(max(warmup, 0)):
        interpreter.invoke()
    times = np.empty(max(runs, 1))
    for i in range(len(times)):
        if before is not None:
            before()
        t0 = time.perf_counter()
        interpreter.invoke()
        times[i] = (time.perf_counter() - t0) * 1e3
    return times


def invoke_sequences_ms(interpreter, before, sequences: int, length: int) -> np.ndarray:
    """p50 milliseconds of the 1st, 2nd, ... `length`th invoke() right after `before()`, over `sequences` sequences:
    how much slower a model's first invoke after other work is, and how soon it is warm again."""
    times = np.empty((max(sequences, 1), length))
    for row in times:
        before()
        row[:] = time_invokes(interpreter, warmup=0, runs=length)
    return np.median(times, axis=0)
