"""Video: the face tracker (edge_runtime.track) against the full detector on every frame, on moving real masked faces.

    python -m mask2face.benchmarks.track_bench [--photos 60] [--frames 30] [--redetect-every 10]

Clips: each annotated real-masked-dev photo (FMD, with PASCAL-VOC boxes) on a grey 640x480 frame, then `--frames`
frames of a smooth camera move: a pan of up to 60 px, a zoom of +-12% and a roll of +-6 degrees over the clip, the
face moving up to ~8 px per frame (the annotated boxes move with it). Scratch only: nothing is written to disk.
Real video adds motion blur, faces walking in and cuts, which these clips lack: the tracker finds a new face at its
next full detection (at most `--redetect-every` frames later).

Per mode (the full detector on every frame; the tracker): recall of the annotated with-mask boxes >= 40 px at
IoU >= 0.4 over all frames, false detections per frame, detection ms per frame, and end-to-end frames/s through
Inpainter.remove_many in chunks of 8, as `mask2face remove` runs a video file. For the tracker, also how far its
eyes (Face.eyes(), what the crop is aligned with) are from the full detector's on the same frame, in shares of the
full detector's eye distance, and the share of frames that ran the full detector. One row per run in
benchmarks/results/track.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mask2face.edge_runtime import align, detect
from mask2face.edge_runtime.inpaint import Inpainter
from mask2face.edge_runtime.media import CHUNK
from mask2face.edge_runtime.safeio import load_image
from mask2face.edge_runtime.track import REDETECT_EVERY, FaceTracker

from .common import DATA, environment, report_row
from .photos import WITH_MASK, annotated_photos, read_boxes, score_photo

FRAME = (640, 480)


def camera_move(t: float, width: int, height: int, phase: float) -> np.ndarray:
    """2x3 matrix of a smooth camera move at time t in [0, 1]: pan, zoom and roll about the frame's centre."""
    angle = 6.0 * np.sin(2 * np.pi * t + phase)
    scale = 1.0 + 0.12 * np.sin(np.pi * t + phase)
    m = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    m[:, 2] += 60.0 * np.array([np.sin(np.pi * t + phase), 0.5 * np.sin(2 * np.pi * t)])
    return m


