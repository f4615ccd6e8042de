"""How well the runtime finds faces on real masked photos, per detector stage; and the eye-keypoint calibration.

    python -m mask2face.benchmarks.detect_bench                       # real-masked-dev, per stage + cascade
    python -m mask2face.benchmarks.detect_bench --calibrate --n 200   # BlazeFace eyes vs dlib 68 eyes on LFW
    python -m mask2face.benchmarks.detect_bench --generated runs/cpu/data [--split test]   # rebuilt LFW photos

Measures on ../shared/data/real-masked-dev (565 photos; 150 FMD PNGs have PASCAL-VOC boxes in annotations/):
- found: share of photos where the stage finds at least one face (score >= its threshold);
- recall: share of annotated with-mask boxes >= 40 px wide matched by a detection at IoU >= 0.4 (FMD photos only).
Each stage runs on every photo (so stages can be compared and cascades computed from the same detections), then
the cascade (a stage runs only where the previous ones found nothing) is evaluated from those detections.
Rows go to benchmarks/results/detect.jsonl (one JSON object each, with the environment). No TensorFlow.

--generated DATA_DIR: the synthetic pairs of a split (train/pairs.py format) put back into their full-size
source photos (masked crop pasted through the inverse of the pair's `matrix`, its mask as alpha), then the runtime's
FaceDetector on each. A photo counts as *processed* when a detected face's corrected eyes (Face.eyes(), what the
Inpainter aligns with), mapped through `matrix`, land within --tolerance (0.15) of the crop side of the canonical
eye positions: the right face was found and would be cropped like the training pair. The row also gives the eye
offset distribution (vs the canonical positions, which includes the data's crop jitter, and vs the pair's own
dlib eye centres, which does not). Rebuilt photos live in memory only (--dump writes failures to a folder
outside the repository, for inspection).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mask2face.edge_runtime import align, detect
from mask2face.edge_runtime.errors import ImageError, Mask2FaceError
from mask2face.edge_runtime.safeio import load_image

from .common import DATA, REPO, RESULTS, append_row, environment, report_row, stages_arg  # noqa: F401
from .photos import WITH_MASK, annotated_photos, iter_pairs, read_boxes, rebuild_photo, score_photo  # noqa: F401


def collect(photos: list[Path], threads: int, stages: tuple[str, ...], floor: float) -> list[dict]:
    """Every stage on every photo, detections kept down to score `floor` (thresholds are applied later)."""
    det = detect.FaceDetector(threads=threads, min_score=floor, stages=stages)
    records = []
    for path in tqdm(photos, desc="detect", unit="photo"):
        try:
            image = load_image(path)
        except ImageError as exc:
            records.append({"file": path.name, "error": str(exc)})
            continue
        rec = {"file": path.name, "shape": list(image.shape[:2]), "stages": {}, "seconds": {}}
        for stage in stages:
            t0 = time.perf_counter()
            faces = det.run_stage(stage, image)
            rec["seconds"][stage] = time.perf_counter() - t0
            rec["stages"][stage] = [(list(f.box), f.score) for f in faces]
        records.append(rec)
    return records


def evaluate(records: list[dict], annotations: Path, cascade: list[tuple[str, float]], min_width: float = 40,
             iou: float = 0.4) -> dict:
    """found / recall / time of a cascade [(stage, threshold), ...] from collected detections."""
    found = recall_hit = recall_total = 0
    seconds = []
    per_stage_first = {s: 0 for s, _ in cascade}
    n = 0
    for rec in records:
        if "error" in rec:
            continue
        n += 1
        faces, spent = [], 0.0
        for stage, thr in cascade:
            spent += rec["seconds"][stage]
            faces = [(b, s) for b, s in rec["stages"][stage] if s >= thr]
            if faces:
                per_stage_first[stage] += 1
                break
        seconds.append(spent)
        found += bool(faces)
        xml = annotations / (Path(rec["file"]).stem + ".xml")
        if xml.exists():
            for label, box in read_boxes(xml):
                if label != WITH_MASK or box[2] - box[0] < min_width:
                    continue
                recall_total += 1
                if faces and detect.box_iou(np.array(box), np.array([b for b, _ in faces])).max() >= iou:
                    recall_hit += 1
    return {"cascade": [f"{s}@{t}" for s, t in cascade], "photos": n, "found": found / max(n, 1),
            "recall_boxes": recall_total, "recall": recall_hit / max(recall_total, 1),
            "first_found_by": per_stage_first, "ms_per_photo_mean": 1000 * float(np.mean(seconds)),
            "ms_per_photo_p50": 1000 * float(np.median(seconds))}


FACE_FREE = ("coffee", "hubble_deep_field", "coins", "chelsea", "rocket", "brick", "grass", "gravel", "moon", "page",
             "horse", "text", "checkerboard", "clock", "immunohistochemistry", "colorwheel", "logo", "retina", "cell",
             "microaneurysms", "stereo_motorcycle")   # scikit-image pictures without a human face ("camera" has one)


def face_free_images():
    """(name, RGB uint8) for the scikit-image pictures in FACE_FREE that load without extra downloads; none
    without scikit-image (an [edge] install), where the row's face_free_detections stays empty."""
    try:
        import skimage.data as sd
    except ImportError:
        print("detect_bench: scikit-image is not installed, so the face-free pictures are not checked "
              "(pip install scikit-image)", file=sys.stderr)
        return
    for name in FACE_FREE:
        try:
            im = getattr(sd, name)()
        except Exception:   # some need the optional `pooch` download helper
            continue
        im = np.asarray(im[0] if isinstance(im, tuple) else im)
        if im.dtype == bool:
            im = im.astype(np.uint8) * 255
        if im.dtype != np.uint8:
            im = (255 * (im - im.min()) / max(1e-9, float(im.max() - im.min()))).astype(np.uint8)
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, 2)
        yield name, np.ascontiguousarray(im[..., :3])


