"""`mask2face remove INPUT... --out DIR [--model M] [--camera N] [--delegate cpu|gpu|nnapi] [--threads N]
[--chunk N] [--redetect-every N] [--mask-threshold P] [--classifier C] [--min-change X] [--summary F]
[--skip-existing] [--overwrite] [--max-file-mb N]`: no TensorFlow, no dlib; what a Raspberry Pi or Jetson runs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from .errors import DiskFullError, Mask2FaceError
from .inpaint import Inpainter
from .ledger import FINISHED, OutputLedger, earlier_summary_records, merge_summary
from .media import CHUNK, BatchStopped, collect, process_camera, run_batch, summarize
from .safeio import MAX_FILE_BYTES
from .track import REDETECT_EVERY


def _tqdm():
    try:
        from tqdm import tqdm
        return tqdm
    except ImportError:  # the edge install may lack tqdm: run without bars
        return None


def earlier_records(summary_path: Path) -> dict[str, dict]:
    """Finished records of an earlier run's summary by output path ({} if there is none or it is unreadable), so
    that a --skip-existing run's summary still describes every file, not only the ones it did."""
    return {r["output"]: r for r in earlier_summary_records(summary_path)
            if r.get("status") in FINISHED and isinstance(r.get("output"), str)}


def with_earlier(records: list[dict], earlier: dict[str, dict]) -> list[dict]:
    """Skipped files take their earlier record (without its timings: this run's time split is this run's)."""
    out = []
    for r in records:
        prev = earlier.get(r.get("output")) if r["status"] == "skipped-existing" else None
        if prev is not None:
            r = {k: v for k, v in prev.items() if k != "timings"} | {"from_earlier_run": True}
        out.append(r)
    return out


def report_stop(stop: BatchStopped, records: list[dict], inpainter, out: Path, summary_path: Path,
                wall: float, ledger: OutputLedger | None = None) -> int:
    """Ctrl-C or a full disk mid-batch: what is written stays written (each output complete), the summary says how
    far the batch got (if the disk still takes it), and one line says what to run next."""
    def build(merged: list[dict]) -> dict:
        summary = summarize(merged, inpainter.describe(), wall)
        return summary | {"files_total": stop.total,
                          **({"stopped": str(stop.cause)} if stop.cause else {"interrupted": True})}
    try:
        merge_summary(summary_path, records, ledger, build)
        where = f"summary: {summary_path}"
    except DiskFullError:
        where = "no summary: no room for it"
    except OSError as exc:
        where = f"no summary: {exc.strerror or exc}"
    done = f"{len(stop.records)} of {stop.total} file(s) done, their outputs are in {out} ({where})"
    rest = "run the same command with --skip-existing to do the rest"
    if stop.cause:
        print(f"mask2face remove: error: {stop.cause}; {done}. Then {rest}.", file=sys.stderr)
        return 2
    print(f"mask2face remove: interrupted; {done}. To finish, {rest}.", file=sys.stderr)
    return 130


def blend_of(args) -> dict:
    """The paste settings the flags ask for (--mask-threshold, --min-change); the rest as the model file says."""
    given = {"min_change": getattr(args, "min_change", None),
             "min_mask_probability": getattr(args, "mask_threshold", None)}
    return {k: v for k, v in given.items() if v is not None}


def classifier_of(args) -> str | Path | None:
    """--classifier: the shipped one (default), a .tflite, or none (the model's own mask gates decide alone)."""
    name = getattr(args, "classifier", None) or "default"
    return None if str(name).lower() == "none" else name


def max_file_bytes(args) -> int:
    """--max-file-mb in bytes (default safeio.MAX_FILE_BYTES)."""
    mb = getattr(args, "max_file_mb", None)
    return MAX_FILE_BYTES if mb is None else int(mb) << 20


