"""Procedural face masks drawn from dlib's 68 landmarks, so they follow tilt (roll) and yaw.

Everything is built in a *face frame*: origin between the eye centres, u along the eye line (image-left eye
to image-right eye), v perpendicular to it pointing down the face, unit = the eye distance. A mask's outline
is defined there (top edge over the nose bridge, sides and bottom along the expanded jaw line 1-15 and under
the chin), patterns are functions of (u, v) so stripes and pleats turn with the head, then it is rasterised in
image coordinates. Two guarantees hold by construction, whatever the landmarks:
  * no mask pixel lies above the half-plane just below the lowest eye landmark (36-47 stay visible);
  * the dilated hull of the mouth landmarks (48-67) is always covered.
Pixels outside the returned binary mask are exactly the input pixels. One `seed` -> identical bytes.

Types: surgical (pleats, binding, ear loops), cloth (patterns), n95 (folded centre seam, straps),
respirator (valve), gaiter (neck gaiter or bandana), polygon (plain landmark polygon, flat colour).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MASK_TYPES = ("surgical", "cloth", "n95", "respirator", "gaiter", "polygon")
JAW = np.arange(1, 16)            # 1..15: the jaw points a mask runs along (0/16 are at ear/eye level)
EYES = np.arange(36, 48)
MOUTH = np.arange(48, 68)
NOSE_BRIDGE = np.arange(27, 31)

SURGICAL_COLOURS = [(118, 170, 212), (150, 196, 226), (236, 238, 240), (160, 212, 196), (230, 184, 204),
                    (42, 44, 50), (190, 196, 204), (96, 150, 200)]
N95_COLOURS = [(238, 236, 230), (226, 228, 232), (214, 212, 204), (245, 245, 240), (60, 62, 66)]
RESPIRATOR_COLOURS = [(232, 232, 228), (180, 184, 190), (50, 52, 58), (90, 110, 140), (210, 214, 220)]
PATTERNS = ("plain", "stripes", "dots", "plaid", "noise")


@dataclass(frozen=True)
class FaceFrame:
    origin: np.ndarray   # (2,) image px
    ex: np.ndarray       # unit vector along the eye line
    ey: np.ndarray       # unit vector down the face
    d: float             # eye distance in px

    @staticmethod
    def from_landmarks(lm: np.ndarray) -> "FaceFrame":
        le, re = lm[36:42].mean(axis=0), lm[42:48].mean(axis=0)
        d = float(np.linalg.norm(re - le))
        if d < 1e-3:
            raise ValueError("eye centres coincide")
        ex = (re - le) / d
        return FaceFrame((le + re) / 2, ex, np.array([-ex[1], ex[0]]), d)

    def to_face(self, pts: np.ndarray) -> np.ndarray:
        q = np.asarray(pts, np.float64) - self.origin
        return np.stack([q @ self.ex, q @ self.ey], axis=-1) / self.d

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        uv = np.asarray(uv, np.float64)
        return self.origin + self.d * (uv[..., :1] * self.ex + uv[..., 1:2] * self.ey)

    def grid(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """(U, V) face coordinates of every pixel centre."""
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
        qx, qy = xs - self.origin[0], ys - self.origin[1]
        return (qx * self.ex[0] + qy * self.ex[1]) / self.d, (qx * self.ey[0] + qy * self.ey[1]) / self.d


def _fill(shape, polys_img, value=255) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    pts = [np.round(np.asarray(p) * 16).astype(np.int32) for p in polys_img]
    cv2.fillPoly(m, pts, value, lineType=cv2.LINE_8, shift=4)
    return m


def _smooth_closed(points: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Chaikin corner cutting: a landmark polygon becomes a fabric-like rounded outline."""
    p = np.asarray(points, np.float64)
    for _ in range(iterations):
        q = np.roll(p, -1, axis=0)
        p = np.stack([0.75 * p + 0.25 * q, 0.25 * p + 0.75 * q], axis=1).reshape(-1, 2)
    return p


