"""Does the model's crop hold the whole mask? Where the predicted mask of each restored face ends in the crop.

    python -m mask2face.benchmarks.crop_coverage --photos ../shared/data/real-masked-dev [--model M.tflite]
        [--min-eye-distance 40]

The runtime restores a face inside its aligned crop (framed as the model file says: eyes at 0.37 of the side and 0.3
of the side apart by default, at 0.30 and 0.25 for a model trained on `align.WIDE_FRAMING`): whatever
of a mask lies outside that square is never replaced, however good the model, and the paste's weight falls to 0
at the crop's border. For every face the mask decision passes (detection, screening, alignment and decision as `mask2face
remove` runs them), this records where the model's thresholded mask reaches: its lowest row and its side columns
as shares of the crop side, and whether it touches the crop's last rows or its side columns (a mask cut off by the
crop). One JSON row per run in benchmarks/results/crop_coverage.jsonl. No TensorFlow; nothing made from the photos is
written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from mask2face.edge_runtime.errors import ImageError, Mask2FaceError
from mask2face.edge_runtime.inpaint import Inpainter, RemoveResult, check_image
from mask2face.edge_runtime.safeio import load_image

from .common import environment, report_row

EDGE_SHARE = 0.03   # the last 3% of the crop's rows (4 px at 128): a mask that reaches them goes on beyond the crop


def mask_extent(mask: np.ndarray, edge: int) -> dict | None:
    """Where a boolean (S, S) mask reaches, as shares of S: its lowest row, its leftmost and rightmost column, and
    whether it touches the last `edge` rows or the outer `edge` columns. None for an empty mask."""
    if not mask.any():
        return None
    s = mask.shape[0]
    ys, xs = np.nonzero(mask)
    return {"bottom": float((ys.max() + 1) / s), "left": float(xs.min() / s), "right": float((xs.max() + 1) / s),
            "touches_bottom": bool(mask[-edge:].any()),
            "touches_side": bool(mask[:, :edge].any() or mask[:, -edge:].any())}


def face_extents(inpainter: Inpainter, image: np.ndarray, min_eye_distance: float = 0.0) -> list[dict]:
    """The mask extent of every face in `image` the runtime's mask decision would restore (its own detection,
    screening, alignment and decision: `Inpainter._crops`, the first pass of `remove_many`)."""
    edge = max(1, int(round(EDGE_SHARE * inpainter.size)))
    out = []
    for job in inpainter._crops(RemoveResult(image=check_image(image)), None, inpainter.detector):
        if job.report.eye_distance < min_eye_distance:
            continue
        pred = inpainter.model.run(job.crop[None])[0]
        extent = mask_extent(pred[..., inpainter.mask_channel] > inpainter.blend.mask_threshold, edge)
        if extent is not None:
            out.append({"eye_distance": job.report.eye_distance, **extent})
    return out


def summarize(extents: list[dict]) -> dict:
    """Counts, the shares of faces whose mask touches the crop's bottom or sides, and quantiles of where it ends."""
    if not extents:
        return {"faces": 0}
    bottom = np.array([e["bottom"] for e in extents])
    return {"faces": len(extents),
            "touches_bottom": round(float(np.mean([e["touches_bottom"] for e in extents])), 4),
            "touches_side": round(float(np.mean([e["touches_side"] for e in extents])), 4),
            "bottom_quantiles": {f"p{q}": round(float(np.percentile(bottom, q)), 4) for q in (10, 50, 90)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=Path, required=True, help="folder of photos of masked people")
    p.add_argument("--model", default=None, help=".tflite, or the shipped model (default)")
    p.add_argument("--min-eye-distance", type=float, default=0.0, help="photo pixels between the eyes")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--results", type=Path, default=None, help="folder crop_coverage.jsonl is appended to")
    args = p.parse_args(argv)
    files = sorted(f for f in args.photos.rglob("*") if f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        print(f"crop_coverage: no .jpg/.png photos in {args.photos}", file=sys.stderr)
        return 2
    try:
        inpainter = Inpainter.from_file(args.model, threads=args.threads)
        if inpainter.mask_channel is None:
            raise Mask2FaceError(f"{inpainter.model.source} predicts no mask: nothing to measure")
        extents = []
        for f in tqdm(files, desc="crop coverage", unit="photo"):
            try:
                image = load_image(f)
            except ImageError:
                continue
            extents += face_extents(inpainter, image, args.min_eye_distance)
    except Mask2FaceError as exc:
        print(f"crop_coverage: {exc}", file=sys.stderr)
        return 2
    row = {"bench": "crop_coverage", "photos": len(files), "photo_set": str(args.photos),
           "model": args.model or "default", "min_eye_distance_px": args.min_eye_distance,
           "edge_share": EDGE_SHARE, "crop": inpainter.size, "framing": inpainter.framing.to_dict(),
           **summarize(extents),
           "model_info": inpainter.describe(), **environment()}
    report_row(row, ("faces", "touches_bottom", "touches_side", "bottom_quantiles"), "crop_coverage.jsonl",
               save=not args.no_save, results=args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
