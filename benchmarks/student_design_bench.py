"""Student designs side by side before training one: parameters, MACs, int8 file size and single-thread latency.

    python -m mask2face.benchmarks.student_design_bench \\
        --design full-8-64:8,16,32,48,64:1:depth_to_space --design half-32-80:32,48,64,80:2:depth_to_space \\
        [--size 128] [--runs 300] [--repeats 3] [--out benchmarks/results/student_design.jsonl]

A design is NAME:WIDTHS:STEM_STRIDE:UPSAMPLE (kernels 3). Each is built with random (seeded) weights, converted to
full-integer int8 like `mask2face export` (seeded random calibration images: the weights are random too), and
timed in ai_edge_litert with one thread: the p50 of `--runs` invokes, repeated `--repeats` times (all kept in
the row). What the trained, QAT-exported file weighs is a little more (its quantisation ranges are not the
random model's); the speed is the same. One JSON row per design is appended to --out. Needs the `train` extra.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

DEFAULT_OUT = Path("benchmarks/results/student_design.jsonl")


def parse_design(text: str) -> dict:
    try:
        name, widths, stride, upsample = text.split(":")
        return {"name": name, "filters": tuple(int(w) for w in widths.split(",")), "stem_stride": int(stride),
                "upsample": upsample}
    except ValueError:
        raise argparse.ArgumentTypeError(f"--design {text!r}: expected NAME:WIDTHS:STEM_STRIDE:UPSAMPLE, "
                                         "e.g. half-32-80:32,48,64,80:2:depth_to_space") from None


def measure(design: dict, size: int, runs: int, repeats: int) -> dict:
    from mask2face.compress import delegates, export
    from mask2face.benchmarks.upsample_bench import build_student, p50_latency_ms, random_representative
    from mask2face.train.models import count_macs

    model = build_student(design["upsample"], size, design["filters"], design["stem_stride"])
    data = export.convert(model, "int8", random_representative(size))
    p50s = [p50_latency_ms(data, runs) for _ in range(repeats)]
    return {**design, "filters": list(design["filters"]), "size": size, "params": int(model.count_params()),
            "mmac": round(count_macs(model) / 1e6, 2), "int8_bytes": len(data),
            "xnnpack_partitions": delegates.xnnpack_partitions(data, num_threads=1)["partitions"],
            "p50_ms_1thr": float(np.median(p50s)), "p50_ms_1thr_repeats": p50s}


def main(argv=None) -> int:
    from mask2face.benchmarks.common import append_rows, environment

    ap = argparse.ArgumentParser(prog="python -m mask2face.benchmarks.student_design_bench",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--design", type=parse_design, action="append", required=True)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    for design in args.design:
        try:
            row = measure(design, args.size, args.runs, args.repeats)
        except ValueError as exc:  # e.g. a size the levels do not divide
            print(f"student_design_bench: {design['name']}: {exc}", file=sys.stderr)
            return 2
        append_rows(args.out, [{"bench": "student_design", **row, **environment()}])
        print(f"{row['name']:<16} params {row['params']:>7}  {row['mmac']:>6} MMAC  int8 {row['int8_bytes'] / 1024:7.1f} KB"
              f"  p50 1 thr {row['p50_ms_1thr']:.3f} ms  XNNPACK partitions {row['xnnpack_partitions']}")
    print(f"wrote {len(args.design)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
