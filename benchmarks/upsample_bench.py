"""Which upsampling op should the student use? Measure every `student_arch.UPSAMPLE_CHOICES` mode and pick one.

    python -m mask2face.benchmarks.upsample_bench [--size 128] [--filters 8,16,32,48,64] [--runs 50]
                                                [--out benchmarks/results/upsample_choice.json]

For each mode: build the student (`unet_mobile`, random weights, seed 0), convert it to fp32 and full-integer
int8 with `export.convert` (batch fixed to 1), then measure in ai_edge_litert (model_content=bytes, one thread,
default XNNPACK delegate) the p50 invoke latency after warm-up, the XNNPACK partition count, the file size and
the Keras parameter count.

Choice rule: the fastest int8 mode that (a) runs as ONE XNNPACK partition (an op XNNPACK refuses splits the graph
and forces float/int8 round trips through builtin kernels) and (b) has no BatchNorm-folding problem.
(b) is a rule, not a measurement of this script: `transpose` (Conv2DTranspose + BN) is excluded because BN does
not fold into Conv2DTranspose in QAT (tfmot 0.8.1's fold transforms in default_8bit_transforms.py match
Conv2D/DepthwiseConv2D only; not measured by a project bench), so the QAT student would carry a separate BN.
The post-training converter does fold it, which is why `unfolded_bn_ops` (standalone MUL/ADD/SUB in the fp32
graph, measured) can read 0 for `transpose`.

Representative data for int8 is seeded uniform noise: the weights are random too, so real photos would not make
the calibration more meaningful, and the benchmark then needs no data on disk.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from mask2face.benchmarks.common import time_invokes

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

DEFAULT_OUT = Path("benchmarks/results/upsample_choice.json")
PRECISIONS = ("fp32", "int8")
WARMUP = 5
REP_SAMPLES = 8
# Modes excluded whatever their speed, with the reason that goes into the JSON's "why".
BN_FOLD_PROBLEM = {
    "transpose": "transpose conv: BN does not fold (Conv2DTranspose + BatchNorm is not folded in QAT, "
                 "tfmot's fold transforms match Conv2D/DepthwiseConv2D only), so the QAT student would keep a "
                 "separate BN",
}
# Ops an unfolded BatchNorm leaves behind in a .tflite (the student itself has no elementwise arithmetic).
BN_RESIDUE_OPS = ("MUL", "ADD", "SUB")


def _parse_filters(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--filters {text!r}: give comma-separated integers, e.g. 8,16,32") from None
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"--filters {text!r}: give at least one positive integer")
    return vals


def build_student(mode: str, size: int, filters: tuple[int, ...], stem_stride: int = 1):
    """The distillation student with upsample=`mode`, random (seeded) weights."""
    import tf_keras as keras

    from mask2face.config import ModelConfig
    from mask2face.train.models import build_model

    keras.utils.set_random_seed(0)
    cfg = ModelConfig(arch="unet_mobile", filters=tuple(filters), kernels=(3,) * len(filters), upsample=mode,
                      stem_stride=stem_stride)
    return build_model(cfg, size)


def random_representative(size: int) -> np.ndarray:
    """Seeded uniform-noise calibration images (uint8): the weights are random, so real photos would not help."""
    return (np.random.default_rng(1).random((REP_SAMPLES, size, size, 3)) * 255).astype(np.uint8)


def p50_latency_ms(model_bytes: bytes, runs: int, warmup: int = WARMUP) -> float:
    """Median single-thread invoke time (ms) of a .tflite, after `warmup` untimed invokes."""
    from mask2face.edge_runtime.model import new_interpreter

    it = new_interpreter(bytes(model_bytes), 1)
    inp = it.get_input_details()[0]
    x = np.random.default_rng(0).random(tuple(inp["shape"])).astype(np.float32)
    it.set_tensor(inp["index"], x)
    return round(float(np.median(time_invokes(it, warmup, runs))), 3)


def unfolded_bn_ops(model_bytes: bytes) -> int:
    from mask2face.compress import delegates

    return sum(op["op"] in BN_RESIDUE_OPS for op in delegates.parse_ops(model_bytes))


def measure_mode(mode: str, size: int, filters: tuple[int, ...], runs: int) -> dict[str, dict]:
    """{'<mode>_fp32': {...}, '<mode>_int8': {...}} for one upsampling mode."""
    from mask2face.compress import delegates, export

    model = build_student(mode, size, filters)
    params = int(model.count_params())
    rep = random_representative(size)
    out = {}
    for precision in PRECISIONS:
        data = export.convert(model, precision, rep if precision == "int8" else None)
        xnn = delegates.xnnpack_partitions(data, num_threads=1)
        out[f"{mode}_{precision}"] = {
            "bytes": len(data), "params": params, "p50_ms_1thr": p50_latency_ms(data, runs),
            "xnnpack_partitions": xnn["partitions"], "undelegated_ops": xnn["undelegated_ops"],
            "unfolded_bn_ops": unfolded_bn_ops(data)}
    return out


def choose(results: dict[str, dict], modes) -> tuple[str, str]:
    """(choice, why): fastest int8 mode with one XNNPACK partition and no BN-fold problem."""
    from mask2face.compress.export import ExportError

    eligible, notes = [], []
    for mode in modes:
        r = results[f"{mode}_int8"]
        if r["xnnpack_partitions"] != 1:
            notes.append(f"{mode} splits into {r['xnnpack_partitions']} XNNPACK partitions "
                         f"(outside: {', '.join(sorted(set(r['undelegated_ops']))) or 'none'})")
        elif mode in BN_FOLD_PROBLEM:
            notes.append(BN_FOLD_PROBLEM[mode])
        else:
            eligible.append(mode)
    if not eligible:
        raise ExportError("no upsampling mode is one XNNPACK partition without a BN-fold problem: "
                          + "; ".join(notes))
    choice = min(eligible, key=lambda m: results[f"{m}_int8"]["p50_ms_1thr"])
    others = [m for m in eligible if m != choice]
    c8, c32 = results[f"{choice}_int8"], results[f"{choice}_fp32"]
    fastest32 = min(modes, key=lambda m: results[f"{m}_fp32"]["p50_ms_1thr"])
    why = (f"{choice}: one XNNPACK partition, fastest eligible int8 ({c8['p50_ms_1thr']} ms p50, 1 thread; fp32 "
           f"{c32['p50_ms_1thr']} ms{', also fastest fp32' if fastest32 == choice else f'; fastest fp32 is {fastest32}'})")
    if others:
        why += "; " + "; ".join(f"{m} int8 {results[f'{m}_int8']['p50_ms_1thr']} ms" for m in others)
    if choice == "depth_to_space":
        why += "; BN folds into the preceding 1x1 conv, no QAT/TFLite bilinear mismatch"
    return choice, why + ("; " + "; ".join(notes) if notes else "")


def format_table(results: dict[str, dict], choice: str) -> str:
    lines = [f"{'model':<22}{'p50 ms':>8}{'XNNPACK':>9}{'bytes':>9}{'params':>8}"]
    for key in sorted(results):
        r = results[key]
        mark = "  <- choice" if key == f"{choice}_int8" else ""
        lines.append(f"{key:<22}{r['p50_ms_1thr']:>8.3f}{r['xnnpack_partitions']:>9}{r['bytes']:>9}"
                     f"{r['params']:>8}{mark}")
    return "\n".join(lines)


def run(size: int, filters: tuple[int, ...], runs: int, out: Path, load: str = "shared") -> dict:
    from tqdm import tqdm

    from mask2face import runs as runs_mod
    from mask2face.train.student_arch import UPSAMPLE_CHOICES

    # `shuffle` drops the expansion conv: a smaller model, not another op for the same model, so it is compared
    # in student_design_bench instead.
    modes = tuple(m for m in UPSAMPLE_CHOICES if m != "shuffle")
    results: dict[str, dict] = {}
    for mode in tqdm(modes, desc="upsample modes", file=sys.stderr):
        results.update(measure_mode(mode, size, filters, runs))
    choice, why = choose(results, modes)
    doc = {
        "choice": choice,
        "command": "python -m mask2face.benchmarks.upsample_bench " + " ".join(
            [f"--size {size}", f"--filters {','.join(map(str, filters))}", f"--runs {runs}", f"--out {out}"]),
        "load": load,
        "machine": runs_mod.machine_info(),
        "results": results,
        "versions": runs_mod.package_versions(),
        "what": (f"student unet_mobile upsampling op, {size}x{size} input, filters {','.join(map(str, filters))}, "
                 f"kernels 3, random weights (seed 0), batch 1; LiteRT ai_edge_litert, default XNNPACK delegate, "
                 f"num_threads=1, p50 of {runs} invokes after {WARMUP} warm-ups; int8 = full-integer post-training "
                 f"(mask2face.compress.export.convert, {REP_SAMPLES} seeded random representative images); "
                 f"machine load: {load}"),
        "why": why,
    }
    runs_mod.write_json(out, doc)
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mask2face.benchmarks.upsample_bench", description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128, help="square input size (divisible by 2**(levels-1))")
    ap.add_argument("--filters", type=_parse_filters, default=(8, 16, 32, 48, 64), help="widths per level, e.g. 8,16,32")
    ap.add_argument("--runs", type=int, default=50, help="timed invokes per model (p50 is reported)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--load", default="shared", help="machine load note stored in the JSON (default: shared)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if args.size < 1 or args.size % (2 ** (len(args.filters) - 1)):
        ap.error(f"--size {args.size} must be a positive multiple of 2**{len(args.filters) - 1} "
                 f"for {len(args.filters)} filter levels")
    from mask2face.edge_runtime.errors import Mask2FaceError

    try:
        doc = run(args.size, args.filters, args.runs, args.out, args.load)
    except Mask2FaceError as exc:
        print(f"upsample_bench: {exc}", file=sys.stderr)
        return 2
    print(format_table(doc["results"], doc["choice"]))
    print(f"choice: {doc['choice']}\nwhy: {doc['why']}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