def _outline(L: np.ndarray, kind: str, rng: np.random.Generator, v_min: float) -> np.ndarray:
    """Mask outline in face coordinates (closed polygon)."""
    u_nose = float(L[NOSE_BRIDGE, 0].mean())
    # Top over the nose bridge: between landmarks 28 and 29 (size jitter), never above v_min.
    t = rng.uniform(0.0, 1.0) if kind != "gaiter" else rng.uniform(0.6, 1.4)
    top = max(float(L[28, 1] + t * (L[29, 1] - L[28, 1])), v_min)
    droop = rng.uniform(0.04, 0.22)          # how much lower the top edge is at the cheeks than at the nose
    side = rng.uniform(0.03, 0.12) if kind != "gaiter" else rng.uniform(0.12, 0.28)   # outward from the jaw
    chin = rng.uniform(0.06, 0.22) if kind != "gaiter" else rng.uniform(0.2, 0.35)    # below the chin

    centre = np.array([u_nose, float(L[33, 1])])
    jaw = L[JAW].copy()
    out = jaw - centre
    jaw = centre + out * (1.0 + side)
    # Push the chin points (5..11 -> indices 4..10 of JAW) further down: masks sit under the chin.
    w = np.exp(-((np.arange(len(JAW)) - 7) / 3.0) ** 2)
    jaw[:, 1] += chin * w
    if kind == "gaiter":
        if rng.random() < 0.5:
            # neck gaiter: a tube from the nose down past the bottom of the crop
            jaw = np.concatenate([jaw[:3], [[jaw[2, 0] - 0.1, 4.0], [jaw[-3, 0] + 0.1, 4.0]], jaw[-3:]])
        else:
            # bandana: a triangle hanging below the chin
            apex = np.array([[u_nose + rng.uniform(-0.1, 0.1), float(L[8, 1]) + rng.uniform(0.7, 1.1)]])
            jaw = np.concatenate([jaw[:4], apex, jaw[-4:]])
    u_left, u_right = float(jaw[0, 0]), float(jaw[-1, 0])
    half = max(u_nose - u_left, u_right - u_nose, 1e-3)
    us = np.linspace(u_left, u_right, 15)
    top_edge = np.stack([us, top + droop * ((us - u_nose) / half) ** 2], axis=1)
    # Jaw points (right to left) that lie below the top edge close the outline.
    lower = jaw[::-1]
    v_top_at = top + droop * ((lower[:, 0] - u_nose) / half) ** 2
    lower = lower[lower[:, 1] > v_top_at + 0.02]
    poly = np.concatenate([top_edge, lower])
    return _smooth_closed(poly) if kind in ("cloth", "gaiter", "n95") else poly


def _pattern(U, V, rng: np.random.Generator, base: np.ndarray) -> tuple[np.ndarray, str]:
    """Colour field (H, W, 3) float32 in face coordinates: plain, stripes, dots, plaid or printed noise."""
    name = PATTERNS[rng.integers(len(PATTERNS))]
    second = rng.uniform(20, 235, 3)
    col = np.broadcast_to(base, U.shape + (3,)).astype(np.float32).copy()
    if name == "stripes":
        ang = rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4]) + rng.uniform(-0.1, 0.1)
        period = rng.uniform(0.08, 0.3)
        s = (np.cos(ang) * U + np.sin(ang) * V) / period
        sel = (s - np.floor(s)) < rng.uniform(0.3, 0.6)
        col[sel] = second
    elif name == "dots":
        period, r = rng.uniform(0.1, 0.25), rng.uniform(0.2, 0.35)
        fu, fv = U / period, V / period + 0.5 * (np.floor(U / period) % 2)
        sel = (fu - np.round(fu)) ** 2 + (fv - np.round(fv)) ** 2 < r ** 2
        col[sel] = second
    elif name == "plaid":
        period = rng.uniform(0.15, 0.35)
        a = ((U / period) % 1.0) < 0.35
        b = ((V / period) % 1.0) < 0.35
        col = col * (1 - 0.3 * a[..., None] - 0.3 * b[..., None]) + second * 0.3 * (a[..., None] + b[..., None])
    elif name == "noise":
        # printed noise: a few colours from thresholded low-frequency noise, fixed to the face frame
        g = rng.standard_normal((12, 12)).astype(np.float32)
        uu = np.clip((U + 1.5) / 3.0 * 11, 0, 11).astype(np.float32)
        vv = np.clip((V + 0.5) / 3.0 * 11, 0, 11).astype(np.float32)
        n = cv2.remap(cv2.GaussianBlur(g, (3, 3), 0.8), uu, vv, cv2.INTER_LINEAR)
        third = rng.uniform(20, 235, 3)
        col[n > 0.3] = second
        col[n < -0.5] = third
    return col.astype(np.float32), name