def runtime_row(photos: list[Path], folder: Path, threads: int, env: dict, variant: str = "runtime",
                centerface_threshold: float = detect.CENTERFACE_THRESHOLD,
                stages: tuple[str, ...] = detect.DEFAULT_STAGES) -> dict:
    """The runtime's own FaceDetector (the shipped cascade, exactly as `mask2face remove` runs it).
    recall_pick / recall_check: the even / odd annotated FMD photos (sorted by name); thresholds in detect.py were
    chosen on the even ones. false_per_image: detections on annotated photos matching no annotated box of any
    class at IoU >= 0.4 (FMD does not annotate every tiny background face, so this over-counts a little)."""
    det = detect.FaceDetector(threads=threads, stages=stages)
    det.centerface_threshold = centerface_threshold
    found = 0
    hits = {"pick": [0, 0], "check": [0, 0]}
    false, annotated = 0, 0
    seconds, stages = [], {}
    n = 0
    fmd = sorted(p.name for p in photos if (folder / "annotations" / (p.stem + ".xml")).exists())
    for path in tqdm(photos, desc="runtime cascade", unit="photo"):
        try:
            image = load_image(path)
        except ImageError:
            continue
        n += 1
        faces = det.detect(image)
        seconds.append(det.last_seconds)
        found += bool(faces)
        stages[det.last_stage] = stages.get(det.last_stage, 0) + 1
        xml = folder / "annotations" / (path.stem + ".xml")
        if xml.exists():
            half = "pick" if fmd.index(path.name) % 2 == 0 else "check"
            annotated += 1
            hit, boxes, wrong = score_photo([f.box for f in faces], read_boxes(xml))
            hits[half][0] += hit
            hits[half][1] += boxes
            false += wrong
    free = {name: len(det.detect(im)) for name, im in face_free_images()}
    total = hits["pick"][1] + hits["check"][1]
    return {"bench": "detect", "variant": variant, "dataset": folder.name, "cascade": ["runtime:" + "+".join(det.stages)],
            "thresholds": det.thresholds, "cross_thresholds": det.cross, "fallback_threshold": det.fallback_threshold,
            "centerface_threshold": det.centerface_threshold,
            "photos": n, "found": found / max(n, 1), "recall": (hits["pick"][0] + hits["check"][0]) / max(total, 1),
            "recall_boxes": total, "recall_pick": hits["pick"][0] / max(hits["pick"][1], 1),
            "recall_check": hits["check"][0] / max(hits["check"][1], 1),
            "false_per_image": false / max(annotated, 1), "annotated_photos": annotated,
            "face_free_detections": free, "first_found_by": {str(k): v for k, v in stages.items()},
            "ms_per_photo_mean": 1000 * float(np.mean(seconds)), "ms_per_photo_p50": 1000 * float(np.median(seconds)),
            "threads": threads, **env}


