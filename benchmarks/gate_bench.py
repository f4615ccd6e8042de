"""Restore or leave alone: how often the runtime alters bare faces, and how often it restores real masks.

    python -m mask2face.benchmarks.gate_bench --bare lfw=runs/cpu/data --bare celeba=runs/celeba/data \
        --bare aaf=runs/aaf/data --bare faces-dev=runs/facesdev/data          # shipped model and classifier

Photo sets, each run through the whole runtime (detection, alignment, mask classifier, model, paste gates):
- bare: the original, unmasked photos of the people in each pairs folder's test split (never seen in training);
  a paste there is a false restore (the face gets altered);
- masked: ../shared/data/real-masked-dev (real masks, never used for training); a photo counts as restored if at
  least one face is pasted;
- annotated faces: the boxes of real-masked-dev/annotations (with mask / without / worn incorrectly), matched to
  the detected faces (IoU >= 0.4), counted per face.
Each face is run with every gate open (mask probability 0, min_change 0) and its figures are recorded, so one row
holds both shares for a sweep of thresholds (choose the defaults from it) and the per-face ROC of the decision.
One JSON row per run in benchmarks/results/gate.jsonl; `--plot` draws the curves with the chosen threshold marked.
No TensorFlow. The photos stay where they are; nothing made from them is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mask2face.edge_runtime import detect
from mask2face.edge_runtime.errors import ImageError
from mask2face.edge_runtime.inpaint import Inpainter, eye_spacing, model_blend
from mask2face.edge_runtime.safeio import load_image

from mask2face.train import pairs
from .common import DATA, environment, report_row
from .photos import read_boxes
from .runtime_bench import blend_overrides

SWEEP = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.15)
EYE_SWEEP = (0.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0)   # min_eye_distance_px, photo pixels
SPACING_SWEEP = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)          # min_eye_spacing, shares of the face box's longer side
PROBABILITY_SWEEP = tuple(round(float(t), 3) for t in np.concatenate([np.arange(0.0, 0.1, 0.02),
                                                                       np.arange(0.1, 0.9, 0.05),
                                                                       np.arange(0.9, 1.0, 0.02)]))
LABELS = {"con_mascarilla": "with_mask", "sin_mascarilla": "without_mask", "mascarilla_mal_puesta": "worn_incorrectly"}


@dataclasses.dataclass(frozen=True)
class Gates:
    """The thresholds a face must pass to be pasted (the other blend gates are recorded as `other_gates`)."""
    min_change: float = 0.0
    min_eye_distance: float = 0.0
    min_probability: float = 0.0
    min_eye_spacing: float = 0.0


def bare_photos(data_dir: Path, split: str, root: Path, limit: int) -> list[Path]:
    """Source photos of a split's pairs (one per source, in order), located under `root` (../shared/data)."""
    sources = []
    for shard in pairs.shard_paths(data_dir, split):
        for meta in pairs.read_meta(shard):
            src = meta.get("source")
            if src and src not in sources:
                sources.append(src)
    paths = [root / s for s in sources if (root / s).is_file()]
    return paths[:limit] if limit else paths


def face_records(inpainter: Inpainter, photos: list[Path], desc: str, annotations: Path | None = None) -> list[dict]:
    """Per photo: its faces' gate figures with every threshold open (pasted = every other gate passed), and, where
    `annotations` has the photo's boxes, each face's annotated label."""
    out = []
    for path in tqdm(photos, desc=desc, unit="photo", file=sys.stderr):
        try:
            result = inpainter.remove_detailed(load_image(path))
        except ImageError as exc:
            out.append({"photo": path.name, "error": str(exc), "faces": []})
            continue
        faces = [{"other_gates": f.pasted, "change": f.change, "confidence": f.mask_confidence,
                  "eye_distance": f.eye_distance, "probability": f.mask_probability, "box": f.box}
                 for f in result.faces]
        record = {"photo": path.name, "faces": faces,
                  "decision_ms": 1000 * result.timings["mask_decision"] / max(1, len(faces))}
        xml = annotations / f"{path.stem}.xml" if annotations else None
        if xml is not None and xml.is_file():
            record["annotated"] = label_faces(faces, read_boxes(xml))
        out.append(record)
    return out


def label_faces(faces: list[dict], annotated: list[tuple[str, list[float]]], min_iou: float = 0.4) -> list[dict]:
    """Each annotated box, with the index of the detected face that matches it best (IoU >= min_iou) or None."""
    found = np.array([f["box"] for f in faces], np.float64).reshape(-1, 4)
    out = []
    for label, box in annotated:
        match = None
        if len(found):
            iou = detect.box_iou(np.array(box, np.float64), found)
            match = int(iou.argmax()) if iou.max() >= min_iou else None
        out.append({"label": LABELS.get(label, label), "width": box[2] - box[0], "face": match})
    return out


def passes(face: dict, gates: Gates) -> bool:
    p, eyes = face.get("probability"), face.get("eye_distance") or 0.0
    return bool(face["other_gates"] and (face["change"] or 0.0) >= gates.min_change
                and eyes >= gates.min_eye_distance
                and eye_spacing(eyes, face.get("box") or (0, 0, 0, 0)) >= gates.min_eye_spacing
                and (p is None or p >= gates.min_probability))


