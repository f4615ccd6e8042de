"""Blind before|after sheets of restored faces, for judging by eye, and the tally of a review (no TensorFlow).

    python -m mask2face.benchmarks.face_sheets --model A.tflite --model B.tflite \\
        --photos ../shared/data/real-masked-dev --out /tmp/faces [--min-eye-distance 40] [--rows 6] [--seed 0]
    python -m mask2face.benchmarks.face_sheets --tally /tmp/faces/review.jsonl --key /tmp/faces/key.json

Every face that every model restores with the whole runtime (detection, mask decision, paste) and whose eyes are at
least --min-eye-distance photo pixels apart gets a numbered row: the input cut around the face box (1.3x) and each
model's output, in a random order per face, labelled A, B, C... A reviewer who sees only the sheets cannot tell
which column is which model; `key.json` beside them holds the order.

A review is JSONL, one line per face and column: {"face": 1, "column": "A", "lips": true, "nose": true,
"rim_or_seam": false, "plausible": true, "colour_blob": false, "uncanny": false} (lips and nose drawn; a line, band
or edge left where the mask was; a face at a glance; a saturated wrong-colour patch; grotesque features: oversized
dark holes for nostrils or mouth, a twisted mouth; a judgement a review leaves out counts as false). `--tally` maps columns back to models and counts
each judgement per model, with the issue's measure: lips and nose and no rim or seam.

The sheets are made from the photos: they go outside the repository and are never committed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mask2face.benchmarks.visual_check import outside_repository, pick_photos
from mask2face.edge_runtime.errors import ImageError, Mask2FaceError, NoFacesError
from mask2face.edge_runtime.inpaint import Inpainter
from mask2face.edge_runtime.safeio import load_image, save_image

JUDGEMENTS = ("lips", "nose", "rim_or_seam", "plausible", "colour_blob", "uncanny")
CELL, LABEL_W = 200, 40


def face_window(box, shape, grow: float = 1.3) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): a square `grow` times the box's longer side around its centre, clipped to the photo."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, grow * max(x1 - x0, y1 - y0) / 2
    return (int(max(0, cy - half)), int(min(shape[0], cy + half)),
            int(max(0, cx - half)), int(min(shape[1], cx + half)))


def same_face(box_a, box_b) -> bool:
    """Boxes of one face from two runs: their centres within a quarter of the box side."""
    side = max(box_a[2] - box_a[0], box_a[3] - box_a[1], 1.0)
    return (abs((box_a[0] + box_a[2]) - (box_b[0] + box_b[2])) / 2 < side / 4
            and abs((box_a[1] + box_a[3]) - (box_b[1] + box_b[3])) / 2 < side / 4)


def faces_all_restore(results, min_eye_distance: float) -> list[int]:
    """Indices into the first result's faces that are pasted, large enough, and pasted by every other model too."""
    keep = []
    for i, face in enumerate(results[0].faces):
        if not face.pasted or (face.eye_distance or 0.0) < min_eye_distance:
            continue
        if all(any(f.pasted and same_face(face.box, f.box) for f in r.faces) for r in results[1:]):
            keep.append(i)
    return keep


def column_name(k: int) -> str:
    return chr(ord("A") + k)


