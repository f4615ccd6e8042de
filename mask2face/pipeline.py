"""`mask2face pipeline`: data -> train -> distill -> qat -> export -> bench in one run directory.

Each stage is the same code as its own verb, called with that verb's default arguments, so a pipeline run and a
stage-by-stage run produce the same files. Stages resume / skip on their own (checkpoints, finished shards), so
re-running an interrupted pipeline picks up where it stopped.
"""

from __future__ import annotations

import argparse
import importlib
import time

from mask2face import runs
from mask2face.cli import VERBS, build_parser
from mask2face.config import to_dict
from mask2face.edge_runtime.errors import Mask2FaceError

STAGES = ("data", "train", "distill", "qat", "export", "bench")


def _stage_args(verb: str, args: argparse.Namespace) -> argparse.Namespace:
    """The verb's own defaults, with the pipeline's preset, run dir and faces."""
    parser = build_parser()
    base = ["--faces", str(args.faces[0])] if verb == "data" else []
    ns = parser.parse_args([verb, *base, "--preset", args.preset])
    ns.run = args.run
    if verb == "data" and args.faces:
        ns.faces = list(args.faces)
    return ns


def cli_main(cfg, args: argparse.Namespace) -> int:
    if args.until not in STAGES:
        raise Mask2FaceError(f"--until {args.until!r}: choose one of {', '.join(STAGES)}")
    if not args.faces:
        raise Mask2FaceError("pipeline needs --faces DIR (a folder of face photos, e.g. ../shared/data/lfw)")
    runs.init_run(args.run, to_dict(cfg))
    timings = {}
    for verb in STAGES[: STAGES.index(args.until) + 1]:
        print(f"== mask2face pipeline: {verb} (run {args.run})", flush=True)
        start = time.perf_counter()
        module = importlib.import_module(VERBS[verb][0])
        code = int(module.cli_main(cfg, _stage_args(verb, args)) or 0)
        timings[verb] = round(time.perf_counter() - start, 1)
        if code:
            print(f"mask2face pipeline: stage {verb} failed (exit {code}); fix it and run the same command again")
            return code
    runs.write_json(args.run / "pipeline.json", {"stages": timings})
    print(f"mask2face pipeline: done in {sum(timings.values()):.0f} s; artifacts in {args.run}/export, table in "
          f"{args.run}/bench")
    return 0
