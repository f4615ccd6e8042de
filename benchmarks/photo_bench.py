"""Whole-photo quality: what `mask2face remove` gives a photo of someone wearing a mask, against the bare photo.

    python -m mask2face.benchmarks.photo_bench --data runs/cpu/data [--model M] [--photos 400] [--split test]
                                               [--align detector|landmarks|pair]

Per test pair: the pair's LFW source photo is the truth; the generator's masked crop pasted back into it
(detect_bench.rebuild_photo) is the input; the runtime restores it end to end (detect, align from the detector's
eyes, model, the feathered paste, its confidence gates). Quality is measured in photo pixels: PSNR over the drawn
mask's region (warped back from the crop), SSIM over the whole photo, and the same for the masked input itself. A
face the runtime misses, or does not paste, keeps its mask and scores like the input: the figure includes
detection and alignment, which the pair benchmarks (`mask2face bench`, `mask2face eval`) do not. `--align` splits
the cost: `landmarks` skips the detector and aligns from dlib's eye centres (the pair's 68 landmarks, the training
crop's definition without its jitter), `pair` from the generator's own crop (what the model saw as this pair). One
JSON row per run in benchmarks/results/photo_quality.jsonl.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mask2face.edge_runtime import align, detect
from mask2face.edge_runtime.errors import ImageError, Mask2FaceError
from mask2face.edge_runtime.inpaint import Inpainter
from mask2face.edge_runtime.safeio import load_image

from mask2face.train import metrics, pairs
from .common import DATA, environment, report_row, stages_arg
from .photos import iter_pairs, rebuild_photo
from .runtime_bench import blend_overrides, onto_canvas


def mask_in_photo(mask: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The pair's crop-sized mask (uint8, 255 = mask) as a boolean map of the photo's pixels."""
    h, w = shape
    warped = cv2.warpAffine(mask.astype(np.float32) / 255.0, align.invert(matrix), (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
    return warped > 0.5


def given_face(meta: dict, matrix: np.ndarray, size: int, align_by: str,
               framing: align.Framing = align.DEFAULT_FRAMING) -> list[detect.Face] | None:
    """The face to align by instead of the detector's (None: detect): a Face whose corrected eyes() are dlib's eye
    centres (`landmarks`) or the canonical eye positions of the pair's own crop (`pair`, framed by `framing`), in
    photo pixels."""
    if align_by == "detector":
        return None
    if align_by == "landmarks":
        lm = np.asarray(meta.get("landmarks") or [], np.float64).reshape(-1, 2)
        if len(lm) != 68:
            return []
        eyes_crop = np.stack(align.eye_centers_from_68(lm))
    else:
        eyes_crop = np.array(framing.eyes) * size
    left, right = align.transform_points(align.invert(matrix), eyes_crop)
    keypoints = np.zeros((6, 2), np.float32)
    keypoints[:2] = uncorrect_eyes(left, right)
    x0, y0 = np.minimum(left, right) - np.hypot(*(right - left))
    x1, y1 = np.maximum(left, right) + np.hypot(*(right - left))
    return [detect.Face((float(x0), float(y0), float(x1), float(y1)), 1.0, keypoints, "given")]


def uncorrect_eyes(left: np.ndarray, right: np.ndarray, steps: int = 20) -> np.ndarray:
    """Raw keypoints whose detect.correct_eyes are (left, right): the correction is a small similarity-invariant
    shift, so a few fixed-point steps solve it to well under 1e-6 px."""
    target = np.stack([left, right]).astype(np.float64)
    raw = target.copy()
    for _ in range(steps):
        raw += target - np.stack(detect.correct_eyes(raw[0], raw[1]))
    return raw


def photo_scores(output: np.ndarray, truth: np.ndarray, region: np.ndarray) -> dict[str, float]:
    """PSNR over the mask's region and SSIM over the photo, and what they do not see, in photo pixels: the detail
    in the region against the real face's (sharpness and structure, 1 = as sharp) and the seam at its border
    (1 = as smooth)."""
    return {"psnr_masked": metrics.psnr(output, truth, region[..., None]), "ssim": metrics.ssim(output, truth),
            "sharpness": metrics.sharpness(output, truth, region), "structure": metrics.structure(output, truth, region),
            "seam": metrics.seam(output, truth, region)}


def measure(inpainter: Inpainter, data_dir: Path, photos: int, split: str = "test",
            photos_root: Path = DATA, align_by: str = "detector", canvas: tuple[int, int] | None = None) -> dict:
    rows, skipped = [], 0
    framing = align.Framing(**pairs.data_framing(data_dir))
    for masked, mask, meta in tqdm(iter_pairs(data_dir, split, photos), total=photos or None, desc="photos",
                                   unit="photo"):
        src = Path(photos_root) / str(meta.get("source", ""))
        if meta.get("matrix") is None:
            skipped += 1
            continue
        try:
            truth = load_image(src)
        except ImageError:
            skipped += 1
            continue
        matrix = np.asarray(meta["matrix"], np.float64)
        photo = rebuild_photo(truth, masked, mask, matrix)
        region = mask_in_photo(mask, matrix, truth.shape[:2])
        if canvas:
            photo, to_canvas = onto_canvas(photo, *canvas)
            truth, _ = onto_canvas(truth, *canvas)
            region = onto_canvas(region.astype(np.float32), *canvas, interpolation=cv2.INTER_LINEAR)[0] > 0.5
            matrix = align.compose(matrix, align.invert(to_canvas))
        if not region.any():
            skipped += 1
            continue
        result = inpainter.remove_detailed(photo, given_face(meta, matrix, masked.shape[0], align_by, framing))
        rows.append({"output": photo_scores(result.image, truth, region), "input": photo_scores(photo, truth, region),
                     "pasted": result.pasted > 0, "faces": len(result.faces)})
    if not rows:
        raise Mask2FaceError(f"no usable pairs in {data_dir / split} with source photos under {photos_root}")

    def mean(side: str, key: str) -> float:
        return float(np.nanmean([r[side][key] for r in rows]))

    return {"photos": len(rows), "skipped": skipped,
            "faces_found": float(np.mean([r["faces"] > 0 for r in rows])),
            "restored": float(np.mean([r["pasted"] for r in rows])),
            "psnr_masked": mean("output", "psnr_masked"), "ssim": mean("output", "ssim"),
            "input_psnr_masked": mean("input", "psnr_masked"), "input_ssim": mean("input", "ssim"),
            "sharpness": mean("output", "sharpness"), "structure": mean("output", "structure"),
            "seam": mean("output", "seam"),
            "input_sharpness": mean("input", "sharpness"), "input_seam": mean("input", "seam")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True,
                   help="pairs folder made by `mask2face data` (e.g. runs/cpu/data)")
    p.add_argument("--model", default=None, help=".tflite, or the shipped model: default")
    p.add_argument("--photos", type=int, default=400, help="first N pairs of the split (0: all)")
    p.add_argument("--split", default="test")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--align", default="detector", choices=("detector", "landmarks", "pair"),
                   help="align by the runtime's detector (what users get), or by dlib's eyes / the pair's crop")
    p.add_argument("--canvas", default=None, metavar="WxH",
                   help="scale each photo to H rows and pad it to W columns first (e.g. 640x480, as runtime_bench)")
    p.add_argument("--variant", default="", help="a name for this run, stored in the row")
    p.add_argument("--detector-stages", type=stages_arg, default=detect.DEFAULT_STAGES,
                   help="face detector stages, comma-separated (default: the runtime's)")
    p.add_argument("--blend", action="append", default=[], metavar="FIELD=VALUE",
                   help="paste-back setting of edge_runtime.inpaint.BlendConfig to try (repeatable), e.g. "
                        "--blend dilate=0.06")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--results", type=Path, default=None, help="folder photo_quality.jsonl is appended to")
    args = p.parse_args(argv)
    canvas = tuple(int(v) for v in args.canvas.lower().split("x")) if args.canvas else None
    inpainter = Inpainter.from_file(args.model, threads=args.threads, detector_stages=args.detector_stages,
                                    blend=blend_overrides(args.blend))   # over the model file's own settings
    blend = inpainter.blend
    row = {"bench": "photo_quality", "variant": args.variant, "align": args.align,
           "detector_stages": list(args.detector_stages),
           "model": str(args.model or "default"), "model_info": inpainter.describe(),
           "blend": dataclasses.asdict(blend),
           "data": str(args.data), "split": args.split,
           "canvas": list(canvas) if canvas else None,
           **measure(inpainter, args.data, args.photos, args.split, align_by=args.align, canvas=canvas),
           **environment()}
    report_row(row, ("photos", "faces_found", "restored", "psnr_masked", "ssim", "sharpness", "structure", "seam",
                     "input_psnr_masked", "input_ssim"),
               "photo_quality.jsonl", save=not args.no_save, results=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