def face_row(number: int, crops: list[np.ndarray]) -> np.ndarray:
    """[number | input | column A | column B ...], each cell CELL px square."""
    label = np.full((CELL, LABEL_W, 3), 255, np.uint8)
    cv2.putText(label, str(number), (3, CELL // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cells = [cv2.resize(c, (CELL, CELL), interpolation=cv2.INTER_AREA if c.shape[0] > CELL else cv2.INTER_LINEAR)
             for c in crops]
    return np.concatenate([label] + cells, 1)


def header(columns: int) -> np.ndarray:
    bar = np.full((20, LABEL_W + CELL * (columns + 1), 3), 255, np.uint8)
    for k, text in enumerate(["input"] + [column_name(j) for j in range(columns)]):
        cv2.putText(bar, text, (LABEL_W + k * CELL + CELL // 2 - 12, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return bar


def make_sheets(models: list[Path], photos_dir: Path, out: Path, min_eye_distance: float = 40.0, rows: int = 6,
                seed: int = 0, limit: int = 0, threads: int = 2, blends: list[dict] | None = None) -> dict:
    """Write OUT/sheet-NNN.png and OUT/key.json; returns the key. `blends[i]`: paste settings replaced for model i
    (the same file twice with other settings compares the settings)."""
    from mask2face.runs import write_json

    out = outside_repository(out)
    if (out / "key.json").exists() or any(out.glob("sheet-*.png")):
        raise Mask2FaceError(f"{out} already holds sheets: pass an empty or new --out folder")
    photos = pick_photos(Path(photos_dir), 0, seed)   # all of them, in name order
    blends = blends or [{} for _ in models]
    inpainters = [Inpainter.from_file(m, threads=threads, classifier="default", blend=b or None)
                  for m, b in zip(models, blends)]
    rng = np.random.default_rng(seed)
    key = {"models": [str(m) + "".join(f" {k}={v}" for k, v in b.items()) for m, b in zip(models, blends)],
           "min_eye_distance": min_eye_distance, "seed": seed, "faces": []}
    sheet_rows: list[np.ndarray] = []
    out.mkdir(parents=True, exist_ok=True)
    sheets = 0

    def flush():
        nonlocal sheets
        if sheet_rows:
            sheets += 1
            save_image(out / f"sheet-{sheets:03d}.png", np.concatenate([header(len(models))] + sheet_rows, 0))
            sheet_rows.clear()

    for path in tqdm(photos, desc="face sheets", unit="photo"):
        try:
            image = load_image(path)
        except ImageError:
            continue
        results = [ip.remove_detailed(image) for ip in inpainters]
        for i in faces_all_restore(results, min_eye_distance):
            face = results[0].faces[i]
            y0, y1, x0, x1 = face_window(face.box, image.shape)
            order = [int(k) for k in rng.permutation(len(models))]   # column k shows model order[k]
            crops = [image[y0:y1, x0:x1]] + [results[m].image[y0:y1, x0:x1] for m in order]
            number = len(key["faces"]) + 1
            key["faces"].append({"face": number, "photo": path.name, "index": i,
                                 "eye_distance": round(float(face.eye_distance), 1), "columns": order})
            sheet_rows.append(face_row(number, crops))
            if len(sheet_rows) == rows:
                flush()
        if limit and len(key["faces"]) >= limit:
            break
    flush()
    if not key["faces"]:
        raise NoFacesError(f"no face in {photos_dir} is restored by every model with eyes >= {min_eye_distance} px")
    write_json(out / "key.json", key)
    return key


def read_key(key) -> tuple[list[str], dict[int, list[int]]]:
    """(model names, face number -> column order) of a key.json, or one line saying it is not one."""
    try:
        models = [str(m) for m in key["models"]]
        faces = {int(f["face"]): [int(c) for c in f["columns"]] for f in key["faces"]}
    except (TypeError, KeyError, ValueError):
        raise Mask2FaceError("--key is not a key.json written by face_sheets (models, faces with columns)") from None
    if any(sorted(order) != list(range(len(models))) for order in faces.values()):
        raise Mask2FaceError("--key: a face's column order does not name each model once")
    return models, faces


def tally(review: list[dict], key: dict) -> list[dict]:
    """Per model: faces judged and how many had each judgement, plus lips and nose with no rim or seam."""
    models, faces = read_key(key)
    counts = [{"model": m, "faces": 0, **{j: 0 for j in JUDGEMENTS}, "lips_nose_no_rim": 0} for m in models]
    for line in review:
        if not isinstance(line, dict):
            raise Mask2FaceError(f"review line {line!r}: one JSON object per face and column")
        number, column = line.get("face"), str(line.get("column", ""))
        order = faces.get(number) if isinstance(number, int) else None
        if order is None or len(column) != 1 or not 0 <= ord(column) - ord("A") < len(order):
            raise Mask2FaceError(f"review line {line}: no such face or column in the key")
        row = counts[order[ord(column) - ord("A")]]
        row["faces"] += 1
        for j in JUDGEMENTS:
            row[j] += bool(line.get(j))
        row["lips_nose_no_rim"] += bool(line.get("lips") and line.get("nose") and not line.get("rim_or_seam"))
    return counts


def tally_table(counts: list[dict]) -> str:
    lines = ["| model | faces | lips | nose | rim or seam left | **lips and nose, no rim or seam** | plausible at a "
             "glance | wrong-colour blob | uncanny |", "|---|---|---|---|---|---|---|---|---|"]
    for c in counts:
        share = 100.0 * c["lips_nose_no_rim"] / c["faces"] if c["faces"] else 0.0
        lines.append(f"| {c['model']} | {c['faces']} | {c['lips']} | {c['nose']} | {c['rim_or_seam']} | "
                     f"**{c['lips_nose_no_rim']} ({share:.1f}%)** | {c['plausible']} | {c['colour_blob']} | "
                     f"{c['uncanny']} |")
    return "\n".join(lines)


def parse_blends(items: list[str], models: int) -> list[dict]:
    """["1:chroma_limit=0.04", ...] -> one dict of float settings per model."""
    blends: list[dict] = [{} for _ in range(models)]
    for item in items:
        index, _, setting = item.partition(":")
        field, _, value = setting.partition("=")
        try:
            number, amount = int(index), float(value)
            if not 0 <= number < models or not math.isfinite(amount):
                raise ValueError(item)
            blends[number][field] = amount
        except ValueError:
            raise Mask2FaceError(f"--blend {item!r}: use INDEX:FIELD=VALUE with INDEX one of the {models} --model "
                                 "files (from 0) and a number, e.g. 1:chroma_limit=0.04") from None
    return blends


def read_jsonl(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise Mask2FaceError(f"{path}: cannot read the review ({exc}): one JSON object per line") from exc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, action="append", default=[], help=".tflite to compare (repeat)")
    p.add_argument("--photos", type=Path, help="folder of .jpg/.png photos of masked people")
    p.add_argument("--out", type=Path, default=Path("/tmp/faces"), help="folder for the sheets and key.json")
    p.add_argument("--min-eye-distance", type=float, default=40.0, help="photo pixels between the eyes")
    p.add_argument("--rows", type=int, default=6, help="faces per sheet")
    p.add_argument("--limit", type=int, default=0, help="stop after this many faces (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seeds the column order")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--blend", action="append", default=[], metavar="INDEX:FIELD=VALUE",
                   help="a paste setting for the INDEX-th --model (from 0), e.g. 1:chroma_limit=0.04")
    p.add_argument("--tally", type=Path, help="a review (JSONL) to count per model with --key")
    p.add_argument("--key", type=Path, help="the key.json written with the sheets")
    args = p.parse_args(argv)
    try:
        if args.tally:
            if not args.key:
                raise Mask2FaceError("--tally needs --key KEY.json (written beside the sheets)")
            key = json.loads(Path(args.key).read_text())   # read_key says what is wrong with it
            print(tally_table(tally(read_jsonl(args.tally), key)))
            return 0
        if not args.model or not args.photos:
            raise Mask2FaceError("pass --model FILE.tflite (one or more) and --photos DIR, or --tally with --key")
        key = make_sheets(args.model, args.photos, args.out, args.min_eye_distance, args.rows, args.seed, args.limit,
                          args.threads, parse_blends(args.blend, len(args.model)))
    except (Mask2FaceError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(key['faces'])} faces on {len(list(outside_repository(args.out).glob('sheet-*.png')))} sheets in "
          f"{outside_repository(args.out)}; the column order is in key.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
