"""A before|after contact sheet for judging mask removal by eye (no TensorFlow).

    python -m mask2face.benchmarks.visual_check --model student-int8.tflite \\
        --photos ../shared/data/real-masked-dev --out /tmp/grid.png [--n 48] [--seed 0]

Runs Inpainter.remove_detailed on a sample of the photos (--n of them, drawn with --seed; all if --n 0) and writes
one PNG grid: each cell is the input with the detected boxes (green: pasted, orange: detected but left untouched,
with the detector score) | the output. Beside it, OUT.json lists per photo the faces, pasted and low-confidence
counts (faces the model saw no confident mask on) and every non-pasted face's reason.

The sheet is made from the photos themselves: write it outside the repository (/tmp) and never commit it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mask2face.edge_runtime.errors import ImageError, Mask2FaceError, NoFacesError
from mask2face.edge_runtime.inpaint import Inpainter, RemoveResult
from mask2face.edge_runtime.safeio import load_image, save_image

REPO = Path(__file__).resolve().parents[1]
SUFFIXES = (".jpg", ".jpeg", ".png")
PASTED = (40, 220, 40)
SKIPPED = (255, 150, 0)
LABEL_H = 18


def pick_photos(folder: Path, n: int, seed: int) -> list[Path]:
    """`n` photos of `folder` (all if n <= 0), a seeded random sample in name order (same seed, same sheet)."""
    if not folder.is_dir():
        raise NoFacesError(f"{folder} is not a folder: pass --photos DIR with .jpg/.png photos")
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
    if not photos:
        raise NoFacesError(f"no .jpg/.png photos in {folder}")
    if 0 < n < len(photos):
        idx = np.random.default_rng(seed).choice(len(photos), size=n, replace=False)
        photos = [photos[i] for i in sorted(idx)]
    return photos


def photo_record(name: str, result: RemoveResult) -> dict:
    faces = result.faces
    weak = [f for f in faces if not f.pasted and f.reason and ("weak" in f.reason or "no mask" in f.reason)]
    return {"file": name, "faces": len(faces), "pasted": result.pasted, "low_confidence": len(weak),
            "not_pasted": len(faces) - result.pasted,
            "reasons": [f.reason for f in faces if not f.pasted],
            "scores": [round(f.score, 3) for f in faces],
            "mask_confidence": [None if f.mask_confidence is None else round(f.mask_confidence, 3) for f in faces],
            "ms": {k: round(1000 * v, 1) for k, v in result.timings.items()}}


def _fit(image: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping the aspect ratio into height x width, centred on black: (cell, scale, x offset, y offset)."""
    h, w = image.shape[:2]
    s = min(height / h, width / w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y:y + nh, x:x + nw] = small
    return out, s, x, y


def annotate(cell: np.ndarray, result: RemoveResult, scale: float, dx: int, dy: int) -> np.ndarray:
    """Each detected box (green pasted, orange not) and its score, drawn on the already shrunk input so boxes stay
    1-2 px wide whatever the photo size."""
    out = cell.copy()
    t = 2 if cell.shape[0] >= 200 else 1
    for f in result.faces:
        x0, y0, x1, y1 = (int(round(v * scale + d)) for v, d in zip(f.box, (dx, dy, dx, dy)))
        colour = PASTED if f.pasted else SKIPPED
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, t)
        cv2.putText(out, f"{f.score:.2f}", (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1,
                    cv2.LINE_AA)
    return out


def make_cell(name: str, image: np.ndarray, result: RemoveResult, height: int) -> np.ndarray:
    """[label] over [input with boxes | output], each half `height` square."""
    before, scale, dx, dy = _fit(image, height, height)
    pair = np.concatenate([annotate(before, result, scale, dx, dy), _fit(result.image, height, height)[0]], 1)
    label = np.full((LABEL_H, pair.shape[1], 3), 255, np.uint8)
    text = f"{name[:28]}  faces {len(result.faces)} pasted {result.pasted}"
    cv2.putText(label, text, (3, LABEL_H - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cell = np.concatenate([label, pair], 0)
    cell[:, -2:] = 255  # a white gutter between cells
    return cell


def grid(cells: list[np.ndarray], cols: int) -> np.ndarray:
    h, w = cells[0].shape[:2]
    rows = (len(cells) + cols - 1) // cols
    sheet = np.full((rows * h, min(cols, len(cells)) * w, 3), 255, np.uint8)
    for i, c in enumerate(cells):
        r, k = divmod(i, cols)
        sheet[r * h:(r + 1) * h, k * w:(k + 1) * w] = c
    return sheet


def outside_repository(out: Path) -> Path:
    """`out` resolved, or one line if it lies inside the repository: sheets made from photos must not be committed."""
    out = Path(out).resolve()
    if REPO == out or REPO in out.parents:
        raise Mask2FaceError(f"--out {out} is inside the repository: sheets made from photos must not be committed;"
                             " write them to /tmp")
    return out


def check_out(out: Path) -> Path:
    out = Path(out).resolve()
    if out.suffix.lower() != ".png":
        raise Mask2FaceError(f"--out {out}: the sheet is a PNG, name it ...png")
    return outside_repository(out)


def run(model: Path, photos_dir: Path, out: Path, n: int = 48, seed: int = 0, cols: int = 4, cell: int = 224,
        threads: int = 2, delegate: str = "cpu") -> list[dict]:
    """Make the sheet and its JSON; returns the per-photo records (unreadable photos get an 'error')."""
    from mask2face.runs import write_json

    out = check_out(out)
    photos = pick_photos(Path(photos_dir), n, seed)
    inpainter = Inpainter.from_file(model, delegate=delegate, threads=threads)
    records, cells = [], []
    for path in tqdm(photos, desc="visual check", unit="photo"):
        try:
            image = load_image(path)
        except ImageError as exc:
            records.append({"file": path.name, "error": str(exc)})
            continue
        result = inpainter.remove_detailed(image)
        records.append(photo_record(path.name, result))
        cells.append(make_cell(path.name, image, result, cell))
    if not cells:
        raise NoFacesError(f"none of the {len(photos)} photos in {photos_dir} could be read")
    save_image(out, grid(cells, cols))
    write_json(out.with_suffix(".json"), records)
    return records


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True, help=".tflite made by `mask2face export`")
    p.add_argument("--photos", type=Path, required=True, help="folder of .jpg/.png photos")
    p.add_argument("--out", type=Path, default=Path("/tmp/grid.png"), help="PNG sheet (JSON beside it)")
    p.add_argument("--n", type=int, default=48, help="photos to sample (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cols", type=int, default=4, help="before|after pairs per row")
    p.add_argument("--cell", type=int, default=224, help="side of each half-cell in pixels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--delegate", default="cpu", choices=("cpu", "gpu", "nnapi"))
    args = p.parse_args(argv)
    try:
        records = run(args.model, args.photos, args.out, args.n, args.seed, args.cols, args.cell, args.threads,
                      args.delegate)
    except Mask2FaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ok = [r for r in records if "error" not in r]
    totals = {k: sum(r[k] for r in ok) for k in ("faces", "pasted", "low_confidence", "not_pasted")}
    print(f"{len(ok)} photos ({len(records) - len(ok)} unreadable), {totals['faces']} faces, {totals['pasted']} pasted,"
          f" {totals['low_confidence']} low-confidence, {sum(r['faces'] == 0 for r in ok)} photos without a face")
    print(f"wrote {check_out(args.out)} and {check_out(args.out).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