def share_pasted(records: list[dict], gates: Gates) -> float:
    """Share of photos where at least one face would be pasted at these thresholds."""
    hit = [any(passes(f, gates) for f in r["faces"]) for r in records]
    return float(np.mean(hit)) if hit else float("nan")


def annotated_counts(records: list[dict], gates: Gates, min_width: float = 0.0) -> dict:
    """Per annotated label: boxes (at least `min_width` px wide), how many a detected face matches, how many are
    pasted at these thresholds."""
    out: dict[str, dict] = {}
    for r in records:
        for a in r.get("annotated", []):
            if a["width"] < min_width:
                continue
            c = out.setdefault(a["label"], {"boxes": 0, "found": 0, "pasted": 0})
            c["boxes"] += 1
            if a["face"] is not None:
                c["found"] += 1
                c["pasted"] += passes(r["faces"][a["face"]], gates)
    return out


def face_scores(records: list[dict], label: str) -> list[float]:
    """The mask probability of every detected face matched to an annotated box with `label`."""
    return [r["faces"][a["face"]]["probability"] for r in records for a in r.get("annotated", [])
            if a["label"] == label and a["face"] is not None and r["faces"][a["face"]]["probability"] is not None]


def summarise(bare: dict[str, list[dict]] | list[dict], masked: list[dict], default: float,
              eye_default: float = 0.0, probability: float = 0.0, spacing_default: float = 0.0) -> dict:
    """The row's figures at the defaults, and sweeps of each threshold with the others at their default. `bare`
    maps set names to records (a bare list is one set, "bare")."""
    sets = bare if isinstance(bare, dict) else {"bare": bare}
    gates = Gates(default, eye_default, probability, spacing_default)
    every_bare = [r for records in sets.values() for r in records]

    def shares(g: Gates) -> dict:
        row = {f"{name}_altered": round(share_pasted(records, g), 4) for name, records in sets.items()}
        row["masked_restored"] = round(share_pasted(masked, g), 4)
        return row

    row = {
        "bare_photos": len(every_bare), "bare_with_face": sum(bool(r["faces"]) for r in every_bare),
        "masked_photos": len(masked), "masked_with_face": sum(bool(r["faces"]) for r in masked),
        "min_change": default, "min_eye_distance_px": eye_default, "min_mask_probability": probability,
        "min_eye_spacing": spacing_default,
        "bare_altered": share_pasted(every_bare, gates),
        "bare_left_alone": 1.0 - share_pasted(every_bare, gates),
        "masked_restored": share_pasted(masked, gates),
        "bare_sets": {name: {"photos": len(records), "with_face": sum(bool(r["faces"]) for r in records),
                             "altered": sum(any(passes(f, gates) for f in r["faces"]) for r in records)}
                      for name, records in sets.items()},
        "annotated_faces": annotated_counts(masked, gates),
        "annotated_faces_40px": annotated_counts(masked, gates, min_width=40),
        "sweep": [{"min_change": t, **shares(dataclasses.replace(gates, min_change=t))} for t in SWEEP],
        "eye_distance_sweep": [{"min_eye_distance_px": e, **shares(dataclasses.replace(gates, min_eye_distance=e))}
                               for e in EYE_SWEEP],
        "eye_spacing_sweep": [{"min_eye_spacing": e, **shares(dataclasses.replace(gates, min_eye_spacing=e)),
                               "annotated": annotated_counts(masked, dataclasses.replace(gates, min_eye_spacing=e))}
                              for e in SPACING_SWEEP],
        "probability_sweep": [{"min_mask_probability": t, **shares(dataclasses.replace(gates, min_probability=t)),
                               "annotated": annotated_counts(masked, dataclasses.replace(gates, min_probability=t))}
                              for t in PROBABILITY_SWEEP],
        "annotated_scores": {label: [round(p, 4) for p in face_scores(masked, label)] for label in LABELS.values()},
        "bare_change_quantiles": _quantiles([f["change"] for r in every_bare for f in r["faces"] if f["other_gates"]]),
        "masked_change_quantiles": _quantiles([f["change"] for r in masked for f in r["faces"] if f["other_gates"]]),
    }
    decision = [r["decision_ms"] for r in every_bare + masked
                if r.get("faces") and "decision_ms" in r and r["faces"][0].get("probability") is not None]
    if decision:
        row["decision_ms_per_face"] = _quantiles(decision)
    return row


def _quantiles(values: list) -> dict | None:
    v = np.array([x for x in values if x is not None], np.float64)
    if not len(v):
        return None
    return {f"p{q}": round(float(np.percentile(v, q)), 4) for q in (5, 25, 50, 75, 95)}


def recommended_threshold(row: dict, max_altered: float = 0.02) -> float | None:
    """The mask probability that restores the most real masked photos while every bare set keeps at most
    `max_altered` of its photos altered (the lowest such threshold on ties); None if none does."""
    names = list(row["bare_sets"])
    ok = [r for r in row["probability_sweep"] if all(r[f"{n}_altered"] <= max_altered for n in names)]
    if not ok:
        return None
    best = max(r["masked_restored"] for r in ok)
    return min(r["min_mask_probability"] for r in ok if r["masked_restored"] == best)


