"""The browser page against the Python runtime: same faces, same pixels, and the page's time per stage.

    python -m mask2face.benchmarks.web_bench [--accelerator wasm --accelerator webgpu] [--repeat 5]

Starts `mask2face web` on a free port, makes two photos from scikit-image's astronaut (wearing a drawn mask; and
beside its bare mirror image, 1024 px wide), runs `mask2face remove` on them and the page in headless Chromium
(web/tests/run_page.mjs, the system's chromium through playwright-core), and compares: box IoU of each face, the
mask decision, mean |page - Python| over the pixels either changed, and whether the page changed any pixel more
than 3 px from what Python changed. Times: page load to models ready, to the first result, and per stage (ms, the
median of --repeat runs after the first). One JSON row per accelerator in benchmarks/results/web.jsonl.
Needs Node.js, `npm ci --prefix web` and chromium (apt-get install -y chromium).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from mask2face.edge_runtime import detect

from .common import environment, report_row

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The console script beside this Python, not `python -m mask2face.cli`: run from a clone's root, -m would import the
# clone's mask2face/ folder, which lacks the mask2face.edge_runtime that only the installed package maps.
MASK2FACE = [str(Path(sys.executable).with_name("mask2face"))]


def web_dir() -> Path:
    """The page's folder with its npm packages: ./web of a clone after `npm ci --prefix web`, else the installed one."""
    from mask2face.web.server import PAGE
    for d in (Path.cwd() / "web", PAGE):
        if (d / "node_modules" / "playwright-core").is_dir():
            return d
    return PAGE


def astronaut_with_drawn_mask(detector=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bare, masked, region): scikit-image's astronaut, the same photo wearing a light-blue mask polygon drawn below
    the eyes the runtime's detector finds, and the polygon as a boolean map."""
    from skimage import data

    from mask2face.edge_runtime.detect import FaceDetector
    img = data.astronaut()
    face = (detector or FaceDetector(threads=1)).detect(img)[0]
    (lx, ly), (rx, ry) = face.eyes()
    d = rx - lx
    poly = np.array([[lx - 0.45 * d, ly + 0.45 * d], [rx + 0.45 * d, ry + 0.45 * d], [rx + 0.35 * d, ry + 1.45 * d],
                     [(lx + rx) / 2, ly + 1.75 * d], [lx - 0.35 * d, ly + 1.45 * d]], np.int32)
    masked = img.copy()
    cv2.fillPoly(masked, [poly], (150, 200, 235))
    region = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(region, [poly], 1)
    return img, masked, region.astype(bool)


