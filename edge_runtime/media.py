"""Photos, folders, video files and cameras through an Inpainter; one record per file for the summary.

Inputs are only read. Every output appears atomically (temp file beside it, then rename). A file that cannot be
used is reported and the batch goes on; a photo without a face is copied through unchanged (byte for byte).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from .errors import DiskFullError, ImageError, Mask2FaceError
from .inpaint import check_image
from .ledger import FINISHED, OutputLedger, OutputTakenError, signals_deferred
from .safeio import (MAX_FILE_BYTES, TEMP_PREFIX, atomic_write, decode_image, in_source_layout, is_link_loop,
                     missing_message, plain_permissions, read_bytes, resolved, save_image)
from .track import REDETECT_EVERY, FaceTracker

IMAGE_EXTS = {".jpg", ".jpeg", ".png"}
# Images we do not read: in a folder they are listed as errors that say to convert them, not silently left out.
OTHER_IMAGE_EXTS = {".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".heif", ".jp2"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm"}
# Containers OpenCV's bundled FFmpeg writes without extra codecs; others are written as .mp4.
FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}
# Photos (or video frames) per Inpainter.remove_many pass: the model then runs warm on all their faces back to back
# instead of cold after each photo's detection. 8 decoded 12 MP photos hold ~290 MB; --chunk 1 for tight memory.
CHUNK = 8
BATCH_ERRORS = (Mask2FaceError, OSError, cv2.error, ValueError)


class MediaError(Mask2FaceError):
    """An input that is not a usable image or video (the batch goes on)."""


class BatchStopped(Exception):
    """A batch stopped before its end: by Ctrl-C (`cause` None) or a full disk (`cause` the DiskFullError).
    `records` are the files finished (written) before it, of `total`."""

    def __init__(self, records: list[dict], total: int, cause: DiskFullError | None = None):
        super().__init__(str(cause) if cause else f"interrupted after {len(records)} of {total} file(s)")
        self.records = records
        self.total = total
        self.cause = cause


@contextlib.contextmanager
def opencv_path(path: str | os.PathLike):
    """A name OpenCV's video I/O can take for `path`. OpenCV converts the Python str to UTF-8 and crashes the process
    on a name that is not valid UTF-8 (bytes Linux allows: `clip_\xe9.mp4` from an old camera or a Latin-1 system);
    such a path is given as an ASCII symbolic link in a private temporary folder (FFmpeg follows it, reading and
    writing alike)."""
    name = os.fspath(path)
    try:
        name.encode("utf-8")
        yield name
        return
    except UnicodeEncodeError:
        pass
    folder = tempfile.mkdtemp(prefix="mask2face-")
    link = os.path.join(folder, "media" + "".join(c for c in Path(name).suffix if c.isascii() and c.isalnum()
                                                  or c == "."))
    try:
        os.symlink(os.fsencode(os.path.abspath(name)), os.fsencode(link))
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def kind_of(path: Path) -> str | None:
    ext = path.suffix.lower()
    return "image" if ext in IMAGE_EXTS else "video" if ext in VIDEO_EXTS else None


def collect(inputs: Iterable[Path], out_dir: Path, summary: Path | None = None) -> list[tuple[Path, Path, str]]:
    """(input, output, kind) for every image/video in `inputs`; folders are walked recursively and mirrored
    under OUT/<folder name>/. Hidden files, the output folder and the folder this input's outputs go to are
    skipped (with --out equal to an input folder, a second run must not take the first run's outputs as inputs).
    Images in formats we do not read become "unknown" jobs, so the summary lists them. Outputs (and `summary`)
    are checked before any work (check_outputs)."""
    out_dir = resolved(out_dir)
    jobs: list[tuple[Path, Path, str]] = []
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            mirror = out_dir / resolved(item).name
            unreadable: list[OSError] = []
            for root, dirs, files in os.walk(item, onerror=unreadable.append):
                dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                                 and resolved(Path(root, d)) not in (out_dir, mirror))
                for name in sorted(files):
                    p = Path(root) / name
                    k = kind_of(p) or ("unknown" if p.suffix.lower() in OTHER_IMAGE_EXTS else None)
                    if not name.startswith(".") and is_link_loop(p):
                        k = "missing"   # reported whatever its name: a loop is a mistake, not another file type
                    if k and not name.startswith("."):
                        jobs.append((p, mirror / p.relative_to(item), k))
            # a subfolder without read permission is an error record, not photos silently left out
            jobs += [(Path(e.filename), mirror / Path(e.filename).relative_to(item), "unreadable") for e in unreadable
                     if e.filename and resolved(Path(e.filename)) != resolved(item)]
            if any(e.filename and resolved(Path(e.filename)) == resolved(item) for e in unreadable):
                jobs.append((item, mirror, "unreadable"))
        elif item.exists():
            jobs.append((item, out_dir / item.name, kind_of(item) or "unknown"))
        else:
            jobs.append((item, out_dir / item.name, "missing"))
    check_outputs(jobs, summary)
    return jobs


def check_outputs(jobs: list[tuple[Path, Path, str]], summary: Path | None = None) -> None:
    """Before any work: no output (or the summary) may land on an input, on another job's output or on a folder.
    Two inputs of the same name (photos/ from two places, clip.mkv and clip.mp4) would otherwise keep only the
    last result, silently."""
    inputs = {resolved(src): src for src, _, kind in jobs if kind != "missing"}
    landing: dict[Path, Path] = {}
    for src, dst, kind in jobs:
        lands = resolved(output_path(dst, kind))
        if lands in inputs:
            raise MediaError(f"output {dst} would overwrite the input {inputs[lands]}: choose another --out folder")
        if lands in landing:
            raise MediaError(f"{landing[lands]} and {src} would both be written to {output_path(dst, kind)}: "
                             "rename one, or run them with different --out folders")
        landing[lands] = src
    if summary is not None:
        where = resolved(Path(summary))
        if where in inputs or where in landing:
            raise MediaError(f"--summary {summary} is an input or an output of this run: choose another path")
        if where.is_dir():
            raise MediaError(f"--summary {summary} is a folder: give a file path "
                             f"(e.g. {Path(summary) / 'summary.json'})")


def process_images(inpainter, jobs: list[tuple[Path, Path]], max_bytes: int = MAX_FILE_BYTES,
                   emit: Callable[[dict], None] | None = None) -> list[dict]:
    """Photos through one Inpainter.remove_many pass (detection of all, then the model on all their faces back to
    back, then blending), one record per photo in order. A file that cannot be read or processed becomes an error
    record; the others are still written. `emit` gets each record as soon as it is final, in order; an output and
    its emit happen with Ctrl-C held back, so a stopped batch has emitted exactly the outputs on disk."""
    records: list[dict | None] = [None] * len(jobs)
    emit_one = emit or (lambda record: None)
    loaded = {}
    for i, (src, dst) in enumerate(jobs):
        t0 = time.perf_counter()
        try:
            data = read_bytes(src, max_bytes)
            image = check_image(decode_image(data, name=str(src)))
        except BATCH_ERRORS as exc:
            records[i] = error_record(src, exc, "image")
            continue
        loaded[i] = (data, image, time.perf_counter() - t0)
    try:
        results = dict(zip(loaded, inpainter.remove_many([image for _, image, _ in loaded.values()])))
    except BATCH_ERRORS:
        results = None  # one photo broke the pass: go one at a time, so that the error names its own file
    for i, (src, dst) in enumerate(jobs):
        if i not in loaded:
            emit_one(records[i])
            continue
        data, image, t_read = loaded[i]
        try:
            res = results[i] if results is not None else inpainter.remove_detailed(image)
            with signals_deferred():
                records[i] = _write_photo(res, src, dst, data, t_read)
                emit_one(records[i])
        except DiskFullError as exc:  # stops the batch; what was written before stays
            exc.records = [r for r in records[:i] if r is not None] if emit is None else []
            raise
        except BATCH_ERRORS as exc:
            records[i] = error_record(src, exc, "image")
            emit_one(records[i])
    return records


def _write_photo(res, src: Path, dst: Path, data: bytes, t_read: float) -> dict:
    rec = {"file": str(src), "output": str(dst), "kind": "image", "faces": [f.to_dict() for f in res.faces],
           "pasted": res.pasted, "timings": dict(res.timings)}
    t1 = time.perf_counter()
    if res.pasted:
        save_image(dst, in_source_layout(res.image, data), like=data)
        rec["status"] = "ok"
    else:
        atomic_write(dst, data)  # nothing removed: the original bytes, not a re-encode
        rec["status"] = "no-face" if not res.faces else "no-mask"
    rec["timings"]["writing"] = time.perf_counter() - t1
    work = ("detection", "mask_decision", "model", "blending", "writing")
    rec["timings"]["total"] = t_read + sum(rec["timings"][k] for k in work)
    return rec


def _writer_path(dst: Path) -> tuple[Path, str]:
    ext = dst.suffix.lower()
    if ext not in FOURCC:
        dst = dst.with_suffix(".mp4")
        ext = ".mp4"
    return dst, FOURCC[ext]


def _frame_chunks(cap, size: int, max_frames: int | None):
    """Lists of up to `size` RGB frames read from `cap`, until it ends or `max_frames` frames were read."""
    read = 0
    while max_frames is None or read < max_frames:
        batch = []
        while len(batch) < size and (max_frames is None or read < max_frames):
            ok, bgr = cap.read()
            if not ok or bgr is None:
                if batch:
                    yield batch
                return
            batch.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            read += 1
        yield batch


def process_stream(inpainter, cap, dst: Path, fps: float, label: str, max_frames: int | None = None,
                   progress: Callable[[int], None] | None = None, chunk: int = CHUNK,
                   redetect_every: int = REDETECT_EVERY, emit: Callable[[dict], None] | None = None) -> dict:
    """Frames from an open cv2.VideoCapture through the inpainter into `dst` (atomic), same fps and size, `chunk`
    frames per Inpainter.remove_many pass (1 for a live camera: each frame is written as soon as it is read). Faces
    are followed from frame to frame (track.FaceTracker), with the full detector every `redetect_every` frames
    (1: on every frame). `emit` gets the record as the video takes its name (Ctrl-C held back in between)."""
    dst, fourcc = _writer_path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=dst.suffix, dir=dst.parent)
    os.close(fd)
    timings = {"detection": 0.0, "mask_decision": 0.0, "model": 0.0, "blending": 0.0}
    frames = faces = pasted = 0
    tracker = FaceTracker(inpainter.detector, redetect_every) if redetect_every > 1 else None
    writer = None
    t0 = time.perf_counter()
    links = contextlib.ExitStack()   # the writer's name for `tmp` lives as long as the writer
    try:
        for batch in _frame_chunks(cap, max(1, chunk), max_frames):
            if writer is None:
                h, w = batch[0].shape[:2]
                writer = cv2.VideoWriter(links.enter_context(opencv_path(tmp)), cv2.VideoWriter_fourcc(*fourcc),
                                         fps, (w, h))
                if not writer.isOpened():
                    raise MediaError(f"cannot write video {dst} ({fourcc}); use an .mp4 or .avi output")
            for res in inpainter.remove_many(batch, detector=tracker):
                writer.write(cv2.cvtColor(res.image, cv2.COLOR_RGB2BGR))
                for k in timings:
                    timings[k] += res.timings[k]
                frames += 1
                faces += len(res.faces)
                pasted += res.pasted
                if progress:
                    progress(1)
        if writer is None:
            raise MediaError(f"{label}: no frames could be read (unsupported codec or empty video)")
        writer.release()
        writer = None
        check_video(tmp, frames, dst)
        plain_permissions(tmp)
        timings["total"] = time.perf_counter() - t0
        record = {"file": label, "output": str(dst), "kind": "video", "status": "ok", "frames": frames, "fps": fps,
                  "faces_found": faces, "pasted": pasted, "redetect_every": max(1, redetect_every),
                  "full_detections": tracker.full_detections if tracker else frames, "timings": timings}
        with signals_deferred():
            os.replace(tmp, dst)
            if emit:
                emit(record)
    finally:
        if writer is not None:
            writer.release()
        links.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    return record


def check_video(path: str, frames: int, dst: Path) -> None:
    """cv2.VideoWriter fails silently (a full disk, a codec that gives up): before the file takes its final name,
    check that it opens and holds every frame written."""
    with opencv_path(path) as name:
        cap = cv2.VideoCapture(name)
    held = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
    cap.release()
    if held == frames:
        return
    if shutil.disk_usage(dst.parent).free < 1 << 20:
        raise DiskFullError(f"disk full while writing {dst}: free some space in {dst.parent}")
    raise MediaError(f"{dst}: the video was not written completely ({held} of {frames} frames readable); "
                     "try an .avi output")


def open_video(src: Path):
    with opencv_path(src) as name:   # FFmpeg opens the file here; the link may go once it is open
        cap = cv2.VideoCapture(name)
    if not cap.isOpened():
        cap.release()
        raise MediaError(f"{src}: cannot open the video (unsupported codec or not a video)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not fps or not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = 25.0  # some containers carry no frame rate; a sane default keeps the file playable
    return cap, float(fps), int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)


def process_video(inpainter, src: Path, dst: Path, bar_factory=None, chunk: int = CHUNK,
                  redetect_every: int = REDETECT_EVERY, emit: Callable[[dict], None] | None = None) -> dict:
    cap, fps, count = open_video(src)
    try:
        bar = bar_factory(total=count or None, desc=src.name, unit="frame", leave=False) if bar_factory else None
        try:
            return process_stream(inpainter, cap, dst, fps, str(src), progress=bar.update if bar else None,
                                  chunk=chunk, redetect_every=redetect_every, emit=emit)
        finally:
            if bar:
                bar.close()
    finally:
        cap.release()


def process_camera(inpainter, index: int, out_dir: Path, max_frames: int | None = None, bar_factory=None,
                   redetect_every: int = REDETECT_EVERY) -> dict:
    """Camera `index` into OUT/camera-<index>.mp4 until Ctrl-C (or `max_frames`); the finished part is kept."""
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        cap.release()
        raise MediaError(f"camera {index} cannot be opened: check the index (--camera 0 is the first camera) "
                         "and that no other program uses it")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = float(fps) if fps and 0 < fps <= 240 else 30.0
    bar = bar_factory(desc=f"camera {index} (Ctrl-C stops)", unit="frame") if bar_factory else None

    # Ctrl-C ends the recording, not the program: the frames so far are written out.
    wrapped = _InterruptibleCapture(cap)
    try:
        return process_stream(inpainter, wrapped, Path(out_dir) / f"camera-{index}.mp4", fps, f"camera:{index}",
                              max_frames=max_frames, progress=bar.update if bar else None, chunk=1,
                              redetect_every=redetect_every)
    finally:
        cap.release()
        if bar:
            bar.close()


class _InterruptibleCapture:
    """cap.read() that reports end-of-stream on Ctrl-C, so the video so far is finalised."""

    def __init__(self, cap):
        self.cap = cap

    def read(self):
        try:
            return self.cap.read()
        except KeyboardInterrupt:
            return False, None


def error_record(src: Path, exc: BaseException, kind: str) -> dict:
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return {"file": str(src), "kind": kind, "status": "error", "reason": reason, "error": str(exc)}


def output_path(dst: Path, kind: str) -> Path:
    """Where a job's output really lands (a video in a container OpenCV cannot write becomes .mp4)."""
    return _writer_path(dst)[0] if kind == "video" else dst


def skip_record(src: Path, dst: Path, kind: str) -> dict:
    return {"file": str(src), "output": str(dst), "kind": kind, "status": "skipped-existing"}


def existing_output(ledger: OutputLedger | None, src: Path, lands: Path, kind: str, skip_existing: bool,
                    overwrite: bool) -> dict | None:
    """Before a job runs: None to do it, or the record it gets instead. An output made from another input (by
    another run into the same --out, at once or earlier) or one no record explains is never replaced unless
    `overwrite`; with `skip_existing` an output this input made is kept, with its earlier record (faces and all)."""
    if ledger is None:
        return skip_record(src, lands, kind) if skip_existing and lands.is_file() else None
    try:
        state, earlier = ledger.claim(src, lands, overwrite)
    except OutputTakenError as exc:
        return error_record(src, exc, kind)
    if state == "unknown":
        if skip_existing:
            return skip_record(src, lands, kind)
        return error_record(src, OutputTakenError(
            f"{lands} already exists and no record says it was made from {src}: nothing was overwritten; use "
            "--skip-existing to keep it, --overwrite to replace it, or another --out folder"), kind)
    if skip_existing and earlier is not None and lands.is_file():
        return {k: v for k, v in earlier.items() if k != "timings"} | {"from_earlier_run": True}
    return None


def run_batch(inpainter, jobs: list[tuple[Path, Path, str]], bar_factory=None, chunk: int = CHUNK,
              skip_existing: bool = False, redetect_every: int = REDETECT_EVERY,
              max_file_bytes: int = MAX_FILE_BYTES, ledger: OutputLedger | None = None,
              overwrite: bool = False) -> list[dict]:
    """Every job, in order; photos go `chunk` at a time through process_images. A failing file becomes an error
    record and the batch goes on. The bar counts files as they are finished, not as they are queued.
    `ledger` (the --out folder's records, ledger.py): an output another input made is refused unless `overwrite`,
    and every finished output's record is kept beside it at once (a run killed with SIGKILL can be resumed).
    `skip_existing`: a job whose output exists is not redone (outputs appear atomically, so an existing one is
    complete): after Ctrl-C, the same command with it does only the rest. Ctrl-C or a full disk raise
    BatchStopped with the records of the files written so far (exactly the outputs on disk); the photos of an
    unfinished chunk and a half-read video are not written."""
    records, photos = [], []
    bar = bar_factory(total=len(jobs), desc="remove", unit="file") if bar_factory else None

    def done(record: dict):
        record.setdefault("source", str(resolved(record["file"])))
        if ledger is not None and record.get("status") in FINISHED and not record.get("from_earlier_run"):
            ledger.write(record)
        records.append(record)
        if bar:
            bar.update(1)

    def flush():
        if photos:
            process_images(inpainter, photos, max_file_bytes, emit=done)
            photos.clear()

    try:
        for src, dst, kind in jobs:
            if kind in ("image", "video") and (instead := existing_output(
                    ledger, src, output_path(dst, kind), kind, skip_existing, overwrite)) is not None:
                flush()  # keep the records in input order
                done(instead)
                continue
            if kind == "image":
                photos.append((src, dst))
                if len(photos) >= max(1, chunk):
                    flush()
                continue
            flush()
            try:
                if kind == "video":
                    process_video(inpainter, src, dst, bar_factory, chunk, redetect_every, emit=done)
                elif kind == "missing":
                    done(error_record(src, MediaError(missing_message(src)), kind))
                elif kind == "unreadable":
                    done(error_record(src, MediaError(f"{src}: folder cannot be read; check its permissions"), kind))
                elif src.suffix.lower() in OTHER_IMAGE_EXTS:
                    done(error_record(src, ImageError(
                        f"{src}: {src.suffix.lower()} images are not read; convert it to JPEG or PNG",
                        "unsupported-format"), kind))
                else:
                    done(error_record(src, MediaError(
                        f"{src}: not a supported image ({', '.join(sorted(IMAGE_EXTS))}) or video "
                        f"({', '.join(sorted(VIDEO_EXTS))})"), kind))
            except DiskFullError:
                raise
            except BATCH_ERRORS as exc:
                done(error_record(src, exc, kind))
        flush()
    except KeyboardInterrupt:
        raise BatchStopped(records, len(jobs)) from None
    except DiskFullError as exc:
        raise BatchStopped(records + getattr(exc, "records", []), len(jobs), exc) from None
    finally:
        if bar:
            bar.close()
    return records


def summarize(records: list[dict], model_info: dict, wall_seconds: float) -> dict:
    timings = {"detection": 0.0, "mask_decision": 0.0, "model": 0.0, "blending": 0.0, "writing": 0.0}
    for r in records:
        for k in timings:
            timings[k] += r.get("timings", {}).get(k, 0.0)
    status = {}
    for r in records:
        status[r["status"]] = status.get(r["status"], 0) + 1
    # photos list their faces; videos count them over all frames ("faces" was that count in older summaries, and an
    # earlier summary's records come back with --skip-existing)
    faces = sum(len(f) if isinstance(f := r.get("faces", 0), list) else int(f or 0) for r in records)
    faces += sum(int(r.get("faces_found", 0)) for r in records)
    return {"files": len(records), "status": status, "faces": faces,
            "faces_pasted": sum(r.get("pasted", 0) for r in records),
            "errors": [{"file": r["file"], "reason": r["reason"], "error": r["error"]}
                       for r in records if r["status"] == "error"],
            "time_seconds": {"wall": wall_seconds, **timings}, "model": model_info, "records": records}