def half(photos: list[Path], which: str) -> list[Path]:
    """Every other photo of a sorted list ("even": the 1st, 3rd, ...; "odd": the 2nd, 4th, ...), or all."""
    return photos if which == "all" else photos[(which == "odd")::2]


def named_folder(text: str) -> tuple[str, Path]:
    """argparse type for --bare: NAME=PAIRS_FOLDER (or a folder alone, named after it)."""
    name, _, folder = text.rpartition("=")
    return (name or Path(folder).name), Path(folder)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None, help=".tflite, or the shipped model (default)")
    p.add_argument("--classifier", default="default",
                   help="mask classifier .tflite, default (shipped) or none (the model's own mask gates only)")
    p.add_argument("--bare", type=named_folder, action="append", metavar="NAME=PAIRS",
                   help="a pairs folder whose split's source photos are a bare set (repeatable)")
    p.add_argument("--data", type=Path, default=None, help="one pairs folder for the bare set (same as --bare)")
    p.add_argument("--split", default="test")
    p.add_argument("--masked", type=Path, default=DATA / "real-masked-dev", help="folder of real masked photos")
    p.add_argument("--masked-half", choices=("all", "even", "odd"), default="all",
                   help="every other masked photo only: choose thresholds on one half, report on the other")
    p.add_argument("--limit", type=int, default=0, help="at most this many photos per set (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-change", type=float, default=None, help="the row's min_change (default: the runtime's)")
    p.add_argument("--blend", action="append", default=[], metavar="FIELD=VALUE",
                   help="a BlendConfig setting over the model file's own (repeatable; the gates this bench sweeps "
                        "stay open), e.g. mirror_views=false")
    p.add_argument("--variant", default="", help="a name for the row")
    p.add_argument("--plot", type=Path, default=None, help="also draw the curves into this PNG")
    p.add_argument("--results", type=Path, default=None, help="folder the row is appended to (default: "
                   "benchmarks/results in a clone, else ./mask2face-results)")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)

    sets = list(args.bare or []) + ([(args.data.name, args.data)] if args.data else [])
    bare = {name: bare_photos(folder, args.split, DATA, args.limit) for name, folder in sets}
    masked = sorted(x for x in args.masked.iterdir() if x.suffix.lower() in (".jpg", ".jpeg", ".png")) \
        if args.masked.is_dir() else []
    masked = half(masked, args.masked_half)
    masked = masked[:args.limit] if args.limit else masked
    if not sets or not all(bare.values()) or not masked:
        raise SystemExit(f"need bare photos (sources of each --bare pairs folder's {args.split} split under {DATA}) "
                         f"and masked photos ({args.masked}); found {[len(v) for v in bare.values()]} and "
                         f"{len(masked)}")
    classifier = None if args.classifier == "none" else args.classifier
    # the model file's own paste settings, with the gates this bench sweeps opened
    inpainter = Inpainter.from_file(args.model, threads=args.threads, classifier=classifier,
                                    blend={**blend_overrides(args.blend), "min_change": 0.0, "min_eye_distance_px": 0.0,
                                           "min_mask_probability": 0.0, "min_eye_spacing": 0.0})
    default = model_blend(inpainter.model)
    probability = inpainter.classifier.threshold if inpainter.classifier else 0.0
    # with the gate open, still screen as the runtime at its threshold does: a face the screening declines is
    # decided on its first eyes (below any threshold of the sweep but 0, where it is inpainted on those eyes), and
    # every other face gets the views the runtime's decision averages
    inpainter.screening_threshold = default.min_mask_probability or probability
    min_change = default.min_change if args.min_change is None else args.min_change
    t0 = time.time()
    records = {name: face_records(inpainter, photos, name) for name, photos in bare.items()}
    masked_records = face_records(inpainter, masked, "masked", annotations=args.masked / "annotations")
    row = {"bench": "gate", "variant": args.variant, "model": str(args.model or "default"),
           "model_info": inpainter.describe(),
           "classifier_info": inpainter.classifier.describe() if inpainter.classifier else None,
           "bare_data": {name: str(folder) for name, folder in sets}, "split": args.split,
           "blend": dataclasses.asdict(inpainter.blend),
           "masked_half": args.masked_half,
           **summarise(records, masked_records, min_change, default.min_eye_distance_px, probability,
                       default.min_eye_spacing),
           "seconds": round(time.time() - t0, 1), **environment()}
    row["recommended_threshold"] = recommended_threshold(row) if inpainter.classifier else None
    report_row(row, ("bare_sets", "bare_altered", "masked_photos", "masked_restored", "annotated_faces",
                     "min_change", "min_mask_probability", "decision_ms_per_face"), "gate.jsonl",
               save=not args.no_save, results=args.results)
    print(f"recommended --mask-threshold (most real masked photos restored with every bare set <= 2% altered): "
          f"{row['recommended_threshold']}")
    if args.plot:
        from .plots import decision_curves
        print(f"wrote {decision_curves(row, args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