def mosaic_row(folder: Path, threads: int, env: dict, grid: int, stages: tuple[str, ...],
               variant: str = "mosaic") -> dict:
    """Small faces in big photos, which real-masked-dev (photos of at most 512 px) lacks: its annotated photos, grid
    x grid to a mosaic (each in a cell of the group's largest size, grey around), their with-mask boxes >= 40 px
    shifted with them. Recall at IoU >= 0.4 as in runtime_row, per mosaic photo time."""
    annotated = annotated_photos(folder)
    det = detect.FaceDetector(threads=threads, stages=stages)
    hits = total = false = 0
    seconds, sides = [], []
    step = grid * grid
    for start in tqdm(range(0, len(annotated), step), desc=f"mosaic {grid}x{grid}", unit="mosaic"):
        group = annotated[start:start + step]
        images = [load_image(p) for p in group]
        ch, cw = max(im.shape[0] for im in images), max(im.shape[1] for im in images)
        mosaic = np.full((grid * ch, grid * cw, 3), 127, np.uint8)
        labelled = []
        for k, (path, im) in enumerate(zip(group, images)):
            y0, x0 = (k // grid) * ch, (k % grid) * cw
            mosaic[y0:y0 + im.shape[0], x0:x0 + im.shape[1]] = im
            labelled += [(label, [box[0] + x0, box[1] + y0, box[2] + x0, box[3] + y0])
                         for label, box in read_boxes(folder / "annotations" / (path.stem + ".xml"))]
        faces = det.detect(mosaic)
        seconds.append(det.last_seconds)
        sides.append(max(mosaic.shape[:2]))
        hit, boxes, wrong = score_photo([f.box for f in faces], labelled)
        hits, total, false = hits + hit, total + boxes, false + wrong
    return {"bench": "detect", "variant": variant, "dataset": f"{folder.name} mosaic {grid}x{grid}",
            "cascade": ["runtime:" + "+".join(det.stages)], "mosaics": len(seconds),
            "mosaic_longer_side_px": [min(sides), max(sides)], "recall_boxes": total,
            "recall": hits / max(total, 1), "false_per_mosaic": false / max(len(seconds), 1),
            "ms_per_mosaic_mean": 1000 * float(np.mean(seconds)), "threads": threads, **env}


def run_detect(args) -> list[dict]:
    folder = Path(args.data or DATA / "real-masked-dev")
    if not folder.is_dir():
        raise Mask2FaceError(f"{folder} not found: put the data beside the repo (../shared/data), set "
                             "MASK2FACE_SHARED_DATA, or pass --data with real-masked-dev's layout")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if args.limit:
        photos = photos[:args.limit]
    if args.mosaic:
        env = environment()
        row = mosaic_row(folder, args.threads, env, args.mosaic, args.stages, args.variant)
        print(json.dumps({k: row[k] for k in ("cascade", "mosaics", "mosaic_longer_side_px", "recall", "recall_boxes",
                                                 "false_per_mosaic", "ms_per_mosaic_mean")}))
        return [row]
    cache = Path(args.cache) if args.cache else None
    if cache and cache.exists():
        records = json.loads(cache.read_text())
    else:
        records = collect(photos, args.threads, ("full", "padded", "tiles", "short"), floor=0.3)
        if cache:
            cache.write_text(json.dumps(records))
    cascades = [[("full", 0.5)], [("padded", 0.5)], [("tiles", 0.5)], [("short", 0.5)],
                [("full", 0.5), ("padded", 0.65)],
                [("full", 0.5), ("padded", 0.65), ("tiles", 0.65)],
                [("full", 0.5), ("padded", 0.65), ("tiles", 0.65), ("short", 0.65)],
                [("full", 0.5), ("padded", 0.5), ("tiles", 0.5), ("short", 0.5)],
                [("full", 0.4), ("padded", 0.6), ("tiles", 0.6), ("short", 0.6)]]
    env = environment()
    rows = [runtime_row(photos, folder, args.threads, env, args.variant, args.centerface_threshold, args.stages)]
    print(json.dumps({k: rows[0][k] for k in ("cascade", "found", "recall", "recall_pick", "recall_check",
                                                 "recall_boxes", "false_per_image", "face_free_detections",
                                                 "ms_per_photo_mean", "first_found_by")}))
    if args.runtime_only:
        return rows
    for c in cascades:
        row = {"bench": "detect", "variant": "per-stage", "dataset": folder.name, **evaluate(records, folder / "annotations", c), **env}
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("cascade", "found", "recall", "recall_boxes", "ms_per_photo_mean",
                                                 "first_found_by")}))
    return rows


