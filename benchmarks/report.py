"""Benchmark rows -> ultralytics-style table (markdown + CSV) and a Pareto PNG (latency vs masked PSNR), drawn
with cv2 (matplotlib is not a dependency). Never typed by hand: always made from rows.

    python -m mask2face.benchmarks.report RUN/bench/rows.jsonl [OUT_DIR]
"""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

COLUMNS = ("model", "precision", "size (KB)", "p50 1thr (ms)", "p90 1thr (ms)", "p50 2thr (ms)",
           "PSNR masked (dB)", "SSIM", "PSNR masked blended", "SSIM blended", "SSIM masked", "L1 masked", "sharpness", "structure", "blockiness", "seam", "x faster vs teacher fp32",
           "x smaller")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def latest(rows: list[dict]) -> list[dict]:
    """The last row per file (rows.jsonl accumulates every run); files are told apart by their path, so the same
    name in two folders (your fine-tuned student and the shipped one) keeps two rows."""
    out = {}
    for r in rows:
        if r.get("kind", "model") == "model":
            out[r.get("path") or r.get("file")] = r
    return list(out.values())


def _labels(rows: list[dict]) -> list[str]:
    """The model column: its name, and its folder where two rows would otherwise read the same."""
    names = [(r.get("model"), r.get("precision")) for r in rows]
    return [f"{r.get('model')} ({Path(r['path']).parent})" if names.count(key) > 1 and r.get("path")
            else r.get("model") for r, key in zip(rows, names)]


def _lat(r: dict, threads: int, key: str = "p50_ms"):
    v = (r.get("latency") or {}).get(str(threads))
    return None if v is None else v.get(key)


def _q(r: dict, key: str):
    return (r.get("quality") or {}).get(key)


def table_rows(rows: list[dict]) -> list[dict]:
    rows = latest(rows)
    ref = next((r for r in rows if r.get("model") == "teacher" and r.get("precision") == "fp32"), None)
    order = {"fp32": 0, "fp16": 1, "dynamic": 2, "int8": 3, "qat-int8": 4}
    rows.sort(key=lambda r: (r.get("model") != "teacher", str(r.get("model")), order.get(r.get("precision"), 9)))
    out = []
    for r, label in zip(rows, _labels(rows)):
        p50 = _lat(r, 1)
        speed = (_lat(ref, 1) / p50) if ref and p50 and _lat(ref, 1) else None
        out.append({
            "model": label, "precision": r.get("precision"), "size (KB)": round(r["bytes"] / 1024, 1),
            "p50 1thr (ms)": p50, "p90 1thr (ms)": _lat(r, 1, "p90_ms"), "p50 2thr (ms)": _lat(r, 2),
            "PSNR masked (dB)": _q(r, "psnr_masked"), "SSIM": _q(r, "ssim"),
            "PSNR masked blended": _q(r, "psnr_masked_blended"), "SSIM blended": _q(r, "ssim_blended"),
            "SSIM masked": _q(r, "ssim_masked"),
            "L1 masked": _q(r, "l1_masked"),
            "sharpness": _q(r, "sharpness"), "structure": _q(r, "structure"), "blockiness": _q(r, "blockiness"), "seam": _q(r, "seam"),
            "x faster vs teacher fp32": round(speed, 1) if speed else None,
            "x smaller": round(ref["bytes"] / r["bytes"], 1) if ref else None,
        })
    return out


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def markdown_table(rows: list[dict]) -> str:
    trs = table_rows(rows)
    env = latest(rows)[-1] if rows else {}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(t[c]) for c in COLUMNS) + " |" for t in trs]
    machine = env.get("machine") or {}
    versions = env.get("versions") or {}
    lines.append("")
    lines.append(f"Machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores; ai-edge-litert "
                 f"{versions.get('ai-edge-litert', '?')}; latency = invoke() p50/p90, batch 1, XNNPACK. "
                 "Quality on the test split (masked = inside the mask region).")
    return "\n".join(lines)


def csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(COLUMNS))
    w.writeheader()
    w.writerows(table_rows(rows))
    return buf.getvalue()


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated (lower latency and higher PSNR are better)."""
    front = []
    for i, (lat, q) in enumerate(points):
        if not any((l2 <= lat and q2 >= q) and (l2 < lat or q2 > q) for j, (l2, q2) in enumerate(points) if j != i):
            front.append(i)
    return front


def pareto_png(rows: list[dict], path: Path, size=(900, 600)) -> Path | None:
    """Scatter of p50 single-thread latency (log x) vs masked PSNR, Pareto front joined, labels; cv2 only."""
    import cv2

    trs = [t for t in table_rows(rows) if t["p50 1thr (ms)"] and t["PSNR masked (dB)"] is not None
           and np.isfinite(t["PSNR masked (dB)"])]
    if not trs:
        return None
    w, h = size
    left, right, top, bottom = 80, 30, 40, 60
    img = np.full((h, w, 3), 255, np.uint8)
    xs = np.log10([t["p50 1thr (ms)"] for t in trs])
    ys = np.array([t["PSNR masked (dB)"] for t in trs], float)
    x0, x1 = xs.min() - 0.1, xs.max() + 0.1
    y0, y1 = ys.min() - 0.5, ys.max() + 0.5

    def px(x, y):
        return (int(left + (x - x0) / (x1 - x0) * (w - left - right)),
                int(h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom)))

    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    for e in range(int(np.floor(x0)), int(np.ceil(x1)) + 1):
        for m in (1, 2, 5):
            v = np.log10(m * 10.0 ** e)
            if x0 <= v <= x1:
                p = px(v, y0)
                cv2.line(img, (p[0], top), (p[0], h - bottom), (225, 225, 225), 1)
                cv2.putText(img, f"{m * 10.0 ** e:g}", (p[0] - 12, h - bottom + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                            (0, 0, 0), 1, cv2.LINE_AA)
    for v in np.linspace(y0, y1, 6):
        p = px(x0, v)
        cv2.putText(img, f"{v:.1f}", (8, p[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "p50 latency, 1 thread (ms, log)", (w // 2 - 130, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "masked PSNR (dB) vs latency: Pareto front in red", (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                (0, 0, 0), 1, cv2.LINE_AA)
    front = sorted(pareto_front(list(zip(xs, ys))), key=lambda i: xs[i])
    for a, b in zip(front, front[1:]):
        cv2.line(img, px(xs[a], ys[a]), px(xs[b], ys[b]), (0, 0, 220), 2, cv2.LINE_AA)
    for i, t in enumerate(trs):
        color = (200, 90, 0) if t["model"] == "teacher" else (0, 150, 0)
        p = px(xs[i], ys[i])
        cv2.circle(img, p, 6, color, -1, cv2.LINE_AA)
        cv2.putText(img, f"{t['model']}-{t['precision']}", (p[0] + 8, p[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                    color, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    from mask2face.runs import write_bytes
    return write_bytes(path, buf.tobytes())


def render(rows: list[dict], out_dir: Path) -> dict:
    from mask2face.runs import write_bytes

    out_dir = Path(out_dir)
    md = write_bytes(out_dir / "table.md", (markdown_table(rows) + "\n").encode())
    cs = write_bytes(out_dir / "table.csv", csv_text(rows).encode())
    png = pareto_png(rows, out_dir / "pareto.png")
    return {"md": md, "csv": cs, "png": png}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    rows = read_rows(Path(argv[0]))
    out = render(rows, Path(argv[1]) if len(argv) > 1 else Path(argv[0]).parent)
    print(markdown_table(rows))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
