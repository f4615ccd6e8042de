"""`mask2face demo`: a contact sheet of the six mask types at several head poses, made from the astronaut
photo that ships with scikit-image (public domain, NASA), so the picture can be committed:

    mask2face demo --out docs/images        # -> docs/images/mask_types.png

Rows are mask types, columns are poses (the photo is rotated and scaled about the face to simulate tilt and
distance). Landmarks are found once with dlib on the upright photo and moved with the same transform, so every
tile shows the renderer, not detector noise.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

POSES = ((0.0, 1.0), (-22.0, 1.0), (15.0, 0.8), (30.0, 1.15), (-10.0, 0.65))   # (roll degrees, scale)
TILE = 160


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (len(text) * 8 + 6, 16), (255, 255, 255), -1)
    cv2.putText(out, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def mask_types_sheet(seed: int = 0, types: tuple[str, ...] | None = None) -> np.ndarray:
    """RGB uint8 sheet: one row per mask type, one column per pose."""
    from skimage import data as skdata
    from mask2face.edge_runtime import align
    from mask2face.edge_runtime.errors import Mask2FaceError
    from mask2face.train import faces, masks

    types = types or masks.MASK_TYPES
    image = skdata.astronaut()
    det = faces.detect(image, "cascade")
    if det.landmarks is None:
        raise Mask2FaceError("no face found in skimage.data.astronaut(); is dlib installed correctly?")
    lm = det.landmarks.astype(np.float64)
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


def cli_main(cfg, args) -> int:
    from mask2face.edge_runtime import safeio

    out_dir = Path(getattr(args, "out", None) or "docs/images")
    seed = cfg.data.seed if cfg is not None else 0
    sheet = mask_types_sheet(seed, tuple(cfg.data.mask_types) if cfg is not None else None)
    # A 256-colour palette PNG keeps the committed picture small (~1/3 of the RGB file) at no visible cost.
    try:
        import io
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(sheet).quantize(256, method=Image.Quantize.MAXCOVERAGE).save(buf, "PNG", optimize=True)
        path = safeio.atomic_write(out_dir / "mask_types.png", buf.getvalue())
    except ImportError:
        path = safeio.save_image(out_dir / "mask_types.png", sheet)
    print(f"mask2face demo: {len(sheet) // TILE} mask types x {len(POSES)} poses -> {path}")
    return 0