def clip(photo: np.ndarray, boxes: list, frames: int, phase: float):
    """(frames, labelled boxes per frame, the move of each frame) for one photo: placed on a grey 640x480 frame,
    then moved."""
    w, h = FRAME
    scale = min(1.0, w / photo.shape[1], h / photo.shape[0])
    if scale < 1.0:
        photo = cv2.resize(photo, (int(photo.shape[1] * scale), int(photo.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    canvas = np.full((h, w, 3), 127, np.uint8)
    y0, x0 = (h - photo.shape[0]) // 2, (w - photo.shape[1]) // 2
    canvas[y0:y0 + photo.shape[0], x0:x0 + photo.shape[1]] = photo
    placed = [(label, [b[0] * scale + x0, b[1] * scale + y0, b[2] * scale + x0, b[3] * scale + y0])
              for label, b in boxes]
    out_frames, out_boxes, moves = [], [], []
    for i in range(frames):
        m = camera_move(i / max(frames - 1, 1), w, h, phase)
        out_frames.append(cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(127, 127, 127)))
        out_boxes.append([(label, box_after_move(box, m)) for label, box in placed])
        moves.append(m)
    return out_frames, out_boxes, moves


def box_after_move(box: list[float], m: np.ndarray) -> list[float]:
    """The axis-aligned box around `box`'s corners after the move."""
    x0, y0, x1, y1 = box
    corners = align.transform_points(m, [[x0, y0], [x1, y0], [x0, y1], [x1, y1]])
    return [*corners.min(0).tolist(), *corners.max(0).tolist()]


def eye_gap(face: detect.Face, reference: list[detect.Face]) -> float | None:
    """Largest distance between `face`'s corrected eyes and those of the reference face its box overlaps most
    (IoU >= 0.5), in shares of the reference's eye distance; None when no reference face overlaps."""
    if not reference:
        return None
    ious = detect.box_iou(np.array(face.box), np.array([r.box for r in reference]))
    best = int(np.argmax(ious))
    if ious[best] < 0.5:
        return None
    (l0, r0), (l1, r1) = reference[best].eyes(), face.eyes()
    scale = max(float(np.hypot(*(r0 - l0))), 1e-6)
    return max(float(np.hypot(*(l1 - l0))), float(np.hypot(*(r1 - r0)))) / scale


def jitter(eyes_per_frame: list[np.ndarray]) -> float | None:
    """How much a face's eyes, mapped back through each frame's move to the still picture, wander over the clip:
    the RMS distance of each eye from its own mean, in shares of the mean eye distance (0: a steady crop). None
    below 5 frames."""
    if len(eyes_per_frame) < 5:
        return None
    eyes = np.array(eyes_per_frame)                     # (frames, 2 eyes, 2)
    spread = np.sqrt(((eyes - eyes.mean(0)) ** 2).sum(-1).mean())
    return float(spread / max(np.hypot(*(eyes[:, 1] - eyes[:, 0]).T).mean(), 1e-6))


def still_eyes(face: detect.Face, move: np.ndarray) -> np.ndarray:
    """`face`'s corrected eyes mapped back through a frame's move to the still picture."""
    return align.transform_points(align.invert(move), np.array(face.eyes()))


def frames_per_s(inpainter: Inpainter, clips: list[list[np.ndarray]], redetect_every: int | None) -> float:
    """End to end through remove_many in chunks of CHUNK frames, a new tracker per clip (None: no tracker)."""
    seconds, count = 0.0, 0
    for frames in clips:
        tracker = FaceTracker(inpainter.detector, redetect_every) if redetect_every else None
        for start in range(0, len(frames), CHUNK):
            batch = frames[start:start + CHUNK]
            t0 = time.perf_counter()
            inpainter.remove_many(batch, detector=tracker)
            seconds += time.perf_counter() - t0
            count += len(batch)
    return count / max(seconds, 1e-9)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=int, default=60, help="annotated real-masked-dev photos (one clip each)")
    p.add_argument("--frames", type=int, default=30, help="frames per clip")
    p.add_argument("--redetect-every", type=int, default=REDETECT_EVERY)
    p.add_argument("--max-faces", type=int, default=0,
                   help="only photos with at most this many annotated faces (0: every annotated photo)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--results", type=Path, default=None, help="folder track.jsonl is appended to")
    args = p.parse_args(argv)
    folder = DATA / "real-masked-dev"
    if not (folder / "annotations").is_dir():
        raise SystemExit(f"{folder}/annotations not found: this benchmark needs ../shared/data/real-masked-dev")
    annotated = annotated_photos(folder)
    if args.max_faces:   # e.g. 1: the selfie or doorbell camera, one face in the picture
        annotated = [q for q in annotated
                     if len(read_boxes(folder / "annotations" / (q.stem + ".xml"))) <= args.max_faces]
    annotated = annotated[:max(1, args.photos)]
    inpainter = Inpainter.from_file(None, threads=args.threads)
    detector = inpainter.detector
    clips, truth, moves = [], [], []
    for k, path in enumerate(annotated):
        frames, boxes, moved = clip(load_image(path), read_boxes(folder / "annotations" / (path.stem + ".xml")),
                             args.frames, phase=k * 0.7)
        clips.append(frames)
        truth.append(boxes)
        moves.append(moved)
    modes = {"full": {"hits": 0, "boxes": 0, "false": 0, "seconds": [], "jitter": []},
             "tracked": {"hits": 0, "boxes": 0, "false": 0, "seconds": [], "jitter": [], "gaps": [], "full_frames": 0}}
    for frames, boxes, moved in tqdm(list(zip(clips, truth, moves)), desc="clips", unit="clip"):
        tracker = FaceTracker(detector, args.redetect_every)
        eyes = {name: {} for name in modes}   # per mode, per annotated face: its eyes on the still picture, by frame
        for frame, labelled, move in zip(frames, boxes, moved):
            t0 = time.perf_counter()
            full = detector.detect(frame)
            t1 = time.perf_counter()
            tracked = tracker.detect(frame)
            t2 = time.perf_counter()
            for name, faces, seconds in (("full", full, t1 - t0), ("tracked", tracked, t2 - t1)):
                hit, total, wrong = score_photo([f.box for f in faces], labelled)
                m = modes[name]
                m["hits"], m["boxes"], m["false"] = m["hits"] + hit, m["boxes"] + total, m["false"] + wrong
                m["seconds"].append(seconds)
                for j, (label, box) in enumerate(labelled):
                    ious = detect.box_iou(np.array(box), np.array([f.box for f in faces]).reshape(-1, 4))
                    if label == WITH_MASK and box[2] - box[0] >= 40 and len(faces) and ious.max() >= 0.4:
                        eyes[name].setdefault(j, []).append(still_eyes(faces[int(np.argmax(ious))], move))
            modes["tracked"]["full_frames"] += tracker.last_stage != "tracked"
            modes["tracked"]["gaps"] += [g for g in (eye_gap(f, full) for f in tracked) if g is not None]
        for name in modes:
            modes[name]["jitter"] += [v for v in map(jitter, eyes[name].values()) if v is not None]
    n_frames = sum(len(c) for c in clips)
    summary = {}
    for name, m in modes.items():
        summary[name] = {"recall": m["hits"] / max(m["boxes"], 1), "recall_boxes": m["boxes"],
                         "false_per_frame": m["false"] / n_frames,
                         "eye_jitter_p50": float(np.median(m["jitter"])) if m["jitter"] else None,
                         "eye_jitter_p90": float(np.percentile(m["jitter"], 90)) if m["jitter"] else None,
                         "detection_ms_mean": 1000 * float(np.mean(m["seconds"])),
                         "frames_per_s_end_to_end": frames_per_s(inpainter, clips,
                                                                 args.redetect_every if name == "tracked" else None)}
    gaps = np.array(modes["tracked"]["gaps"] or [np.nan])
    summary["tracked"].update({
        "full_detection_share": modes["tracked"]["full_frames"] / n_frames,
        "eye_gap_vs_full_p50": float(np.nanmedian(gaps)), "eye_gap_vs_full_p95": float(np.nanpercentile(gaps, 95)),
        "eye_gap_over_0.1": float(np.nanmean(gaps > 0.1)), "faces_compared": int(np.isfinite(gaps).sum())})
    row = {"bench": "track", "clips": len(clips), "max_faces": args.max_faces or None,
           "frames_per_clip": args.frames, "frames": n_frames,
           "frame_size": list(FRAME), "redetect_every": args.redetect_every, "threads": args.threads,
           "detector_stages": list(detector.stages), "chunk": CHUNK, **summary, **environment()}
    report_row(row, ("clips", "frames", "redetect_every", "full", "tracked"), "track.jsonl",
               save=not args.no_save, results=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
