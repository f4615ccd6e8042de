"""How masks look when worn: a generated mask restyled with real colours, shading, folds, prints and fit.

The generator (train/masks.py) draws crisp, flat-shaded masks fitted to the landmarks. Real masks ride higher and
wider, carry the face's light and shade, folds and printed graphics, and have soft edges in small photos. Both the
mask classifier (its positives) and the inpainting students (`distill.worn_mask_share`: an input restyled, the
same face as the target, so the output must not depend on the mask's colour) train on these.
"""

from __future__ import annotations

import cv2
import numpy as np

from mask2face.edge_runtime.align import DEFAULT_FRAMING, Framing


# Colours of real masks (RGB): black, charcoal, white, light grey, surgical blue and green, navy, pink, beige, khaki.
MASK_PALETTE = np.array([(25, 25, 28), (60, 60, 66), (235, 235, 232), (185, 188, 192), (150, 195, 225),
                         (150, 210, 200), (40, 50, 90), (230, 180, 195), (215, 190, 165), (150, 140, 110)],
                        np.float32)


def worn_region(inside: np.ndarray, rng: np.random.Generator, framing: Framing = DEFAULT_FRAMING) -> np.ndarray:
    """The generator's mask region (uint8 0/1, (S, S)) as real masks are worn: pulled up toward the eyes (the raised
    part stops at 0.42 of the crop, the grow below may add up to 5/128 more: the eyes sit at 0.37), wider over the
    cheeks, a little larger or smaller. The generator fits its masks to the landmarks; real ones ride higher and
    stand off the face, and a classifier that knows only the generator's outline scores many real surgical and KN95
    masks as bare. Distances are given for the default framing and scaled to `framing`'s face size."""
    s = inside.shape[0]
    scale = framing.scale
    out = inside.copy()
    up = int(rng.uniform(0.0, 0.08) * s * scale)
    if up:
        raised = np.zeros_like(out)
        raised[:-up] = out[up:]
        raised[:int(framing.from_default_y(0.42) * s)] = 0
        out |= raised
    wide = int(rng.uniform(0.0, 0.06) * s * scale)
    if wide:
        out = cv2.dilate(out, np.ones((1, 2 * wide + 1), np.uint8))
    return resized(out, int(rng.integers(-2, 6)) * s // 128)


def fitted_region(inside: np.ndarray, rng: np.random.Generator, framing: Framing = DEFAULT_FRAMING) -> np.ndarray:
    """The region cut to the lower face: inside an ellipse around the mouth (in the aligned crop, the eyes at 0.37
    of the side and 0.3 apart) about as wide as the cheeks and ending at the chin. The generator's masks and the worn
    ones reach the crop's sides and bottom; a surgical mask of the right size leaves the cheeks' edges, the jaw's
    outline and the neck in view, and a classifier that never saw one scores it as bare."""
    s = inside.shape[0]
    scale = framing.scale
    ellipse = np.zeros_like(inside)
    centre = (int(round(s * framing.from_default_x(rng.uniform(0.47, 0.53)))),
              int(round(s * framing.from_default_y(rng.uniform(0.62, 0.68)))))
    axes = (int(round(s * rng.uniform(0.25, 0.33) * scale)), int(round(s * rng.uniform(0.20, 0.26) * scale)))
    cv2.ellipse(ellipse, centre, axes, rng.uniform(-8, 8), 0, 360, 1, -1)
    out = inside & ellipse
    return out if out.sum() >= 16 else inside


def ear_loops(image: np.ndarray, inside: np.ndarray, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thin straps from the region's upper corners toward the ears (outside the region: the label does not grow)."""
    s = inside.shape[0]
    top = int(np.percentile(np.nonzero(inside)[0], 20))
    row = np.nonzero(inside[top])[0]
    if row.size == 0:
        return image
    out = image.copy()
    width = max(1, int(round(s / 128 * rng.uniform(0.8, 1.8))))
    ear_y = int(s * rng.uniform(0.40, 0.50))
    tone = tuple(float(c) for c in np.clip(colour * rng.uniform(0.8, 1.05), 0, 255))
    cv2.line(out, (int(row[0]), top), (0, ear_y), tone, width, cv2.LINE_AA)
    cv2.line(out, (int(row[-1]), top), (s - 1, ear_y), tone, width, cv2.LINE_AA)
    return out


def resized(inside: np.ndarray, grow: int) -> np.ndarray:
    """A region (uint8 0/1) grown (grow > 0) or shrunk (< 0) by a disc of |grow| px, unless that leaves under 16
    pixels: real masks come in more sizes than the generator draws."""
    if not grow:
        return inside
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(grow) + 1, 2 * abs(grow) + 1))
    changed = (cv2.dilate if grow > 0 else cv2.erode)(inside, disc)
    return changed if changed.sum() >= 16 else inside


