"""Restore or leave alone: how often the runtime pastes over bare faces, and how often it restores real masks.

    python -m mask2face.benchmarks.gate_bench --model M.tflite --data runs/cpu/data      # default: shipped model

The Inpainter pastes a face only if the model's predicted mask passes the blend gates (confidence, area, position,
and `min_change`: how much the model would change the region). Two photo sets, run through the whole runtime
(detection, alignment, model, gates):
- bare: the original, unmasked LFW photos of the people in a pairs folder's test split (never seen in training);
  a paste there is a false restore (the face gets altered);
- masked: ../shared/data/real-masked-dev (real masks); a photo counts as restored if at least one face is pasted.
Each face is run once with min_change=0 and its `change` is recorded, so the row also holds both shares for a sweep
of min_change values (choose the threshold from it). One JSON row per run in benchmarks/results/gate.jsonl.
No TensorFlow. The photos stay where they are; nothing made from them is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mask2face.edge_runtime.errors import ImageError
from mask2face.edge_runtime.inpaint import BlendConfig, Inpainter
from mask2face.edge_runtime.safeio import load_image

from . import pairs
from .detect_bench import DATA, environment, report_row

SWEEP = (0.0, 0.02, 0.04, 0.06, 0.08, 0.10, 0.12, 0.15)
EYE_SWEEP = (0.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0)   # min_eye_distance_px, photo pixels


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


def face_records(inpainter: Inpainter, photos: list[Path], desc: str) -> list[dict]:
    """Per photo: its faces' gate figures with min_change=0 (pasted = every other gate passed)."""
    out = []
    for path in tqdm(photos, desc=desc, unit="photo", file=sys.stderr):
        try:
            result = inpainter.remove_detailed(load_image(path))
        except ImageError as exc:
            out.append({"photo": path.name, "error": str(exc), "faces": []})
            continue
        out.append({"photo": path.name, "faces": [{"other_gates": f.pasted, "change": f.change,
                                                   "confidence": f.mask_confidence, "eye_distance": f.eye_distance}
                                                  for f in result.faces]})
    return out


def share_pasted(records: list[dict], min_change: float, min_eye_distance: float = 0.0) -> float:
    """Share of photos where at least one face would be pasted at this min_change and min_eye_distance_px."""
    hit = [any(f["other_gates"] and (f["change"] or 0.0) >= min_change
               and (f.get("eye_distance") or 0.0) >= min_eye_distance for f in r["faces"]) for r in records]
    return float(np.mean(hit)) if hit else float("nan")


def summarise(bare: list[dict], masked: list[dict], default: float, eye_default: float = 0.0) -> dict:
    return {
        "bare_photos": len(bare), "bare_with_face": sum(bool(r["faces"]) for r in bare),
        "masked_photos": len(masked), "masked_with_face": sum(bool(r["faces"]) for r in masked),
        "min_change": default, "min_eye_distance_px": eye_default,
        "bare_altered": share_pasted(bare, default, eye_default),
        "bare_left_alone": 1.0 - share_pasted(bare, default, eye_default),
        "masked_restored": share_pasted(masked, default, eye_default),
        "sweep": [{"min_change": t, "bare_altered": round(share_pasted(bare, t, eye_default), 4),
                   "masked_restored": round(share_pasted(masked, t, eye_default), 4)} for t in SWEEP],
        "eye_distance_sweep": [{"min_eye_distance_px": e, "bare_altered": round(share_pasted(bare, default, e), 4),
                                "masked_restored": round(share_pasted(masked, default, e), 4)} for e in EYE_SWEEP],
        "bare_change_quantiles": _quantiles([f["change"] for r in bare for f in r["faces"] if f["other_gates"]]),
        "masked_change_quantiles": _quantiles([f["change"] for r in masked for f in r["faces"] if f["other_gates"]]),
    }


def _quantiles(values: list) -> dict | None:
    v = np.array([x for x in values if x is not None], np.float64)
    if not len(v):
        return None
    return {f"p{q}": round(float(np.percentile(v, q)), 4) for q in (5, 25, 50, 75, 95)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None,
                   help=".tflite, or a shipped model: default | mixed (leaves bare faces alone)")
    p.add_argument("--data", type=Path, required=True, help="pairs folder whose split's source photos are the bare set")
    p.add_argument("--split", default="test")
    p.add_argument("--masked", type=Path, default=DATA / "real-masked-dev", help="folder of real masked photos")
    p.add_argument("--limit", type=int, default=0, help="at most this many photos per set (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variant", default="", help="a name for the row")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)

    bare = bare_photos(args.data, args.split, DATA, args.limit)
    masked = sorted(x for x in args.masked.iterdir() if x.suffix.lower() in (".jpg", ".jpeg", ".png")) \
        if args.masked.is_dir() else []
    masked = masked[:args.limit] if args.limit else masked
    if not bare or not masked:
        raise SystemExit(f"need bare photos (sources of {args.data}/{args.split} under {DATA}) and masked photos "
                         f"({args.masked}); found {len(bare)} and {len(masked)}")
    default = BlendConfig()
    inpainter = Inpainter.from_file(args.model, threads=args.threads,
                                    blend=dataclasses.replace(default, min_change=0.0, min_eye_distance_px=0.0))
    row = {"bench": "gate", "variant": args.variant, "model": str(args.model or "default"),
           "model_info": inpainter.model.describe(), "data": str(args.data), "split": args.split,
           **summarise(face_records(inpainter, bare, "bare"), face_records(inpainter, masked, "masked"),
                       default.min_change, default.min_eye_distance_px),
           **environment()}
    report_row(row, ("bare_photos", "bare_with_face", "bare_altered", "masked_photos", "masked_restored", "sweep",
                     "eye_distance_sweep",
                     "bare_change_quantiles", "masked_change_quantiles"), "gate.jsonl", save=not args.no_save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
