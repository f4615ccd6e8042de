"""`mask2face demo`: two pictures made from the astronaut photo that ships with scikit-image (public domain,
NASA), so they can be committed:

    mask2face demo --out docs/images        # -> docs/images/mask_types.png, docs/images/before_after.png

mask_types.png: rows are mask types, columns are poses (the photo is rotated and scaled about the face to simulate
tilt and distance). Landmarks are found once with dlib on the upright photo and moved with the same transform, so
every tile shows the renderer, not detector noise.

before_after.png: the whole 512x512 photo wearing a generated mask goes through the shipped models exactly as
`mask2face remove` runs them (detect, align, inpaint, paste back); the tiles are cut around the face afterwards.
Each row says the masked PSNR (over the drawn mask, photo pixels) of the input and of each output.
`--compare LABEL=MODEL.tflite` adds a column for another model, pasted back as `mask2face remove` pastes it (the
paste settings the file carries, this version's where it names none), deciding with `--compare-classifier
C.tflite` (default: the shipped classifier), e.g. 0.6.0's default: `git show
v0.6.0:edge_runtime/assets/mask2face_default.tflite > 0.6.0.tflite` and `--compare 0.6.0=0.6.0.tflite`
(0.7.0's classifier is 0.6.0's; an older one: `git show COMMIT:edge_runtime/assets/mask2face_mask_classifier.tflite`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

POSES = ((0.0, 1.0), (-22.0, 1.0), (15.0, 0.8), (30.0, 1.15), (-10.0, 0.65))   # (roll degrees, scale)
TILE = 160
BEFORE_AFTER_TYPES = ("surgical", "cloth", "n95", "gaiter", "none")   # "none": the bare photo, to be left alone
BEFORE_AFTER_MODELS = (("default", "default"),)   # (column label, model name or .tflite path)
FACE_CUT = 2.2      # before/after tiles: half the side of the square cut, in eye distances


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (len(text) * 8 + 6, 16), (255, 255, 255), -1)
    cv2.putText(out, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def _astronaut_landmarks() -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 photo, dlib 68 landmarks) of skimage.data.astronaut()."""
    from skimage import data as skdata
    from mask2face.edge_runtime.errors import Mask2FaceError
    from mask2face.train import faces

    image = skdata.astronaut()
    det = faces.detect(image, "cascade")
    if det.landmarks is None:
        raise Mask2FaceError("no face found in skimage.data.astronaut(); is dlib installed correctly?")
    return image, det.landmarks.astype(np.float64)


def before_after(models: tuple[tuple[str, str], ...] = BEFORE_AFTER_MODELS, types: tuple[str, ...] =
                 BEFORE_AFTER_TYPES, seed: int = 7, compare: tuple[tuple[str, str], ...] = (),
                 compare_classifier: str = "default") -> tuple[np.ndarray, list[dict]]:
    """RGB uint8 sheet (rows: mask types; columns: masked | each model's output | original) and one record per row
    with the masked PSNR of the input and of each model's output, each model's mask probability for the face and
    whether it pasted one. Type "none" is the bare photo: the mask decision should leave it as it is. `compare`
    models (label, path) come first, decided by `compare_classifier`."""
    from mask2face.train.metrics import psnr   # over the mask's pixels when given one
    from mask2face.edge_runtime import align
    from mask2face.edge_runtime.inpaint import Inpainter
    from mask2face.train import masks

    image, lm = _astronaut_landmarks()
    inpainters = {label: Inpainter.from_file(path, classifier=compare_classifier) for label, path in compare}
    inpainters.update({label: Inpainter.from_file(path) for label, path in models})
    le, re = align.eye_centers_from_68(lm)
    half = FACE_CUT * float(np.linalg.norm(re - le))
    cx, cy = (le + re) / 2 + np.array([0.0, 0.6 * np.linalg.norm(re - le)])
    y0, x0 = int(max(0, cy - half)), int(max(0, cx - half))
    cut = (slice(y0, y0 + int(2 * half)), slice(x0, x0 + int(2 * half)))
    rows, records = [], []
    for i, kind in enumerate(types):
        if kind == "none":
            masked, record = image, {"mask": "none"}
            tiles = [_label(masked[cut], "no mask")]
        else:
            masked, region, _ = masks.render(image, lm, kind, seed + i)
            record = {"mask": kind, "masked_psnr_input": round(psnr(masked, image, region), 2)}
            tiles = [_label(masked[cut], f"{kind} {record['masked_psnr_input']:.1f} dB")]
        for name, inpainter in inpainters.items():
            result = inpainter.remove_detailed(masked)
            p = max((f.mask_probability for f in result.faces if f.mask_probability is not None), default=None)
            record[f"mask_probability_{name}"] = None if p is None else round(p, 3)
            record[f"pasted_{name}"] = result.pasted
            odds = "" if p is None else f" p={p:.2f}"
            if kind != "none":
                record[f"masked_psnr_{name}"] = round(psnr(result.image, image, region), 2)
            if kind == "none" or not result.pasted:
                text = f"{name}: {'restored' if result.pasted else 'left alone'}{odds}"
            else:
                text = f"{name} {record[f'masked_psnr_{name}']:.1f} dB{odds}"
            tiles.append(_label(result.image[cut], text))
        tiles.append(_label(image[cut], "original"))
        size = min(t.shape[0] for t in tiles), min(t.shape[1] for t in tiles)
        rows.append(np.concatenate([t[:size[0], :size[1]] for t in tiles], axis=1))
        records.append(record)
    return np.concatenate(rows, axis=0), records