def bench_photos(folder: Path) -> dict[str, np.ndarray]:
    """The astronaut wearing a drawn mask; a photo of two faces: that one beside its bare mirror image (1024 px
    wide, so CenterFace's tiles run too); and a close-up: the masked face cut at its box and enlarged to 320 px, a
    face CenterFace misses, so the BlazeFace-only cascade finds it. Written to `folder` as PNG."""
    from mask2face.edge_runtime.detect import FaceDetector

    detector = FaceDetector(threads=1)
    bare, masked, _ = astronaut_with_drawn_mask(detector)
    x0, y0, x1, y1 = (int(v) for v in detector.detect(masked)[0].box)
    face = masked[y0:y1, x0:x1]
    close_up = cv2.resize(face, (320 * face.shape[1] // face.shape[0], 320), interpolation=cv2.INTER_LINEAR)
    photos = {"astronaut-masked": masked, "two-faces": np.hstack([masked, cv2.flip(bare, 1)]),
              "close-up": np.ascontiguousarray(close_up)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, rgb in photos.items():
        cv2.imwrite(str(folder / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return photos


@contextmanager
def web_server(web: Path):
    """`mask2face web --port 0` in a subprocess, serving LiteRT.js from `web`/node_modules; yields its URL."""
    env = dict(os.environ, MASK2FACE_LITERTJS=str(web / "node_modules" / "@litertjs"))
    proc = subprocess.Popen([*MASK2FACE, "web", "--port", "0", "--no-open"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()
        if "http://" not in line:
            raise RuntimeError(f"mask2face web did not start: {line}{proc.stderr.read()}")
        yield line.split(" at ", 1)[1].split(" ", 1)[0]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def python_outputs(folder: Path, out: Path) -> dict[str, dict]:
    """`mask2face remove FOLDER --out OUT`: per photo name, its summary record and restored RGB."""
    subprocess.run([*MASK2FACE, "remove", str(folder), "--out", str(out)], check=True,
                   capture_output=True, timeout=600)
    records = json.loads((out / "summary.json").read_text())["records"]
    return {Path(r["file"]).stem: {**r, "rgb": cv2.cvtColor(cv2.imread(r["output"]), cv2.COLOR_BGR2RGB)}
            for r in records}


def page_outputs(web: Path, url: str, folder: Path, names, out: Path, accelerator: str = "wasm", repeat: int = 1,
                 screenshot: Path | None = None) -> dict:
    """The page in headless Chromium on FOLDER/<name>.png: page.json plus, per name, its faces, timings, RGB and
    the RGB the browser decoded. Raises RuntimeError with Chromium's or the page's message when it fails."""
    cmd = ["node", str(web / "tests" / "run_page.mjs"), "--url", url, "--out", str(out), "--accelerator", accelerator,
           "--repeat", str(repeat)] + (["--screenshot", str(screenshot)] if screenshot else [])
    run = subprocess.run(cmd + [str(folder / f"{n}.png") for n in names], capture_output=True, text=True,
                         timeout=900, env=dict(os.environ, CHROMIUM=CHROMIUM))
    if run.returncode != 0:
        raise RuntimeError(f"the page run failed (exit {run.returncode}):\n{run.stderr[-3000:]}")
    page = json.loads((out / "page.json").read_text())
    for name in names:
        result = json.loads((out / f"{name}.json").read_text())
        shape = (result["height"], result["width"], 3)
        result["rgb"] = np.fromfile(out / f"{name}.rgb", np.uint8).reshape(shape)
        result["input_rgb"] = np.fromfile(out / f"{name}.input.rgb", np.uint8).reshape(shape)
        page[name] = result
    return page


def box_iou(a, b) -> float:
    return float(detect.box_iou(np.array(a, np.float64), np.array([b], np.float64))[0])


def compare(photo: np.ndarray, py: dict, web: dict) -> dict:
    """How the page's result for one photo differs from the Python runtime's."""
    faces = []
    for pf in py["faces"]:
        wf = max(web["faces"], key=lambda f: box_iou(f["box"], pf["box"]), default=None)
        faces.append({"iou": None if wf is None else round(box_iou(wf["box"], pf["box"]), 4),
                      "python_restored": pf["pasted"], "page_restored": None if wf is None else wf["pasted"],
                      "python_mask_probability": pf["mask_probability"],
                      "page_mask_probability": None if wf is None else round(wf["mask_probability"], 4)})
    changed_py, changed_web = (py["rgb"] != photo).any(-1), (web["rgb"] != photo).any(-1)
    near_py = cv2.dilate(changed_py.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    union = changed_py | changed_web
    diff = np.abs(web["rgb"].astype(int) - py["rgb"].astype(int))[union]
    return {"faces_python": len(py["faces"]), "faces_page": len(web["faces"]), "faces": faces,
            "decoded_identically": bool(np.array_equal(web["input_rgb"], photo)),
            "changed_pixels_python": int(changed_py.sum()), "changed_pixels_page": int(changed_web.sum()),
            "page_changed_outside_python_region": int((changed_web & ~near_py).sum()),
            "restored_mae": round(float(diff.mean()), 3) if diff.size else 0.0,
            "restored_max_abs": int(diff.max()) if diff.size else 0}


def median_timings(runs: list[dict]) -> dict:
    """Per-stage median ms over the runs after the first (the first pays for compiling the JS and warming up)."""
    later = runs[1:] or runs
    return {k: round(float(np.median([r[k] for r in later])), 1) for k in later[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--accelerator", action="append", choices=["wasm", "webgpu"], help="repeatable (default: wasm)")
    p.add_argument("--repeat", type=int, default=5, help="runs per photo (the first is a warm-up)")
    p.add_argument("--screenshot", type=Path, default=None, help="also save the page after the last photo")
    p.add_argument("--results", type=Path, default=None, help="folder web.jsonl is appended to")
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    web = web_dir()
    with tempfile.TemporaryDirectory(prefix="mask2face-web-") as tmp, web_server(web) as url:
        tmp = Path(tmp)
        photos = bench_photos(tmp / "in")
        py = python_outputs(tmp / "in", tmp / "py")
        for accelerator in args.accelerator or ["wasm"]:
            page = page_outputs(web, url, tmp / "in", list(photos), tmp / accelerator, accelerator, args.repeat,
                                args.screenshot)
            row = {"bench": "web", "accelerator": accelerator, "ran_on": page["runtime"]["accelerator"],
                   "fully_accelerated": page["runtime"].get("fully_accelerated"),
                   "threads": page["runtime"]["threads"], "cross_origin_isolated": page["runtime"]["cross_origin_isolated"],
                   "page_ready_ms": page["ready_ms"], "first_result_ms": page["first_result_ms"],
                   "models_load_ms": round(page["runtime"]["load_ms"], 1), "repeat": args.repeat,
                   "chromium": subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout.strip(),
                   "photos": {name: {**compare(rgb, py[name], page[name]),
                                     "page_ms": median_timings(page["photos"][name])} for name, rgb in photos.items()},
                   **environment()}
            report_row(row, ("accelerator", "ran_on", "fully_accelerated", "page_ready_ms", "first_result_ms", "photos"),
                       "web.jsonl", save=not args.no_save, results=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