def run_calibrate(args) -> dict:
    """BlazeFace eye keypoints vs dlib 68-landmark eye centres on LFW: mean offset in eye-distance units in the
    face frame (u along the eye line, v down), which becomes detect.EYE_CORRECTION."""
    import dlib
    import face_recognition_models as frm

    lfw = args.data or DATA / "lfw"
    if not lfw.is_dir():
        raise SystemExit(f"{lfw} not found")
    rng = np.random.default_rng(0)
    photos = sorted(lfw.rglob("*.jpg"))
    photos = [photos[i] for i in rng.choice(len(photos), size=min(args.n, len(photos)), replace=False)]
    hog = dlib.get_frontal_face_detector()
    shape = dlib.shape_predictor(frm.pose_predictor_model_location())
    # The runtime's own cascade, each face refined (detect.FaceDetector.refined: the full-range model on a cut around
    # the face and on its mirror), as the runtime refines the small faces of real photos; LFW's faces are big enough
    # that the runtime itself would mostly skip that here (REFINE_MIN_ZOOM).
    det = detect.FaceDetector(threads=args.threads, stages=args.stages, refine=not args.no_refine)
    offsets, errors_before, crop_shift = [], [], []
    for path in tqdm(photos, desc="calibrate", unit="photo"):
        image = load_image(path)
        rects = hog(image, 1)
        faces = det.detect(image)
        if len(rects) == 0 or not faces:
            continue
        # The centre face (LFW is centred on the named person) for both detectors.
        c = np.array(image.shape[1::-1]) / 2
        rect = min(rects, key=lambda r: np.hypot((r.left() + r.right()) / 2 - c[0], (r.top() + r.bottom()) / 2 - c[1]))
        face = min(faces, key=lambda f: np.hypot((f.box[0] + f.box[2]) / 2 - c[0], (f.box[1] + f.box[3]) / 2 - c[1]))
        face = face if args.no_refine else det.refined(image, face)
        pts = np.array([[p.x, p.y] for p in shape(image, rect).parts()], np.float64)
        dl, dr = align.eye_centers_from_68(pts)
        bl, br = face.raw_eyes()
        d = np.hypot(*(dr - dl))
        if np.hypot(*(bl - dl)) > 0.5 * d:  # a different face / failed landmarks
            continue
        u = (dr - dl) / d
        v = np.array([-u[1], u[0]])
        rel = [((dl - bl) @ u / d, (dl - bl) @ v / d), ((dr - br) @ u / d, (dr - br) @ v / d)]
        offsets.append(rel)
        errors_before.append((np.hypot(*(bl - dl)) + np.hypot(*(br - dr))) / (2 * d))
    off = np.array(offsets)  # (n, 2 eyes, 2 uv)
    mean = off.mean(0)
    corr = {"left": tuple(np.round(mean[0], 4)), "right": tuple(np.round(mean[1], 4))}
    after = np.hypot(*(off - mean).transpose(2, 0, 1)).mean()
    row = {"bench": "detect_calibration", "stages": list(det.stages), "refined": not args.no_refine,
           "photos_sampled": len(photos), "pairs_used": len(off),
           "mean_offset_eye_units": {"left": mean[0].tolist(), "right": mean[1].tolist()},
           "std_eye_units": {"left": off.std(0)[0].tolist(), "right": off.std(0)[1].tolist()},
           "mean_error_before": float(np.mean(errors_before)), "mean_error_after": float(after),
           "correction": corr, **environment()}
    print(json.dumps({k: row[k] for k in ("pairs_used", "mean_offset_eye_units", "std_eye_units",
                                          "mean_error_before", "mean_error_after")}, indent=1))
    return row


def write_eye_correction(model: str, row: dict, path: Path | None = None) -> Path:
    """Put a calibration row's correction for keypoint model `model` into eye_corrections.json (the runtime's; other
    models' entries kept), with how it was measured, atomically."""
    from mask2face.edge_runtime.detectors import face
    from mask2face.runs import write_bytes

    path = Path(path or face.CORRECTIONS_FILE)
    table = json.loads(path.read_text()) if path.is_file() else {}
    table[model] = {"left": [float(v) for v in row["correction"]["left"]],
                    "right": [float(v) for v in row["correction"]["right"]],
                    "measured": {"command": "python -m mask2face.benchmarks.detect_bench --calibrate "
                                           f"--stages {','.join(row['stages'])}" + ("" if row["refined"] else " --no-refine"),
                                 "pairs": row["pairs_used"], "mean_error_before": round(row["mean_error_before"], 4),
                                 "mean_error_after": round(row["mean_error_after"], 4), "created": row.get("created")}}
    write_bytes(path, (json.dumps(table, indent=2) + "\n").encode())
    return path


