"""End-to-end speed of the edge runtime (no TensorFlow): photos/s on 640x480 single-face photos.

    python -m mask2face.benchmarks.runtime_bench --model student-int8.tflite [--photos 60] [--threads 2] [--chunk 8]

Photos: LFW images (250x250, one centred face) upscaled to 480 px high and padded to 640x480, written to a
scratch folder under /tmp (never into the repository); with --masked DATA_DIR the same, but wearing the masks our
generator drew on them (the test pairs put back into their photos), so that every face is restored and blended.
Photos go `--chunk` at a time through Inpainter.remove_many, as `mask2face remove` sends a folder (--chunk 1: one
photo at a time, as a camera). Measures per photo: detection, model, blending (the Inpainter's own split), and
compares the model's invoke time inside the pipeline (p50 and mean per face) with a warm back-to-back
`Interpreter.invoke` loop on the same model and thread count (they must agree within 10%): one block of invokes
after the run, and four at a time between chunks (warm_invoke_ms_p50_interleaved: the same drift of the machine's
speed as the pipeline's invokes); and with a bare invoke right after detection (invokes_after_detection_ms). One JSON
row per run in benchmarks/results/runtime.jsonl. Target: >= 15 photos/s on 2 threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from mask2face import config
from mask2face.edge_runtime import detect
from mask2face.edge_runtime.inpaint import BlendConfig, Inpainter
from mask2face.edge_runtime.media import CHUNK
from mask2face.edge_runtime.safeio import load_image, save_image

from .common import DATA, environment, invoke_sequences_ms, report_row, stages_arg, time_invokes
from .photos import iter_pairs, rebuild_photo

ACCEPT_ALL = BlendConfig(min_confidence=0.0, min_area=0.0, max_area=1.0, min_centroid_y=0.0, mask_threshold=-1.0,
                         min_change=0.0, min_mask_probability=0.0)


def onto_canvas(image: np.ndarray, width: int, height: int, interpolation: int = cv2.INTER_CUBIC):
    """`image` scaled to `height` rows and mirror-padded (or centre-cut) to `width` columns, as the 640x480 photos
    here are made (a smaller face in a bigger photo: what phone photos look like), and the 2x3 matrix that maps the
    old pixels to the new."""
    scale = height / image.shape[0]
    new_w = max(1, int(round(image.shape[1] * scale)))
    out = cv2.resize(image, (new_w, height), interpolation=interpolation)
    pad = (width - new_w) // 2
    if pad >= 0:
        out = cv2.copyMakeBorder(out, 0, 0, pad, width - new_w - pad, cv2.BORDER_REFLECT101)
    else:
        out = np.ascontiguousarray(out[:, -pad:-pad + width])
    return out, np.array([[scale, 0.0, float(pad)], [0.0, scale, 0.0]])


def to_640x480(square: np.ndarray) -> np.ndarray:
    """An LFW-sized square photo upscaled to 480x480 and mirror-padded to 640x480."""
    return onto_canvas(square, 640, 480)[0]


def make_photos(n: int, out_dir: Path, seed: int = 0) -> list[Path]:
    """n 640x480 single-face photos from LFW (scratch; never commit)."""
    lfw = DATA / "lfw"
    if not lfw.is_dir():
        raise SystemExit(f"{lfw} not found: this benchmark needs ../shared/data/lfw")
    files = sorted(lfw.rglob("*.jpg"))
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in rng.choice(len(files), size=n, replace=False):
        p = out_dir / f"{files[i].stem}.png"
        if not p.exists():
            save_image(p, to_640x480(load_image(files[i])))
        paths.append(p)
    return paths


def make_masked_photos(n: int, data_dir: Path, out_dir: Path, split: str = "test") -> list[Path]:
    """n 640x480 single-face photos *wearing a mask*: the first n pairs of `split` put back into their LFW source
    photos (detect_bench.rebuild_photo: the generator's masked crop through the inverse alignment), then upscaled
    and padded like make_photos (scratch; never commit)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for masked, mask, meta in iter_pairs(data_dir, split):
        if len(paths) >= n:
            break
        src = DATA / str(meta.get("source", ""))
        if not src.is_file() or meta.get("matrix") is None:
            continue
        p = out_dir / f"masked-{split}-{len(paths):04d}.png"
        if not p.exists():
            img = rebuild_photo(load_image(src), masked, mask, np.asarray(meta["matrix"], np.float64))
            save_image(p, to_640x480(img))
        paths.append(p)
    if not paths:
        raise SystemExit(f"no pairs with source photos in {data_dir / split} (sources under {DATA})")
    return paths


def _prepared(model):
    """The model's interpreter with a fixed random input already set (no copies inside the timed calls)."""
    x = model.to_input(np.random.default_rng(0).random((1, *model.input_size, 3), dtype=np.float32))
    it = model.interpreter
    it.set_tensor(model.input_detail["index"], x)
    return it


def warm_invokes_ms(model, runs: int) -> np.ndarray:
    """Milliseconds of Interpreter.invoke alone on a fixed prepared input, warm, back to back (the model's floor)."""
    return time_invokes(_prepared(model), warmup=5, runs=runs)


def invokes_after_detection_ms(inpainter: Inpainter, photos: list[np.ndarray], sequences: int,
                               length: int = 6) -> np.ndarray:
    """p50 milliseconds of the 1st, 2nd, ... `length`th bare Interpreter.invoke right after the detector has run on
    a photo (cycling through `photos`). The first is where a one-photo-at-a-time pipeline invokes the model, without
    any of our code around it; the later ones show how soon the model is warm again. If the pipeline's invoke matches
    the first, its extra time over the warm loop is the first invoke after other work, not our code (first_invoke.py
    shows the same in plain LiteRT)."""
    next_photo = itertools.cycle(photos).__next__
    return invoke_sequences_ms(_prepared(inpainter.model), lambda: inpainter.detector.detect(next_photo()),
                               sequences, length)


def blend_overrides(items: list[str]) -> dict:
    """BlendConfig fields from FIELD=VALUE strings (each value parsed as the field's default's type)."""
    values = {}
    defaults = BlendConfig()
    for item in items:
        name, _, raw = item.partition("=")
        if not hasattr(defaults, name) or not raw:
            raise SystemExit(f"--blend {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{', '.join(f.name for f in dataclasses.fields(BlendConfig))}")
        current = getattr(defaults, name)
        try:   # None (min_mask_probability: "the classifier's own") is overridden by a number
            values[name] = config.parse_value(raw, 0.0 if current is None else current, f"--blend {name}")
        except config.ConfigError as exc:
            raise SystemExit(str(exc)) from None
    return values


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, default=None,
                   help=".tflite, or the shipped model: default")
    p.add_argument("--classifier", default="default",
                   help="mask classifier: default (the shipped one), a .tflite, or none")
    p.add_argument("--photos", type=int, default=60)
    p.add_argument("--threads", type=int, default=2, help="model threads")
    p.add_argument("--detector-threads", type=int, default=None, help="face detector threads (default: --threads)")
    p.add_argument("--detector-stages", type=stages_arg, default=detect.DEFAULT_STAGES,
                   help="face detector stages, comma-separated (default: the runtime's)")
    p.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "mask2face-runtime-bench")
    p.add_argument("--accept-all", action="store_true",
                   help="blend every face, whatever its mask probability or predicted mask (random-weight models: time the "
                        "blending too)")
    p.add_argument("--masked", type=Path, default=None, metavar="DATA_DIR",
                   help="photos wearing a mask: the test pairs of this pairs folder put back into their LFW photos "
                        "(the realistic case: every face is restored and blended); default: bare LFW photos")
    p.add_argument("--chunk", type=int, default=CHUNK,
                   help="photos per Inpainter.remove_many pass, as `mask2face remove --chunk` (1 = one photo at a "
                        "time, as a camera runs: the model then runs cold after each detection)")
    p.add_argument("--blend", action="append", default=[], metavar="FIELD=VALUE",
                   help="paste-back setting of edge_runtime.inpaint.BlendConfig (repeatable), e.g. --blend rim_fill=0")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--results", type=Path, default=None, help="folder runtime.jsonl is appended to (default: the "
                   "source tree's benchmarks/results, or ./mask2face-results for an installed package)")
    args = p.parse_args(argv)

    if args.masked:
        photos = [load_image(x) for x in make_masked_photos(args.photos, args.masked, args.scratch / "masked")]
    else:
        photos = [load_image(x) for x in make_photos(args.photos, args.scratch)]
    inp = Inpainter.from_file(args.model, threads=args.threads, detector_threads=args.detector_threads,
                              detector_stages=args.detector_stages,
                              classifier=None if args.classifier == "none" else args.classifier,
                              # the model file's own paste settings, with --blend's fields replaced
                              blend=(dataclasses.replace(ACCEPT_ALL, **blend_overrides(args.blend))
                                     if args.accept_all else blend_overrides(args.blend)))
    for img in photos[:3]:  # warm-up (allocations, XNNPACK packing)
        inp.remove_detailed(img)
    split = {"detection": [], "mask_decision": [], "model": [], "model_invoke": [], "blending": []}
    per_invoke = {"model": [], "model_invoke": []}  # per face: a photo's model time over its invokes
    totals, faces, pasted = [], 0, 0
    # The warm reference, measured a few invokes at a time between chunks as well as in one block at the end: this
    # machine's speed drifts by 20% within minutes, as much as the gap being measured, so the pairs share the drift.
    interleaved_warm = []
    chunk = max(1, args.chunk)
    bar = tqdm(total=len(photos), desc="runtime", unit="photo")
    for start in range(0, len(photos), chunk):
        batch = photos[start:start + chunk]
        t0 = time.perf_counter()
        results = inp.remove_many(batch)
        totals += [(time.perf_counter() - t0) / len(batch)] * len(batch)  # a chunk's photos share its wall time
        for res in results:
            for k in split:
                split[k].append(res.timings.get(k, 0.0))
            for k in per_invoke:
                per_invoke[k] += [res.timings[k] / max(res.invokes, 1)] * res.invokes
            faces += len(res.faces)
            pasted += res.pasted
        interleaved_warm += list(time_invokes(inp.model.interpreter, warmup=2, runs=4))
        bar.update(len(batch))
    bar.close()
    invoke_ms = 1000 * np.asarray(per_invoke["model_invoke"] or [0.0])
    wrapper_ms = 1000 * np.asarray(per_invoke["model"] or [0.0])
    bare = warm_invokes_ms(inp.model, runs=max(50, args.photos))
    bare_ms, bare_mean = float(np.median(bare)), float(np.mean(bare))
    model_ms, model_mean = float(np.median(invoke_ms)), float(np.mean(invoke_ms))
    after_detection = invokes_after_detection_ms(inp, photos, sequences=max(50, args.photos))
    after_detection_ms = float(after_detection[0])
    paired_ms = float(np.median(interleaved_warm))
    row = {
        "bench": "runtime", "model": str(args.model or "default"), "model_info": inp.describe(),
        "photos": len(photos), "photo_size": [640, 480], "threads": args.threads,
        "photo_set": f"masked pairs of {args.masked}" if args.masked else "bare LFW photos",
        "detector_threads": args.detector_threads or args.threads,
        "detector_stages": list(args.detector_stages),
        "photos_per_s": len(totals) / float(np.sum(totals)),
        "ms_per_photo_p50": 1000 * float(np.median(totals)),
        "split_ms_mean": {k: 1000 * float(np.mean(v)) for k, v in split.items()},
        "faces_found": faces, "faces_pasted": pasted, "accept_all": args.accept_all,
        "chunk": chunk, "blend": dataclasses.asdict(inp.blend),
        "model_ms_p50_in_pipeline": model_ms, "model_run_ms_p50_with_io": float(np.median(wrapper_ms)),
        "bare_invoke_ms_p50": bare_ms, "model_overhead": model_ms / bare_ms - 1 if bare_ms else None,
        "model_ms_mean_in_pipeline": model_mean, "bare_invoke_ms_mean": bare_mean,
        "model_overhead_mean": model_mean / bare_mean - 1 if bare_mean else None,
        "warm_invoke_ms_p50_interleaved": paired_ms,
        "model_overhead_vs_interleaved": model_ms / paired_ms - 1 if paired_ms else None,
        "after_detection_invoke_ms_p50": after_detection_ms,
        "model_overhead_vs_after_detection": model_ms / after_detection_ms - 1 if after_detection_ms else None,
        "invokes_after_detection_ms_p50": [round(float(v), 4) for v in after_detection],
        **environment(),
    }
    report_row(row, ("photos_per_s", "ms_per_photo_p50", "chunk", "split_ms_mean", "faces_found", "faces_pasted",
                     "model_ms_p50_in_pipeline", "model_run_ms_p50_with_io", "bare_invoke_ms_p50", "model_overhead",
                     "model_ms_mean_in_pipeline", "bare_invoke_ms_mean", "model_overhead_mean",
                     "warm_invoke_ms_p50_interleaved", "model_overhead_vs_interleaved",
                     "after_detection_invoke_ms_p50", "model_overhead_vs_after_detection",
                     "invokes_after_detection_ms_p50"),
               "runtime.jsonl", save=not args.no_save, results=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
