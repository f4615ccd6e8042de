"""dlib's HOG detector as the cascade's last stage, where dlib is installed (the training side)."""

from __future__ import annotations

import numpy as np

from .face import Face


def dlib_detector():
    """dlib HOG as a last stage, only when dlib is installed (the training side has it; the edge install not).
    HOG gives no keypoints, so eyes are estimated from the box (dlib's frontal face box layout)."""
    try:
        import dlib
    except ImportError:
        return None
    hog = dlib.get_frontal_face_detector()

    def run(image: np.ndarray) -> list[Face]:
        rects, scores, _ = hog.run(np.ascontiguousarray(image), 1, 0.0)
        faces = []
        for r, s in zip(rects, scores):
            x0, y0, x1, y1 = r.left(), r.top(), r.right(), r.bottom()
            bw, bh = x1 - x0, y1 - y0
            # Typical eye centres inside a dlib HOG box (fractions of the box side).
            kps = np.array([[x0 + 0.30 * bw, y0 + 0.38 * bh], [x0 + 0.70 * bw, y0 + 0.38 * bh],
                            [x0 + 0.5 * bw, y0 + 0.6 * bh], [x0 + 0.5 * bw, y0 + 0.8 * bh],
                            [x0, y0 + 0.45 * bh], [x1, y0 + 0.45 * bh]], np.float64)
            faces.append(Face((x0, y0, x1, y1), float(min(1.0, 0.5 + s / 4)), kps, "dlib"))
        return faces

    return run