def eye_offsets(face: detect.Face, matrix: np.ndarray, size: int, reference: np.ndarray) -> np.ndarray:
    """Distance (in crop sides) of the face's corrected eyes, mapped into the pair's crop, from `reference`
    (2, 2) crop-pixel positions (image-left eye first). Returns (2,) one per eye."""
    eyes = align.transform_points(np.asarray(matrix, np.float64), np.stack(face.eyes()))
    return np.hypot(*(eyes - reference).T) / size


def canonical_eyes(size: int, framing: align.Framing = align.DEFAULT_FRAMING) -> np.ndarray:
    return np.array(framing.eyes, np.float64) * size


def generated_records(data_dir: Path, split: str, photos_root: Path, detector: detect.FaceDetector,
                      limit: int = 0, tolerance: float = 0.15, dump: Path | None = None) -> list[dict]:
    """One record per pair: faces found, the best face's eye offsets (canonical / landmark), processed or not."""
    from mask2face.train import pairs

    records = []
    pairs_iter = iter_pairs(data_dir, split, limit)
    framing = align.Framing(**pairs.data_framing(data_dir))
    try:
        total = pairs.dataset_info(data_dir)["counts"][split]
        total = min(total, limit) if limit else total
    except (OSError, KeyError, ValueError):
        total = limit or None
    for masked, mask, meta in tqdm(pairs_iter, total=total, desc=f"generated {split}", unit="photo"):
        size = masked.shape[0]
        rec = {"source": meta["source"]}
        try:
            photo = load_image(photos_root / meta["source"])
        except ImageError as exc:
            rec["error"] = str(exc)
            records.append(rec)
            continue
        matrix = np.asarray(meta["matrix"], np.float64)
        image = rebuild_photo(photo, masked, mask, matrix)
        faces = detector.detect(image)
        rec.update(faces=len(faces), stage=detector.last_stage, seconds=detector.last_seconds)
        lm = np.asarray(meta.get("landmarks") or np.zeros((0, 2)), np.float64).reshape(-1, 2)
        lm_eyes = np.stack(align.eye_centers_from_68(lm)) if len(lm) == 68 else None
        best = None
        for f in faces:
            off = eye_offsets(f, matrix, size, canonical_eyes(size, framing))
            if best is None or off.max() < best[1].max():
                best = (f, off)
        if best is not None:
            f, off = best
            rec.update(offset=float(off.max()), offset_eyes=off.round(4).tolist(), score=float(f.score),
                       face_stage=f.stage, processed=bool(off.max() <= tolerance),
                       extra_faces=len(faces) - 1)
            if lm_eyes is not None:
                rec["landmark_offset"] = float(eye_offsets(f, matrix, size, lm_eyes).max())
        else:
            rec.update(processed=False, extra_faces=0)
        if dump is not None and not rec["processed"]:
            from mask2face.edge_runtime.safeio import save_image
            save_image(dump / f"{len(records):04d}-{Path(meta['source']).stem}.jpg", image)
        records.append(rec)
    return records


def summarise_generated(records: list[dict], tolerance: float) -> dict:
    ok = [r for r in records if "error" not in r]
    n = len(ok)
    found = [r for r in ok if r["faces"]]
    off = np.array([r["offset"] for r in found]) if found else np.zeros(0)
    lm_off = np.array([r["landmark_offset"] for r in found if "landmark_offset" in r])
    stages: dict[str, int] = {}
    for r in ok:
        stages[str(r["stage"])] = stages.get(str(r["stage"]), 0) + 1

    def dist(a: np.ndarray) -> dict:
        if not len(a):
            return {}
        return {"mean": round(float(a.mean()), 4), "p50": round(float(np.median(a)), 4),
                "p90": round(float(np.percentile(a, 90)), 4), "max": round(float(a.max()), 4)}

    return {"photos": n, "unreadable": len(records) - n, "found": len(found) / max(n, 1),
            "processed": sum(r["processed"] for r in ok) / max(n, 1), "tolerance": tolerance,
            "offset_canonical": dist(off), "offset_landmarks": dist(lm_off),
            "photos_with_extra_faces": sum(r["extra_faces"] > 0 for r in ok),
            "first_found_by": stages,
            "ms_per_photo_mean": 1000 * float(np.mean([r["seconds"] for r in ok])) if ok else None,
            "failures": [{k: r.get(k) for k in ("source", "faces", "offset", "stage")}
                         for r in ok if not r["processed"]][:50]}


