"""How much longer a model's first invoke after other work takes than its warm, back-to-back invokes (plain LiteRT).

    python -m mask2face.benchmarks.first_invoke [--model default] [--threads 2] [--sequences 150]

Why: the edge runtime's target "model time within 10% of the bare Interpreter.invoke" is met when photos go through
in chunks (the model's invokes back to back) but not one photo at a time, where every invoke follows detection
(runtime_bench). This bench takes our pipeline out: after each kind of prior work it times `--length` invokes of the
model back to back, on a prepared input, in LiteRT alone. Prior work: nothing (the control: sequences back to back),
an invoke of the CenterFace detector's interpreter, 25 ms of work on the calling thread, 8 MB written, 25 ms asleep.
Per kind: the p50 of the 1st, 2nd, ... invoke, and `first_vs_warm`, the first over the mean of the 4th onwards.
One row per run in benchmarks/results/first_invoke.jsonl.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from tqdm import tqdm

from mask2face.edge_runtime.centerface import CenterFace
from mask2face.edge_runtime.inpaint import shipped_model
from mask2face.edge_runtime.model import Model

from .common import environment, invoke_sequences_ms, report_row, time_invokes
from .runtime_bench import _prepared


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def prior_work(threads: int) -> dict:
    """Each kind of work a pipeline does before the model's invoke, by name."""
    detector = CenterFace(threads=threads)
    it, _, _ = detector._interpreter(detector.fixed_shape or (320, 416))
    scratch = np.zeros(8 << 20, np.uint8)
    return {"nothing": lambda: None, "centerface_invoke": it.invoke, "busy_25ms": lambda: busy(0.025),
            "write_8mb": lambda: np.add(scratch, 1, out=scratch), "sleep_25ms": lambda: time.sleep(0.025)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help=".tflite, or the shipped model: default")
    p.add_argument("--threads", type=int, default=2, help="threads of the model and of the detector")
    p.add_argument("--sequences", type=int, default=150)
    p.add_argument("--length", type=int, default=6, help="invokes per sequence (at least 4)")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--results", default=None, help="folder first_invoke.jsonl is appended to")
    args = p.parse_args(argv)
    length = max(4, args.length)
    model = Model.from_file(shipped_model(args.model), threads=args.threads)
    interpreter = _prepared(model)
    time_invokes(interpreter, warmup=10, runs=1)
    rows = {}
    for name, before in tqdm(prior_work(args.threads).items(), desc="first invoke", unit="kind"):
        ms = invoke_sequences_ms(interpreter, before, max(1, args.sequences), length)
        rows[name] = {"invoke_ms_p50": [round(float(v), 4) for v in ms],
                      "first_vs_warm": round(float(ms[0] / ms[3:].mean() - 1), 4)}
    row = {"bench": "first_invoke", "model": str(args.model or "default"), "model_info": model.describe(),
           "threads": args.threads, "sequences": args.sequences, "length": length, "after": rows, **environment()}
    report_row(row, ("model", "threads", "after"), "first_invoke.jsonl", save=not args.no_save,
               results=args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