def _ring(U, V, cu, cv, r):
    return (U - cu) ** 2 + (V - cv) ** 2 < r ** 2


def render(face: np.ndarray, landmarks: np.ndarray, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw a `kind` mask on `face` (H, W, 3 uint8 RGB) with `landmarks` (68, 2) in the same pixels.

    Returns (masked uint8 RGB, mask uint8 0/255, info). Same inputs and seed -> identical bytes."""
    if kind not in MASK_TYPES:
        raise ValueError(f"unknown mask type {kind!r}; choose from {', '.join(MASK_TYPES)}")
    rng = np.random.default_rng(seed)
    lm = np.asarray(landmarks, np.float64).reshape(68, 2)
    h, w = face.shape[:2]
    frame = FaceFrame.from_landmarks(lm)
    L = frame.to_face(lm)
    U, V = frame.grid(h, w)

    # Safety line: at least 2 px (and 5% of the eye distance) below the lowest eye landmark.
    margin = max(0.05, 2.0 / frame.d)
    v_min = float(L[EYES, 1].max()) + margin

    outline = _outline(L, kind, rng, v_min + 0.01)
    region = _fill((h, w), [frame.to_image(outline)])
    mouth_hull = cv2.convexHull(lm[MOUTH].astype(np.float32)).reshape(-1, 2)
    mouth = _fill((h, w), [mouth_hull])
    mouth = cv2.dilate(mouth, np.ones((5, 5), np.uint8))

    u_nose = float(L[NOSE_BRIDGE, 0].mean())
    info: dict = {"type": kind, "seed": int(seed)}
    extra = np.zeros((h, w), np.uint8)           # thin parts outside the outline (loops, straps)
    extra_col = None

    if kind == "surgical":
        base = np.array(SURGICAL_COLOURS[rng.integers(len(SURGICAL_COLOURS))], np.float32)
        base = np.clip(base + rng.uniform(-12, 12, 3), 0, 255)
        col = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
        # Three pleats: a dark fold line with a lighter band just above, evenly spaced between top and chin.
        top = v_min + 0.05
        bottom = float(L[8, 1])
        n = int(rng.integers(2, 4))
        for k in range(n):
            pv = top + (bottom - top) * (k + 1) / (n + 1) + 0.03 * (U - u_nose) ** 2
            dist = V - pv
            col *= (1 - 0.22 * np.exp(-(dist / 0.025) ** 2))[..., None]
            col *= (1 + 0.08 * np.exp(-((dist + 0.06) / 0.04) ** 2))[..., None]
        # ear loops: from the outline's upper/lower side corners out towards the ear (jaw 0 / 16)
        loop_col = np.array((240, 240, 240) if rng.random() < 0.7 else base * 0.9, np.float32)
        for side in (0, -1):
            # The ear sits at eye level, above the safety line: run the loop out to the side just below that
            # line, so it reads as a loop going behind the ear instead of being cut into a stub.
            e = L[0 if side == 0 else 16]
            ear = np.array([e[0] + (-0.12 if side == 0 else 0.12), max(e[1], v_min) + 0.12])
            j = 2 if side == 0 else 14
            upper = np.array([L[j, 0], max(L[j, 1], v_min + 0.08)])
            low = L[4 if side == 0 else 12]
            pts = np.stack([upper, ear, low]).astype(np.float64)
            curve = frame.to_image(pts)
            cv2.polylines(extra, [np.round(curve * 16).astype(np.int32)], False, 255,
                          thickness=max(1, int(round(frame.d * 0.04))), lineType=cv2.LINE_8, shift=4)
        extra_col = loop_col
        info.update(colour=base.round().tolist(), pleats=n)
    elif kind in ("cloth", "gaiter"):
        base = rng.uniform(15, 240, 3).astype(np.float32)
        col, pattern = _pattern(U, V, rng, base)
        if kind == "cloth" and rng.random() < 0.5:   # centre seam of a shaped cloth mask
            col *= (1 - 0.25 * np.exp(-((U - u_nose) / 0.02) ** 2))[..., None]
        if kind == "gaiter":                           # stretch folds of a tube of fabric
            col *= (1 + 0.07 * np.sin(V * rng.uniform(12, 20) + rng.uniform(0, 6)))[..., None]
        info.update(colour=base.round().tolist(), pattern=pattern)
    elif kind == "n95":
        base = np.array(N95_COLOURS[rng.integers(len(N95_COLOURS))], np.float32)
        col = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
        # folded centre seam, the two panels lit differently, a horizontal fold across the middle
        col *= (1 - 0.3 * np.exp(-((U - u_nose) / 0.018) ** 2))[..., None]
        panel = rng.uniform(0.06, 0.14)
        col *= np.where(U < u_nose, 1 - panel, 1 + panel / 2)[..., None]
        mid = 0.5 * (v_min + float(L[8, 1]))
        col *= (1 - 0.12 * np.exp(-((V - mid) / 0.03) ** 2))[..., None]
        strap_col = np.array((200, 200, 200) if base.mean() > 128 else (40, 40, 40), np.float32)
        for side in (0, 16):
            a = L[2 if side == 0 else 14]
            b = a + np.array([-0.4 if side == 0 else 0.4, 0.05])
            cv2.polylines(extra, [np.round(frame.to_image(np.stack([a, b])) * 16).astype(np.int32)], False, 255,
                          thickness=max(1, int(round(frame.d * 0.05))), lineType=cv2.LINE_8, shift=4)
        extra_col = strap_col
        info.update(colour=base.round().tolist())
    elif kind == "respirator":
        base = np.array(RESPIRATOR_COLOURS[rng.integers(len(RESPIRATOR_COLOURS))], np.float32)
        col = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
        cu = u_nose + rng.choice([-1, 1]) * rng.uniform(0.2, 0.35)
        cv_ = float(L[57, 1]) + rng.uniform(-0.05, 0.1)
        r = rng.uniform(0.14, 0.2)
        valve_col = np.array((60, 60, 64) if base.mean() > 128 else (200, 200, 200), np.float32)
        disk = _ring(U, V, cu, cv_, r)
        col[disk] = valve_col
        col[_ring(U, V, cu, cv_, r * 0.55)] = valve_col * 0.75
        grille = disk & (np.abs(np.sin((V - cv_) / r * 6)) < 0.25)
        col[grille] *= 0.7
        col *= (1 - 0.18 * np.exp(-((U - u_nose) / 0.03) ** 2))[..., None]
        info.update(colour=base.round().tolist(), valve=[round(cu, 3), round(cv_, 3)])
    else:  # polygon: the plain landmark polygon with one flat colour (the classic synthetic mask)
        base = rng.uniform(0, 255, 3).astype(np.float32)
        col = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
        info.update(colour=base.round().tolist())

    if kind != "polygon":
        # Shading: a cylinder lit from a random side, plus the photo's own low-frequency lighting, plus grain.
        half = max(float(np.ptp(L[JAW, 0])) / 2, 0.5)
        x = np.clip((U - u_nose) / (half * 1.2), -1, 1)
        light = rng.uniform(-0.15, 0.15)
        shade = (0.78 + 0.22 * np.cos(x * np.pi / 2)) * (1 + light * x)
        lum = cv2.cvtColor(face, cv2.COLOR_RGB2GRAY).astype(np.float32)
        lum = cv2.GaussianBlur(lum, (0, 0), sigmaX=max(2.0, frame.d * 0.5))
        ref = float(lum[region > 0].mean()) if region.any() else float(lum.mean())
        shade = shade * np.clip((lum / max(ref, 1.0)) ** rng.uniform(0.3, 0.7), 0.5, 1.4)
        col = col * shade[..., None] + rng.normal(0, rng.uniform(1, 4), (h, w, 1)).astype(np.float32)
        # A binding along the edge (surgical/n95/cloth hems): slightly darker rim inside the outline.
        if kind in ("surgical", "n95", "cloth"):
            rim = cv2.distanceTransform(region, cv2.DIST_L2, 3) < max(1.0, frame.d * 0.05)
            col[rim] *= 0.88

    # The guarantees: union with the mouth, then cut everything above the eye safety line.
    below = (V > v_min).astype(np.uint8)
    if extra_col is not None:
        extra = extra & ~region & below * 255
    mask = ((region | mouth) & (below * 255)).astype(np.uint8)
    mask = np.where(mask > 0, 255, 0).astype(np.uint8)
    out = face.copy()
    sel = mask > 0
    out[sel] = np.clip(col[sel] + 0.5, 0, 255).astype(np.uint8)
    if extra_col is not None and extra.any():
        esel = extra > 0
        out[esel] = np.clip(extra_col * shade[esel][:, None] if kind != "polygon" else extra_col, 0, 255
                            ).astype(np.uint8)
        mask[esel] = 255
    return out, mask, info