def run_generated(args) -> dict:
    data_dir = Path(args.generated)
    if args.dump:
        dump = Path(args.dump).resolve()
        if dump == REPO or REPO in dump.parents:
            raise SystemExit(f"--dump {dump} is inside the repository: images made from shared data stay out of it"
                             " (use /tmp/...)")
        dump.mkdir(parents=True, exist_ok=True)
    root = args.photos_root or DATA
    if not root.is_dir():
        raise SystemExit(f"{root} not found: the pairs' source photos are read from there (--photos-root)")
    det = detect.FaceDetector(threads=args.threads)
    records = generated_records(data_dir, args.split, root, det, args.limit, args.tolerance,
                                Path(args.dump) if args.dump else None)
    summary = summarise_generated(records, args.tolerance)
    row = {"bench": "detect", "variant": args.variant_generated, "dataset": str(data_dir), "split": args.split,
           "cascade": ["runtime:" + "+".join(det.stages)], "thresholds": det.thresholds,
           "cross_thresholds": det.cross, "fallback_threshold": det.fallback_threshold, "threads": args.threads, **summary, **environment()}
    print(json.dumps({k: v for k, v in summary.items() if k != "failures"}, indent=1))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--cache", default=None, help="JSON file for collected detections (re-evaluate without re-running)")
    p.add_argument("--calibrate", action="store_true")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--stages", type=stages_arg, default=detect.DEFAULT_STAGES,
                   help="--calibrate, --mosaic, --runtime-only: detector stages, comma-separated (e.g. centerface)")
    p.add_argument("--no-refine", action="store_true",
                   help="--calibrate: the detector's own keypoints, without the refining BlazeFace look")
    p.add_argument("--write-corrections", action="store_true",
                   help="--calibrate: also write the measured correction into the runtime's eye_corrections.json "
                        "(full_range, or centerface with --stages centerface --no-refine)")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--variant", default="confirm-v1", help="name of the runtime cascade, stored in the row")
    p.add_argument("--runtime-only", action="store_true", help="only the shipped cascade (skip per-stage rows)")
    p.add_argument("--mosaic", type=int, default=0, metavar="N",
                   help="the annotated photos N x N to a mosaic (small faces in big photos), with --stages")
    p.add_argument("--centerface-threshold", type=float, default=detect.CENTERFACE_THRESHOLD,
                   help="the runtime cascade with another CenterFace threshold (to choose it)")
    p.add_argument("--generated", type=Path, default=None, metavar="DATA_DIR",
                   help="pairs folder (e.g. runs/cpu/data): rebuild its full-size masked photos and detect on them")
    p.add_argument("--split", default="test", help="split of --generated")
    p.add_argument("--photos-root", type=Path, default=None,
                   help="where the pairs' 'source' paths are relative to (default ../shared/data)")
    p.add_argument("--tolerance", type=float, default=0.15, help="max eye offset, in crop sides, to count as processed")
    p.add_argument("--variant-generated", default="generated-lfw-test", help="variant name of the --generated row")
    p.add_argument("--dump", default=None, help="folder (outside the repo) for rebuilt photos that failed")
    p.add_argument("--results", type=Path, default=None, help=f"folder the rows are appended to (default {RESULTS})")
    args = p.parse_args(argv)
    results = args.results or RESULTS
    if args.generated:
        rows = [run_generated(args)]
        out = results / "detect.jsonl"
    elif args.calibrate:
        rows = [run_calibrate(args)]
        out = results / "detect_calibration.jsonl"
        if args.write_corrections:
            model = "centerface" if args.no_refine and set(args.stages) <= set(detect.CENTERFACE_STAGES) else "full_range"
            path = write_eye_correction(model, rows[0])
            print(f"wrote the {model} eye correction to {path}")
    else:
        rows = run_detect(args)
        out = results / "detect.jsonl"
    if not args.no_save:
        for row in rows:
            append_row(out, row)
        print(f"wrote {len(rows)} row(s) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