def _quiet_opencv() -> None:
    """OpenCV prints its own [ERROR]/[WARN] lines for videos it cannot open and cameras that are missing; the CLI
    says the same in one line per file, so keep only fatal ones (library users keep OpenCV's default)."""
    import cv2
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is not None:
        log.setLogLevel(log.LOG_LEVEL_FATAL)


def cli_main(cfg, args) -> int:
    inputs = list(getattr(args, "inputs", None) or [])
    camera = getattr(args, "camera", None)
    if not inputs and camera is None:
        raise Mask2FaceError("nothing to do: give images, folders or videos (mask2face remove photo.jpg --out out/) "
                             "or a camera (--camera 0)")
    if args.out is None:
        raise Mask2FaceError("--out DIR is required: results are written there and inputs are never modified")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise Mask2FaceError(f"--out {out} is a file: give a folder (it is created if missing)")
    _quiet_opencv()
    inpainter = Inpainter.from_file(args.model, delegate=args.delegate, threads=args.threads, blend=blend_of(args),
                                    detector_threads=getattr(args, "detector_threads", None),
                                    classifier=classifier_of(args))
    out.mkdir(parents=True, exist_ok=True)   # fails at once (one line) rather than once per photo
    if not os.access(out, os.W_OK | os.X_OK):
        raise Mask2FaceError(f"cannot write to {out}: choose an --out folder you may write to")
    bar = _tqdm()
    t0 = time.perf_counter()
    chunk = getattr(args, "chunk", None)
    chunk = CHUNK if chunk is None else chunk   # run_batch and process_stream treat anything below 1 as 1
    summary_path = Path(args.summary) if getattr(args, "summary", None) else out / "summary.json"
    skip_existing = bool(getattr(args, "skip_existing", False))
    redetect_every = getattr(args, "redetect_every", None) or REDETECT_EVERY
    earlier = earlier_records(summary_path) if skip_existing else {}
    jobs = collect(inputs, out, summary_path)   # refuses outputs on inputs, on each other or on the summary
    ledger = OutputLedger(out)
    try:
        records = run_batch(inpainter, jobs, bar_factory=bar, chunk=chunk, skip_existing=skip_existing,
                            redetect_every=redetect_every, max_file_bytes=max_file_bytes(args), ledger=ledger,
                            overwrite=bool(getattr(args, "overwrite", False))) if jobs else []
    except BatchStopped as stop:
        return report_stop(stop, with_earlier(stop.records, earlier), inpainter, out, summary_path,
                           time.perf_counter() - t0, ledger)
    if camera is not None:
        try:
            records.append(process_camera(inpainter, camera, out, bar_factory=bar, redetect_every=redetect_every))
        except Mask2FaceError as exc:
            if not inputs:   # the camera was the whole job: one line, exit 2, no summary of nothing
                raise
            records.append({"file": f"camera:{camera}", "kind": "camera", "status": "error",
                            "reason": "camera", "error": str(exc)})
    records = with_earlier(records, earlier)
    wall = time.perf_counter() - t0
    # summary.json keeps the records of every run into this --out (merged by input); the lines below are this run's
    merge_summary(summary_path, records, ledger, lambda merged: summarize(merged, inpainter.describe(), wall))
    summary = summarize(records, inpainter.describe(), wall)
    t = summary["time_seconds"]
    print(f"mask2face remove: {summary['files']} file(s), {summary['faces']} face(s) found, "
          f"{summary['faces_pasted']} restored; {summary['status']}; "
          f"{t['wall']:.1f} s (detection {t['detection']:.1f}, mask decision {t.get('mask_decision', 0.0):.1f}, "
          f"model {t['model']:.1f}, blending {t['blending']:.1f}); "
          f"{inpainter.model.delegate}, {inpainter.model.threads} thread(s); summary: {summary_path}")
    for err in summary["errors"]:
        message = err["error"].removeprefix(f"{err['file']}: ")   # most messages start with the path already
        print(f"  skipped {err['file']}: {message}", file=sys.stderr)
    return 1 if summary["errors"] else 0