def pleats(s: int, rng: np.random.Generator) -> np.ndarray:
    """(S, S) float32 shading of a surgical mask's horizontal folds: a dark line every few pixels, slightly tilted."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    period = rng.uniform(0.06, 0.11) * s
    y = yy + xx * rng.uniform(-0.08, 0.08)
    phase = np.mod(y - rng.uniform(0, period), period)
    return 1.0 - rng.uniform(0.1, 0.3) * np.exp(-np.square(phase / max(0.01 * s, 0.8)))


def worn_relief(s: int, rng: np.random.Generator) -> np.ndarray:
    """(S, S) float32 light and shade of a mask standing off the face: a bright ridge over the nose falling off
    toward the cheeks, wrinkles in the cloth, and often deep pleats. A classifier that saw only evenly lit masks
    takes a flat patch for a mask and a shaded, creased one (as real masks are in photos) for skin: on real photos
    blanking the middle of a white mask to its mean colour raised its probability from 0.03 to 0.9."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    centre, width = rng.uniform(0.44, 0.56) * s, rng.uniform(0.12, 0.3) * s
    ridge = np.exp(-np.square((xx - centre) / width)) - 0.5
    relief = 1.0 + rng.uniform(0.1, 0.45) * ridge + rng.uniform(-0.25, 0.25) * (yy / s - 0.65)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (s, s)).astype(np.float32), (0, 0), rng.uniform(0.015, 0.05) * s)
    relief *= 1.0 + rng.uniform(0.04, 0.16) * noise / max(float(noise.std()), 1e-6)
    if rng.random() < 0.5:
        relief *= 1.0 - (1.0 - pleats(s, rng)) * rng.uniform(1.0, 2.0)
    return np.clip(relief, 0.2, 1.6)


