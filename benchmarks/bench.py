"""`mask2face bench --what models`: size, latency and quality of .tflite artifacts (no TensorFlow).

    mask2face bench --preset cpu                         # every .tflite in RUN/export -> RUN/bench/rows.jsonl
    mask2face bench --preset cpu --models a.tflite dir/  # chosen files
    mask2face bench --preset smoke bench.runs=10 bench.threads=1,2

Per artifact: bytes; p50/p90 latency of `interpreter.invoke()` at each of `bench.threads` (ai_edge_litert,
XNNPACK, `num_threads` explicit, `model_content=bytes`, `bench.warmup` invokes, then `bench.runs` timed ones on a
fixed input); quality on the first `bench.eval_samples` test pairs: PSNR / SSIM / L1 over the whole image and
the masked region (`train.metrics`, the one definition), on the raw model output (RGB channels) vs the clean
truth, plus the SSIM of the composited image (model pixels inside its predicted mask, input elsewhere) and the SSIM
and masked PSNR of the blended one (the runtime's dilated, feathered paste: what a photo really gets). Both fp32
and int8 are timed: on a 2-core AVX-512/AMX Xeon a random-weight depthwise student (256², widths 16..96) was slower
in int8 than in fp32 (20 vs 16 ms p50, 1 thread; observed, not measured by a project bench), on phones the opposite
is usual. One JSON row per artifact, with the machine and package versions,
is appended to RUN/bench/rows.jsonl; then `benchmarks.report` renders the table (markdown + CSV) and a Pareto PNG.
`--what runtime|detect` hand over to runtime_bench / detect_bench (rows appended to `--out`, default the
source tree's benchmarks/results/, or ./mask2face-results for an installed package).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from mask2face.edge_runtime.model import from_tensor, new_interpreter, to_tensor
from mask2face.train import metrics

from .common import append_rows, environment, time_invokes


def latency(model_bytes: bytes, threads: int, warmup: int, runs: int, seed: int = 0) -> dict:
    """p50/p90/mean of invoke() in ms (input set once: we time the model, not the copy)."""
    it = new_interpreter(model_bytes, int(threads))
    inp = it.get_input_details()[0]
    shape = tuple(int(s) for s in inp["shape"])
    x = to_tensor(inp, np.random.default_rng(seed).random(shape, dtype=np.float32))
    it.set_tensor(inp["index"], x)
    t = time_invokes(it, warmup, runs)
    return {**percentiles_ms(t), "mean_ms": round(float(t.mean()), 4), "runs": len(t), "warmup": warmup}


def percentiles_ms(times_ms) -> dict:
    return {f"p{q}_ms": round(float(np.percentile(times_ms, q)), 4) for q in (50, 90, 99)}


def predict(model_bytes: bytes, images_u8: np.ndarray, threads: int = 1) -> np.ndarray:
    """Float outputs (N,S,S,C) in [0,1] for uint8 RGB inputs (N,S,S,3), one invoke per image (batch is 1)."""
    it = new_interpreter(model_bytes, int(threads))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    size = tuple(int(s) for s in inp["shape"][1:3])
    outs = []
    for img in images_u8:
        if img.shape[:2] != size:
            raise ValueError(f"model input is {size[0]}x{size[1]} but the test pairs are {img.shape[0]}x"
                             f"{img.shape[1]}: bench the pairs the model was trained on (--data)")
        it.set_tensor(inp["index"], to_tensor(inp, img[None].astype(np.float32) / np.float32(255.0)))
        it.invoke()
        outs.append(from_tensor(out, it.get_tensor(out["index"]))[0])
    return np.stack(outs)


def quality(model_bytes: bytes, test: dict) -> dict:
    pred = predict(model_bytes, test["masked"])
    rows = [metrics.all_metrics(np.clip(p[..., :3], 0, 1), c, m)
            for p, c, m in zip(pred, test["clean"], test["mask"])]
    out = {k: round(v, 5) for k, v in metrics.summarize(rows).items()}
    # What the runtime shows: the model's pixels inside its own predicted mask, the photo elsewhere.
    out["ssim_composited"] = round(float(np.mean([
        metrics.ssim(np.clip(metrics.composite(metrics.to_float(x), p), 0, 1), metrics.to_float(c))
        for p, x, c in zip(pred, test["masked"], test["clean"])])), 5)
    # What a photo really gets: the same with the runtime's dilated, feathered paste (edge_runtime.inpaint).
    blend = [metrics.all_metrics(np.clip(metrics.blended(metrics.to_float(x), p), 0, 1), c, m)
             for p, x, c, m in zip(pred, test["masked"], test["clean"], test["mask"])]
    blend = metrics.summarize(blend)
    out["ssim_blended"] = round(blend["ssim"], 5)
    out["psnr_masked_blended"] = round(blend["psnr_masked"], 5)
    # What PSNR/SSIM do not see, on the same blended output: detail (1 = as sharp as the real face), 2x2 blocks of
    # a half-resolution student (1 = none, 2 = nearest-upsampled) and the seam at the mask's border (1 = smooth).
    look = metrics.summarize([metrics.look_metrics(np.clip(metrics.blended(metrics.to_float(x), p), 0, 1), c, m)
                              for p, x, c, m in zip(pred, test["masked"], test["clean"], test["mask"])])
    out.update({k: round(v, 4) for k, v in look.items()})
    out["blockiness_truth"] = round(float(np.nanmean([metrics.blockiness(c, 2, m)
                                                      for c, m in zip(test["clean"], test["mask"])])), 4)
    out["samples"] = len(rows)
    return out


def artifact_info(path: Path) -> dict:
    """name / precision / metadata from the file name and the embedded metadata (edge reader, no TF)."""
    info = {"file": path.name, "model": None, "precision": None, "metadata": None}
    stem = path.stem
    for prec in ("qat-int8", "fp32", "fp16", "dynamic", "int8"):
        if stem.endswith("-" + prec):
            info["model"], info["precision"] = stem[: -len(prec) - 1], prec
            break
    try:
        from mask2face.edge_runtime import tflite_file

        meta = tflite_file.parse(path.read_bytes(), str(path)).mask2face_metadata()
        info["metadata"] = meta
        if meta:
            info["model"] = info["model"] or meta.get("name")
            info["precision"] = info["precision"] or meta.get("precision")
    except Exception as exc:  # a file without metadata is still benchmarked
        info["metadata_error"] = str(exc)[:200]
    info["model"] = info["model"] or stem    # a file named neither by export nor in its metadata: its own name
    return info


def baselines(test: dict) -> list[dict]:
    """Rows for what a model must beat, on the same pairs and columns: the masked input left as it is, and OpenCV's
    classical inpainting (TELEA, Navier-Stokes) of the true mask, timed per crop on one thread."""
    import cv2

    from mask2face.train.evaluate import inpaint

    rows = []
    for name, method in (("masked input", None), ("cv2.inpaint TELEA", "telea"), ("cv2.inpaint NS", "ns")):
        outputs, times = [], []
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        try:
            for x, m in zip(test["masked"], test["mask"]):
                t0 = time.perf_counter()
                outputs.append(x if method is None else inpaint(x, m, method))
                times.append((time.perf_counter() - t0) * 1e3)
        finally:
            cv2.setNumThreads(threads)
        summary = metrics.summarize([metrics.all_metrics(metrics.to_float(o), c, m)
                                     for o, c, m in zip(outputs, test["clean"], test["mask"])])
        rows.append({"kind": "baseline", "model": name, "precision": None, "bytes": None,
                     "latency": {"1": percentiles_ms(times)} if method else None,
                     "quality": {**{k: round(v, 5) for k, v in summary.items()}, "samples": len(outputs)}})
    return rows


TABLE_FIELDS = ("artifact", "kind", "precision", "threads", "p50_ms", "p90_ms", "p99_ms", "size_bytes",
                "masked_psnr", "masked_ssim", "psnr", "ssim", "sharpness", "structure", "blockiness", "seam", "error")


def machine_table(rows: list[dict]) -> list[dict]:
    """One flat row per artifact and thread count (ultralytics' benchmark table): the fields of TABLE_FIELDS, a
    failed artifact as a row with its error, baselines with the kind "baseline"."""
    out = []
    for r in rows:
        q = r.get("quality") or {}
        base = {"artifact": r.get("file") or r.get("model"), "kind": r.get("kind", "model"),
                "precision": r.get("precision"), "size_bytes": r.get("bytes"),
                "masked_psnr": q.get("psnr_masked"), "masked_ssim": q.get("ssim_masked"), "psnr": q.get("psnr"),
                "ssim": q.get("ssim"), "sharpness": q.get("sharpness"), "structure": q.get("structure"), "blockiness": q.get("blockiness"),
                "seam": q.get("seam"), "error": r.get("error")}
        for threads, lat in sorted((r.get("latency") or {None: {}}).items(), key=lambda kv: str(kv[0])):
            out.append({**base, "threads": None if threads is None else int(threads),
                        **{k: lat.get(k) for k in ("p50_ms", "p90_ms", "p99_ms")}})
    return [{k: row.get(k) for k in TABLE_FIELDS} for row in out]


def table_csv(table: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TABLE_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in table)
    return buf.getvalue()


def bench_models(paths: list[Path], test: dict | None, *, threads=(1, 2), warmup=5, runs=50,
                 env: dict | None = None, failures: list | None = None) -> list[dict]:
    """A row per benchmarked file. A file that cannot be benchmarked is skipped with a message and, when
    `failures` is given, added to it as a row of kind "failed" with its error."""
    from tqdm import tqdm

    from mask2face.edge_runtime import tflite_file
    from mask2face.edge_runtime.errors import ModelFileError

    rows, skipped = [], []
    for path in tqdm(paths, desc="bench models", unit="model", file=sys.stderr):
        data = path.read_bytes()
        row = artifact_info(path)
        row.update({"kind": "model", "path": str(path), "bytes": len(data),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        try:
            tflite_file.parse(data, str(path))   # a damaged file is named, not a bare "not a valid Flatbuffer"
            row["latency"] = {str(t): latency(data, t, warmup, runs) for t in threads}
        except (ModelFileError, ValueError, RuntimeError) as exc:
            # One bad file does not sink the table of the others.
            skipped.append(f"{path}: {str(exc).splitlines()[0]}")
            print(f"bench: skipped {skipped[-1]}", file=sys.stderr)
            if failures is not None:
                failures.append({**row, "kind": "failed", "error": str(exc).splitlines()[0], **(env or {})})
            continue
        row["quality"] = quality(data, test) if test is not None else None
        row.update(env or {})
        rows.append(row)
    if not rows and skipped and failures is None:
        raise ModelFileError("no model could be benchmarked: " + "; ".join(skipped))
    return rows


def find_models(items: list[Path]) -> list[Path]:
    out = []
    for p in items:
        p = Path(p)
        out += sorted(f for f in p.glob("*.tflite") if f.is_file()) if p.is_dir() else [p]
    missing = [str(p) for p in out if not p.is_file()]
    if missing:
        from mask2face.edge_runtime.errors import ModelFileError
        raise ModelFileError(f"not found: {', '.join(missing)}; pass existing .tflite files or folders")
    return out


def hand_over(what: str, args) -> int:
    """`mask2face bench --what runtime|detect`: the module's own command with the options that mean something
    there (--models: the one model to time; --data: the photos; --out: where the rows go). For every option, run
    `python -m mask2face.benchmarks.runtime_bench --help` (or detect_bench)."""
    from mask2face.edge_runtime.errors import Mask2FaceError

    argv = ["--results", str(args.out)] if getattr(args, "out", None) else []
    models = list(getattr(args, "models", None) or [])
    if what == "runtime":
        from . import runtime_bench
        if len(models) > 1:
            raise Mask2FaceError("--what runtime times one model: pass one --models FILE "
                                 "(or none: the shipped default)")
        if getattr(args, "data", None):
            argv += ["--masked", str(args.data)]
        return int(runtime_bench.main(argv + (["--model", str(models[0])] if models else [])) or 0)
    from . import detect_bench
    if models:
        raise Mask2FaceError("--what detect measures the face detector, not a model: drop --models")
    argv += ["--runtime-only"] + (["--data", str(args.data)] if getattr(args, "data", None) else [])
    return int(detect_bench.main(argv) or 0)


def _print_table(table: list[dict], env: dict, pairs_dir: Path | None, as_json: bool) -> None:
    """stdout holds the document alone (JSON or CSV), for `| jq` and scripts; messages go to stderr."""
    if as_json:
        print(json.dumps({"rows": table, "environment": env, "pairs": None if pairs_dir is None else str(pairs_dir)},
                         indent=2, default=str))
    else:
        print(table_csv(table), end="")


def cli_main(cfg, args) -> int:
    from mask2face.edge_runtime.errors import Mask2FaceError

    what = getattr(args, "what", "models") or "models"
    if what in ("runtime", "detect"):
        return hand_over(what, args)
    if what != "models":
        raise Mask2FaceError(f"--what {what!r}: choose models, runtime or detect")

    from mask2face import runs
    from mask2face.train import pairs
    from . import report

    args_json, args_csv = bool(getattr(args, "json", False)), bool(getattr(args, "csv", False))
    run_dir = runs.run_dir(cfg, args)
    out_dir = Path(getattr(args, "out", None) or run_dir / "bench")
    data_dir = Path(getattr(args, "data", None) or run_dir / "data")
    models = find_models(getattr(args, "models", None) or [run_dir / "export"])
    if not models:
        raise Mask2FaceError(f"no .tflite files in {run_dir / 'export'}: run `mask2face export` or pass --models")
    bc = cfg.bench
    try:
        test = pairs.load_split(data_dir, "test", limit=bc.eval_samples)
    except FileNotFoundError:
        test = None
        print(f"bench: no test pairs in {data_dir / 'test'}: latency only", file=sys.stderr)
    env = environment()
    failed: list[dict] = []
    rows = bench_models(models, test, threads=bc.threads, warmup=bc.warmup, runs=bc.runs, env=env, failures=failed)
    extra = failed + ([{**b, **env} for b in baselines(test)] if test is not None and (args_json or args_csv) else [])
    for r in rows + extra:
        r["preset"] = cfg.preset
    append_rows(out_dir / "rows.jsonl", rows + extra)
    if not rows:
        if args_json or args_csv:
            _print_table(machine_table(extra), env, data_dir if test is not None else None, args_json)
        raise Mask2FaceError("no model could be benchmarked: " + "; ".join(f"{r['path']}: {r['error']}" for r in failed))
    paths = report.render(rows, out_dir)
    from mask2face import config as config_mod
    from mask2face.runs import write_manifest   # light (stdlib only): the bench stays TensorFlow-free
    write_manifest(out_dir, stage="bench", config=config_mod.to_dict(cfg), inputs=models,
                   outputs=[out_dir / "rows.jsonl"] + [Path(p) for p in paths.values() if p],
                   parents=[str(m) for m in models] + ([str(data_dir)] if test is not None else []))
    if args_json or args_csv:
        _print_table(machine_table(rows + extra), env, data_dir if test is not None else None, args_json)
    else:
        print(report.markdown_table(rows))
    plot = f", plot {paths['png']}" if paths["png"] else " (no quality figures without test pairs: no plot)"
    print(f"bench: {len(rows)} rows appended to {out_dir / 'rows.jsonl'}; table {paths['md']}{plot}",
          file=sys.stderr if args_json or args_csv else sys.stdout)
    return 0
