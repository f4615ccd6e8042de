"""Which input each output in an --out folder was made from, and the summary every run into it adds to.

One small JSON record per output under OUT/.mask2face/records/ (named by a hash of the output's path inside OUT):
created exclusively *before* the output is written (a claim: the input's absolute path) and replaced by the full
record (faces, status) right after. So:
- two runs sharing --out never overwrite each other's results silently, at once or one after the other: an output
  claimed for another input is refused for this one unless the user asks (`--overwrite`);
- a run killed with SIGKILL leaves the records of every output it finished: a resumed run (`--skip-existing`) lists
  them with their faces;
- `summary.json` is merged, not replaced: records keyed by input path, under a lock, written atomically.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import threading
from pathlib import Path
from typing import Callable

from .errors import DiskFullError, Mask2FaceError
from .safeio import atomic_write, resolved

LEDGER_DIR = ".mask2face"
FINISHED = ("ok", "no-face", "no-mask")   # statuses of a written output


class OutputTakenError(Mask2FaceError):
    """An output that exists and was not made from this input: left alone unless the user asks."""
    reason = "output-exists"


def source_of(record: dict) -> str:
    """The key a record is merged by: the input's absolute path (the same file named two ways is one record)."""
    return record.get("source") or str(resolved(record["file"]))


class OutputLedger:
    """The records of one --out folder."""

    def __init__(self, out_dir: Path):
        self.out_dir = resolved(out_dir)
        self.folder = self.out_dir / LEDGER_DIR / "records"

    def _path(self, output: Path) -> Path:
        inside = os.fsencode(os.path.relpath(resolved(output), self.out_dir))
        return self.folder / f"{hashlib.sha256(inside).hexdigest()[:32]}.json"

    def read(self, output: Path) -> dict | None:
        try:
            record = json.loads(self._path(output).read_bytes())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("source"), str) else None

    def _create(self, output: Path, record: dict) -> bool:
        """Write `record` only if `output` has none yet, atomically (link of a complete temp file): False if
        another run got there first."""
        tmp = self.folder / f".claim-{os.getpid()}-{threading.get_ident()}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(json.dumps(record).encode())
            os.link(tmp, self._path(output))
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno == errno.ENOSPC:   # stops the batch like any full disk (media.run_batch)
                raise DiskFullError(f"disk full while writing in {self.out_dir}: free some space there") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)

    def claim(self, src: Path, output: Path, overwrite: bool = False) -> tuple[str, dict | None]:
        """Before `output` is written from `src`: ("mine", the earlier record or None) when it is free or was made
        from `src`; ("unknown", None) when the output exists without a record (not written by mask2face, or by a
        version without records: the caller decides). Raises OutputTakenError when it is another input's
        output, unless `overwrite` (then the claim passes to `src`)."""
        source = str(resolved(src))
        claim = {"file": str(src), "source": source, "output": str(output), "status": "claimed"}
        earlier = self.read(output)
        if earlier is None:
            if os.path.lexists(output) and not overwrite:
                return "unknown", None
            if self._create(output, claim):
                return "mine", None
            earlier = self.read(output) or {}
        if earlier.get("source") == source:
            return "mine", earlier if earlier.get("status") in FINISHED else None
        if not overwrite:
            raise OutputTakenError(
                f"{output} is the output of {earlier.get('file')} (another run into the same --out), not of {src}: "
                "nothing was overwritten; use another --out folder, or --overwrite to replace it")
        self.write(claim)
        return "mine", None

    def write(self, record: dict) -> None:
        """The record of a finished output (after the output took its name)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self._path(Path(record["output"])), json.dumps(record, default=str).encode(), fsync=False)

    def finished_records(self) -> list[dict]:
        out = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            try:
                record = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("status") in FINISHED and "file" in record:
                out.append(record)
        return out


@contextlib.contextmanager
def signals_deferred():
    """Ctrl-C / SIGTERM held back while an output takes its name and its record is kept, then handled: the files a
    stopped run says are done are exactly the files on disk. Python-level handlers are swapped for one that only
    notes the signal (blocking it with pthread_sigmask would not do: LiteRT's and OpenCV's worker threads would
    still take it and Python would raise in this thread all the same). Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))}
    for s in held:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, handler in held.items():
            signal.signal(s, handler)
        if caught:
            held[caught[0]](caught[0], None)   # KeyboardInterrupt, now that the file and its record agree


@contextlib.contextmanager
def locked(lock_path: Path):
    """An exclusive lock between processes (flock on `lock_path`; without fcntl, e.g. Windows, no lock)."""
    try:
        import fcntl
    except ImportError:   # pragma: no cover - POSIX is what the runtime targets
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def merge_summary(summary_path: Path, records: list[dict], ledger: OutputLedger | None,
                  build: Callable[[list[dict]], dict]) -> dict:
    """Write `build(all records)` to `summary_path`, where all records are the earlier summary's, the finished
    outputs the ledger knows (a run killed before its summary) and this run's, keyed by input (this run's win),
    under a lock so that runs finishing at once do not lose each other's records. Returns what was written."""
    summary_path = Path(summary_path)
    with locked(summary_path.parent / LEDGER_DIR / f"{summary_path.name}.lock"):
        merged: dict[str, dict] = {}
        for record in earlier_summary_records(summary_path) + (ledger.finished_records() if ledger else []):
            merged.setdefault(source_of(record), record)
        # an output this run wrote (over another input's, with --overwrite) is no longer that input's result
        written = {r["output"]: source_of(r) for r in records if r.get("status") in FINISHED and "output" in r}
        merged = {key: r for key, r in merged.items() if written.get(r.get("output"), key) == key}
        for record in records:
            merged.pop(source_of(record), None)
            merged[source_of(record)] = record
        summary = build(list(merged.values()))
        atomic_write(summary_path, (json.dumps(summary, indent=2, default=str) + "\n").encode())
    return summary


def earlier_summary_records(summary_path: Path) -> list[dict]:
    try:
        records = json.loads(Path(summary_path).read_text())["records"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [r for r in records if isinstance(r, dict) and isinstance(r.get("file"), str)] \
        if isinstance(records, list) else []