def mask_types_sheet(seed: int = 0, types: tuple[str, ...] | None = None) -> np.ndarray:
    """RGB uint8 sheet: one row per mask type, one column per pose."""
    from mask2face.edge_runtime import align
    from mask2face.train import masks

    types = types or masks.MASK_TYPES
    image, lm = _astronaut_landmarks()
    le, re = align.eye_centers_from_68(lm)
    centre = (le + re) / 2 + np.array([0.0, 0.35 * np.linalg.norm(re - le)])  # between eyes and mouth
    rows = []
    for r, kind in enumerate(types):
        tiles = []
        for c, (angle, scale) in enumerate(POSES):
            # rotate/scale about the face, then an axis-aligned square crop of 3.2 eye distances around it
            m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
            side = 3.2 * np.linalg.norm(re - le)
            k = TILE / side
            to_tile = np.array([[k, 0, TILE / 2 - k * centre[0]], [0, k, TILE / 2 - k * centre[1]]])
            full = align.compose(to_tile, m)
            tile = cv2.warpAffine(image, full, (TILE, TILE), flags=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT101)
            pts = align.transform_points(full, lm)
            out, _, _ = masks.render(tile, pts, kind, seed * 1000 + r * 10 + c)
            tiles.append(_label(out, f"{kind} {angle:+.0f}deg x{scale:g}") if c == 0 else
                         _label(out, f"{angle:+.0f}deg x{scale:g}"))
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


def save_png(path: Path, rgb: np.ndarray) -> Path:
    """Atomic PNG write; a 256-colour palette keeps committed pictures small (~1/3 of the RGB file) at no visible
    cost when Pillow is installed."""
    from mask2face.edge_runtime import safeio
    try:
        import io
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(rgb).quantize(256, method=Image.Quantize.MAXCOVERAGE).save(buf, "PNG", optimize=True)
        return safeio.atomic_write(path, buf.getvalue())
    except ImportError:
        return safeio.save_image(path, rgb)


def _compare_entry(item: str) -> tuple[str, str]:
    """'LABEL=PATH' (or a bare PATH, labelled by its file name) -> (label, path), the file checked first."""
    from mask2face.edge_runtime.errors import Mask2FaceError

    label, sep, path = item.partition("=")
    if not sep:
        label, path = Path(item).stem, item
    if not Path(path).is_file():
        raise Mask2FaceError(f"--compare {item}: no model file {path} (expected LABEL=MODEL.tflite)")
    return label, path


def cli_main(cfg, args) -> int:
    from mask2face.edge_runtime.errors import Mask2FaceError
    classifier = getattr(args, "compare_classifier", None) or "default"
    if classifier != "default" and not getattr(args, "compare", None):
        raise Mask2FaceError("--compare-classifier decides for the --compare columns: add --compare LABEL=MODEL.tflite")
    if classifier not in ("default", "none") and not Path(classifier).is_file():
        raise Mask2FaceError(f"--compare-classifier {classifier}: no such file (a .tflite made by `mask2face "
                             "classifier`, default or none)")
    classifier = None if classifier == "none" else classifier
    out_dir = Path(getattr(args, "out", None) or "mask2face-demo")
    seed = cfg.data.seed if cfg is not None else 0
    sheet = mask_types_sheet(seed, tuple(cfg.data.mask_types) if cfg is not None else None)
    path = save_png(out_dir / "mask_types.png", sheet)
    print(f"mask2face demo: {len(sheet) // TILE} mask types x {len(POSES)} poses -> {path}")
    compare = tuple(_compare_entry(item) for item in (getattr(args, "compare", None) or []))
    sheet, records = before_after(compare=compare, compare_classifier=classifier)
    columns = [label for label, _ in compare + BEFORE_AFTER_MODELS]
    path = save_png(out_dir / "before_after.png", sheet)
    print(f"mask2face demo: masked | {' | '.join(columns)} | original, {len(records)} masks -> {path}")
    for r in records:
        print("  " + ", ".join(f"{k} {v}" for k, v in r.items()))
    return 0
