"""Run directories, manifests and atomic writes: every artifact says what made it.

A run directory `runs/NAME/` holds `config.json` (the exact resolved config), `manifest.json` (inputs and outputs
with sha256, package versions, git commit, parent run) and one folder per stage: data/, teacher/, student/,
qat/, export/, bench/.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from mask2face.edge_runtime.errors import DiskFullError  # noqa: F401  (one class for every package)

STAGES = ("data", "teacher", "student", "qat", "export", "bench", "eval")
TRACKED_PACKAGES = ("mask2face", "numpy", "opencv-python-headless", "ai-edge-litert", "tensorflow", "tf-keras",
                    "tensorflow-model-optimization", "dlib-bin", "face-recognition-models", "scikit-image")


def run_dir(cfg, args) -> Path:
    """A verb's run directory: `--run` if given, else runs/<preset> (the CLI's default)."""
    return Path(getattr(args, "run", None) or Path("runs") / cfg.preset)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file, and Ctrl-C or a full disk leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes the file owner-only; give it the permissions a plain open() would (0666 minus umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno == 28:  # ENOSPC
            raise DiskFullError(f"disk full while writing {path}: free some space and run the same command again "
                                    "(finished parts are kept)") from exc
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return default


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# The vector extensions XNNPACK's int8 and float kernels pick at run time: two machines that both read "AMD EPYC,
# 2 cores" ran the shipped int8 model in ~10 ms and in ~1.2 ms (the second with AVX-512 VNNI), so rows name them.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "asimd",
               "asimddp", "i8mm", "sve")


def cpu_details(cpuinfo: str) -> dict[str, Any]:
    """Model name, family/model/stepping and the speed-relevant flags of the first processor in /proc/cpuinfo text
    (x86 "flags", arm64 "Features")."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break   # the first processor's block only
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    details: dict[str, Any] = {"cpu": fields.get("model name", "")}
    ident = [fields[k] for k in ("cpu family", "model", "stepping") if k in fields]
    if ident:
        details["cpu_id"] = "/".join(ident)
    details["cpu_flags"] = [f for f in SPEED_FLAGS if f in flags]
    return details


def machine_info() -> dict[str, Any]:
    """Where a row was measured: CPU (name, family/model/stepping, vector extensions), cores, architecture, OS."""
    try:
        details = cpu_details(Path("/proc/cpuinfo").read_text())
    except OSError:
        details = {"cpu": ""}
    details["cpu"] = details["cpu"] or platform.processor() or ""
    return {**details, "cores": os.cpu_count(), "machine": platform.machine(), "system": platform.system()}


def file_entry(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    return {"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_file(p)}


def write_manifest(directory: str | os.PathLike, *, stage: str, config: dict | None = None,
                   inputs: list | None = None, outputs: list | None = None, parents: list | None = None,
                   extra: dict | None = None) -> Path:
    """Write `directory/manifest.json`: what this stage read and wrote (sha256), with what, from which commit."""
    directory = Path(directory)
    manifest = {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "machine": machine_info(),
        "config": config,
        "inputs": [file_entry(p) if isinstance(p, (str, os.PathLike)) and Path(p).is_file() else p
                   for p in (inputs or [])],
        "outputs": [file_entry(p) for p in (outputs or []) if Path(p).is_file()],
        "parents": parents or [],
    }
    if extra:
        manifest.update(extra)
    return write_json(directory / "manifest.json", manifest)


def init_run(run_dir: str | os.PathLike, config_dict: dict) -> Path:
    """Create the run directory and write its config.json (the exact resolved config)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", config_dict)
    return run_dir
