"""Curves drawn from benchmark rows with OpenCV alone (no plotting library to install on a board).

    decision_curves(gate_row, "benchmarks/results/gate/mask_decision_curves.png")
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]  # RGB
WHITE, BLACK, GREY = (255, 255, 255), (0, 0, 0), (190, 190, 190)
FONT = cv2.FONT_HERSHEY_SIMPLEX


class Axes:
    """A plot panel: data (x, y) in [x0, x1] x [y0, y1] mapped into a pixel rectangle of `canvas`."""

    def __init__(self, canvas: np.ndarray, rect: tuple[int, int, int, int], xlim, ylim, title: str, xlabel: str,
                 ylabel: str):
        self.canvas, self.rect, self.xlim, self.ylim = canvas, rect, xlim, ylim
        left, top, width, height = rect
        cv2.rectangle(canvas, (left, top), (left + width, top + height), BLACK, 1)
        for k in range(6):
            fx, fy = xlim[0] + (xlim[1] - xlim[0]) * k / 5, ylim[0] + (ylim[1] - ylim[0]) * k / 5
            px, py = self.px(fx, ylim[0]), self.px(xlim[0], fy)
            cv2.line(canvas, (px[0], top), (px[0], top + height), GREY, 1)
            cv2.line(canvas, (left, py[1]), (left + width, py[1]), GREY, 1)
            text(canvas, f"{fx:g}", (px[0] - 12, top + height + 18), 0.4)
            text(canvas, f"{fy:g}", (left - 42, py[1] + 4), 0.4)
        text(canvas, title, (left, top - 44), 0.55)
        text(canvas, xlabel, (left + width // 2 - 4 * len(xlabel), top + height + 40), 0.45)
        text(canvas, ylabel, (left - 42, top - 14), 0.45)

    def px(self, x: float, y: float) -> tuple[int, int]:
        left, top, width, height = self.rect
        fx = (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0])
        fy = (y - self.ylim[0]) / (self.ylim[1] - self.ylim[0])
        return int(round(left + np.clip(fx, 0, 1) * width)), int(round(top + height - np.clip(fy, 0, 1) * height))

    def line(self, xs, ys, colour, thickness: int = 2) -> None:
        pts = np.array([self.px(x, y) for x, y in zip(xs, ys) if np.isfinite(x) and np.isfinite(y)], np.int32)
        if len(pts) > 1:
            cv2.polylines(self.canvas, [pts], False, colour, thickness, cv2.LINE_AA)

    def dashed(self, x0, y0, x1, y1, colour=BLACK) -> None:
        a, b = np.array(self.px(x0, y0), float), np.array(self.px(x1, y1), float)
        n = max(1, int(np.hypot(*(b - a)) // 8))
        for i in range(0, n, 2):
            p, q = a + (b - a) * i / n, a + (b - a) * min(i + 1, n) / n
            cv2.line(self.canvas, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, 1, cv2.LINE_AA)

    def mark(self, x, y, colour, label: str = "") -> None:
        if not (np.isfinite(x) and np.isfinite(y)):
            return
        p = self.px(x, y)
        cv2.circle(self.canvas, p, 6, colour, -1, cv2.LINE_AA)
        cv2.circle(self.canvas, p, 6, BLACK, 1, cv2.LINE_AA)
        if label:
            text(self.canvas, label, (p[0] + 8, p[1] + 14), 0.4)


def text(canvas, s: str, org, scale: float = 0.45, colour=BLACK) -> None:
    cv2.putText(canvas, s, (int(org[0]), int(org[1])), FONT, scale, colour, 1, cv2.LINE_AA)


def legend(canvas, items: list[tuple[str, tuple]], org) -> None:
    x, y = org
    for i, (label, colour) in enumerate(items):
        cv2.line(canvas, (x, y + 18 * i), (x + 22, y + 18 * i), colour, 3)
        text(canvas, label, (x + 28, y + 18 * i + 4), 0.4)


def roc_points(positives: list[float], negatives: list[float], thresholds) -> tuple[list[float], list[float]]:
    """(false positive rates, true positive rates) at each threshold (score >= t counts as positive)."""
    pos, neg = np.asarray(positives, float), np.asarray(negatives, float)
    fpr = [float((neg >= t).mean()) if len(neg) else float("nan") for t in thresholds]
    tpr = [float((pos >= t).mean()) if len(pos) else float("nan") for t in thresholds]
    return fpr, tpr


def decision_curves(row: dict, path: str | Path) -> Path:
    """Two panels from a gate_bench row: per photo, bare photos altered (each bare set) against real masked photos
    restored over the mask-probability sweep; per face, the ROC of the classifier on the annotated real faces. The
    row's threshold is marked on each curve."""
    canvas = np.full((520, 1160, 3), 255, np.uint8)
    chosen = row.get("min_mask_probability", 0.0)
    sweep = row["probability_sweep"]
    ts = [r["min_mask_probability"] for r in sweep]
    k = int(np.argmin([abs(t - chosen) for t in ts]))
    ax = Axes(canvas, (80, 70, 440, 360), (0.0, 0.1), (0.8, 1.0), "Whole runtime, per photo",
              "share of bare photos altered", "real masked photos restored")
    ax.dashed(0.02, 0.8, 0.02, 1.0)
    ax.dashed(0.0, 0.97, 0.1, 0.97)
    names = list(row.get("bare_sets", {}))
    for i, name in enumerate(names):
        xs = [r[f"{name}_altered"] for r in sweep]
        ys = [r["masked_restored"] for r in sweep]
        ax.line(xs, ys, COLOURS[i % len(COLOURS)])
        ax.mark(xs[k], ys[k], COLOURS[i % len(COLOURS)], f"{name} {xs[k]:.1%}" if i == 0 else "")
    legend(canvas, [(n, COLOURS[i % len(COLOURS)]) for i, n in enumerate(names)], (380, 300))
    text(canvas, f"dot: threshold {chosen:g}; dashed: 2% altered, 97% restored", (80, 490), 0.42)

    scores = row.get("annotated_scores", {})
    fpr, tpr = roc_points(scores.get("with_mask", []), scores.get("without_mask", []), ts)
    n_pos, n_neg = len(scores.get("with_mask", [])), len(scores.get("without_mask", []))
    ax2 = Axes(canvas, (660, 70, 440, 360), (0.0, 1.0), (0.0, 1.0), "Mask classifier, annotated real faces",
               f"false positive rate ({n_neg} faces without a mask)", f"true positive rate ({n_pos} with a mask)")
    ax2.dashed(0, 0, 1, 1, GREY)
    ax2.line([1.0] + fpr + [0.0], [1.0] + tpr + [0.0], COLOURS[0])
    if fpr:
        ax2.mark(fpr[k], tpr[k], COLOURS[1], f"threshold {chosen:g}: {tpr[k]:.1%} / {fpr[k]:.1%}")
    return write_png(canvas, path)


def write_png(rgb: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, enc = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(enc.tobytes())
    os.replace(tmp, path)
    return path