def graphic_print(s: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A print in a contrasting colour (shapes, lines, letters: the logos, teeth and animal faces real masks carry):
    (coverage (S, S) float32 0..1, its RGB colour)."""
    layer = np.zeros((s, s), np.uint8)
    for _ in range(int(rng.integers(1, 6))):
        kind = rng.integers(4)
        c = tuple(int(v) for v in rng.integers(int(0.15 * s), int(0.85 * s), 2))
        size = int(rng.uniform(0.03, 0.15) * s) + 1
        thick = int(rng.choice([-1, max(1, s // 64)]))
        if kind == 0:
            cv2.circle(layer, c, size, 255, thick)
        elif kind == 1:
            cv2.rectangle(layer, (c[0] - size, c[1] - size // 2), (c[0] + size, c[1] + size // 2), 255, thick)
        elif kind == 2:
            end = tuple(int(v) for v in rng.integers(0, s, 2))
            cv2.line(layer, c, end, 255, max(1, int(rng.integers(1, 4)) * s // 128))
        else:
            text = "".join(chr(int(rng.integers(65, 91))) for _ in range(int(rng.integers(1, 4))))
            cv2.putText(layer, text, c, cv2.FONT_HERSHEY_SIMPLEX, size / 20.0, 255, max(1, s // 64))
    colour = MASK_PALETTE[int(rng.integers(len(MASK_PALETTE)))] if rng.random() < 0.5 else rng.uniform(0, 255, 3)
    return layer.astype(np.float32) / 255.0, colour.astype(np.float32)


def restyle_mask(masked: np.ndarray, clean: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                 reshape: float = 0.0, fit: float = 0.0, relief: float = 0.0,
                 framing: Framing = DEFAULT_FRAMING) -> np.ndarray:
    """The worn-looking masked face alone (`restyled` without its region)."""
    return restyled(masked, clean, mask, rng, reshape, fit, relief, framing)[0]


def restyled(masked: np.ndarray, clean: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
             reshape: float = 0.0, fit: float = 0.0, relief: float = 0.0,
             framing: Framing = DEFAULT_FRAMING) -> tuple[np.ndarray, np.ndarray]:
    """The generator's flat, crisp mask made to look worn: for a `reshape` share worn higher and wider
    (`worn_region`), otherwise a little larger or smaller; a real mask's colour (or its own), the face's own light
    and shade under it, sometimes folds, a print or a graphic, fabric noise and a soft edge. Real masks are shaded
    and textured; a classifier trained on flat polygons alone scores many real black and white masks as bare."""
    inside = (mask > 127).astype(np.uint8)
    if inside.sum() < 16:
        return masked, mask
    s = masked.shape[0]
    reshaped = reshape > 0 and rng.random() < reshape   # no draw at 0: the recipe without it stays bit-exact
    if reshaped:
        inside = worn_region(inside, rng, framing)
    else:
        inside = resized(inside, int(rng.integers(-2, 6)) * s // 128)
    fitted = fit > 0 and rng.random() < fit   # no draw at 0, as for reshape
    if fitted:
        inside = fitted_region(inside, rng, framing)
    inside = inside.astype(np.float32)
    # A worn region reaches past the generator's mask, where no mask pixel gives a colour or a fold: the colour and
    # folds come from the drawn mask alone. Without reshaping they come from the resized region, skin included, as
    # the 0.2.0 classifier's examples did (kept bit-exact).
    x = masked.astype(np.float32)
    drawn = (mask > 127) if reshaped else inside > 0
    mean_mask = x[drawn].mean(axis=0)
    lum = cv2.GaussianBlur(cv2.cvtColor(clean, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 0.08 * s)
    shade = lum / max(float(lum[inside > 0].mean()), 1.0)
    shade = 1.0 + (shade - 1.0) * rng.uniform(0.5, 1.5)
    own = cv2.cvtColor(masked, cv2.COLOR_RGB2GRAY).astype(np.float32)
    own = own / max(float(own[drawn].mean()), 1.0)          # the mask's own folds and seams, kept faintly
    if reshaped:
        own[~drawn] = 1.0
    if rng.random() < 0.7:
        colour = MASK_PALETTE[int(rng.integers(len(MASK_PALETTE)))] * rng.uniform(0.85, 1.15, 3)
    else:
        colour = mean_mask
    texture = shade * (1.0 + (own - 1.0) * rng.uniform(0.2, 1.0))
    if (reshaped or fitted) and rng.random() < 0.35:
        texture = texture * pleats(s, rng)
    if relief > 0 and rng.random() < relief:   # no draw at 0, as for reshape
        texture = texture * worn_relief(s, rng)
    styled = colour * texture[..., None]
    if rng.random() < 0.25:   # a print: stripes or dots at low contrast
        yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
        period = rng.uniform(3, 12) * s / 128
        theta = rng.uniform(0, np.pi)
        wave = np.sin((xx * np.cos(theta) + yy * np.sin(theta)) * 2 * np.pi / period)
        if rng.random() < 0.5:
            wave = wave * np.sin((xx * np.sin(theta) - yy * np.cos(theta)) * 2 * np.pi / period)
        styled *= (1.0 + rng.uniform(0.1, 0.35) * wave)[..., None]
    if reshaped and rng.random() < 0.25:   # a graphic in a contrasting colour, shaded like the cloth
        cover, ink = graphic_print(s, rng)
        styled = styled * (1.0 - cover[..., None]) + (ink * shade[..., None]) * cover[..., None]
    styled += rng.normal(0, rng.uniform(1.0, 8.0), styled.shape)
    styled = cv2.GaussianBlur(styled, (0, 0), rng.uniform(0.3, 1.0))
    alpha = cv2.GaussianBlur(inside, (0, 0), rng.uniform(0.5, 1.5))[..., None]
    out = alpha * styled + (1.0 - alpha) * clean.astype(np.float32)
    if fitted and rng.random() < 0.6:
        out = ear_loops(out, inside, colour, rng)
    region = np.where(inside > 0, np.uint8(255), np.uint8(0))   # grown, shrunk or worn: what now covers the face
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), region
