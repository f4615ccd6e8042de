"""The `mask2face` command. Every verb imports its module lazily so that `mask2face --help` stays instant
(no TensorFlow, no dlib)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from pathlib import Path

# verb -> (module, help). Each module exposes `cli_main(cfg, args) -> int`.
VERBS = {
    "data": ("mask2face.train.dataset", "faces folder -> masked/clean training pairs (sharded, split by identity)"),
    "train": ("mask2face.train.fit", "train the teacher U-Net on the pairs"),
    "eval": ("mask2face.train.evaluate", "PSNR/SSIM/L1 (whole + masked region), identity distance, baselines"),
    "distill": ("mask2face.compress.distill", "distill the teacher into the slim student"),
    "classifier": ("mask2face.compress.classifier_export",
                   "train the per-face mask / no-mask classifier on the pairs and export it (int8 .tflite)"),
    "qat": ("mask2face.compress.qat", "quantization-aware fine-tuning of the student"),
    "export": ("mask2face.compress.export", "write fp32/fp16/dynamic/int8/qat-int8 .tflite files + delegate report"),
    "remove": ("mask2face.edge_runtime.cli", "remove masks from photos, folders, videos or a camera (no TensorFlow)"),
    "web": ("mask2face.web.server", "serve the browser page (LiteRT.js) with the shipped models on localhost"),
    "bench": ("mask2face.benchmarks.bench", "latency + quality table of .tflite artifacts"),
    "pipeline": ("mask2face.pipeline", "data -> train -> distill -> qat -> export -> bench in one run directory"),
    "demo": ("mask2face.demo", "contact sheet / before-after picture from a face that ships in a dependency"),
}

# Verbs that take a preset + key=value overrides (the TensorFlow side).
CONFIGURED = {"data", "train", "classifier", "eval", "distill", "qat", "export", "bench", "pipeline", "demo"}

# What each verb imports beyond the [edge] install, checked before the verb starts (and before it writes anything),
# so that a board with only `mask2face[edge]` gets one line naming the extra instead of a traceback.
_TF = ("tensorflow", "tf_keras")
NEEDS = {"data": ("dlib", "face_recognition_models"), "train": _TF, "classifier": _TF, "eval": _TF + ("dlib", "face_recognition_models"),
         "distill": _TF + ("tensorflow_model_optimization",), "qat": _TF + ("tensorflow_model_optimization",),
         "export": _TF + ("tensorflow_model_optimization",),
         "pipeline": _TF + ("tensorflow_model_optimization", "dlib", "face_recognition_models"),
         "demo": ("dlib", "face_recognition_models", "skimage")}


def missing_packages(verb: str) -> list[str]:
    """The modules `verb` needs that are not installed (found without importing them)."""
    import importlib.util
    return [name for name in NEEDS.get(verb, ()) if importlib.util.find_spec(name) is None]


def install_hint(verb: str, missing: list[str]) -> str:
    return (f"needs {', '.join(missing)}, which `mask2face[edge]` does not install: pip install \"mask2face[train]\" "
            "(from a clone: pip install \".[train]\"). Removing masks (`mask2face remove`) needs only [edge].")


def _add_common(p: argparse.ArgumentParser) -> None:
    from mask2face.config import PRESETS    # standard library only: --help stays instant
    p.add_argument("--preset", default="cpu", help=f"{' | '.join(PRESETS)} (default: cpu)")
    p.add_argument("--run", type=Path, default=None,
                   help="run directory (default: runs/<preset>); each stage writes a sub-folder there")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, e.g. train.epochs=3 data.image_size=96")


def build_parser() -> argparse.ArgumentParser:
    from mask2face.config import PRESETS
    parser = argparse.ArgumentParser(
        prog="mask2face", allow_abbrev=False,
        description="Remove face masks from photos with a small, fast TFLite model.",
        epilog=f"Run `mask2face VERB --help` for a verb's options. Configs: presets {'|'.join(PRESETS)} + "
               "key=value.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb, (_, help_text) in VERBS.items():
        # allow_abbrev=False: `bench --model X` must be an error, not silently `--models X`
        p = sub.add_parser(verb, help=help_text, description=help_text, allow_abbrev=False)
        add_args = _VERB_ARGS.get(verb)
        if add_args:
            add_args(p)
        if verb in CONFIGURED:
            _add_common(p)
    return parser


def _data_args(p):
    p.add_argument("--faces", type=Path, action="append", help="folder of face photos (repeatable)")
    p.add_argument("--out", type=Path, help="output folder for pairs (default: RUN/data)")
    p.add_argument("--workers", type=int, default=None, help="local processes (default: data.workers)")
    p.add_argument("--shard", default=None, help="i/n: this machine's part of the work (cluster use)")
    p.add_argument("--contact-sheet", action="store_true", help="also write contact_sheet.png of examples")
    p.add_argument("--bench", action="store_true", help="print detection / cached throughput (pairs/s)")


def _train_args(p):
    p.add_argument("--data", type=Path, help="pairs folder (default: RUN/data)")
    p.add_argument("--out", type=Path, help="checkpoint folder (default: RUN/teacher)")
    p.add_argument("--strategy", choices=["default", "mirrored", "multiworker"], default=None,
                   help="tf.distribute strategy (default: train.strategy; multiworker reads TF_CONFIG)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0,
                   help="also save last.keras every N minutes inside an epoch (default 5)")
    p.add_argument("--checkpoint-steps", type=int, default=0, help="also save last.keras every N steps (0 = off)")


def _eval_args(p):
    p.add_argument("--data", type=Path, help="pairs folder (default: RUN/data)")
    p.add_argument("--model", type=Path, help="Keras model or .tflite to evaluate (default: RUN/teacher/best)")
    p.add_argument("--split", default="test", help="pairs split to score: train | val | test (default test)")
    p.add_argument("--out", type=Path, help="report folder (default: RUN/eval)")


def _classifier_args(p):
    p.add_argument("--data", type=Path, action="append",
                   help="pairs folder made by `mask2face data` (repeatable; default: RUN/data)")
    p.add_argument("--out", type=Path, help="folder for checkpoints and the .tflite (default: RUN/classifier)")
    p.add_argument("--limit", type=int, default=0, help="at most this many pairs per folder and split (0: all)")
    p.add_argument("--export-only", action="store_true",
                   help="export the trained OUT/calibrated.keras again (e.g. with another classifier.threshold)")


def _distill_args(p):
    p.add_argument("--data", type=Path, help="pairs folder (default: RUN/data)")
    p.add_argument("--teacher", type=Path, help="teacher Keras model (default: RUN/teacher/best.keras)")
    p.add_argument("--out", type=Path, help="student checkpoint folder (default: RUN/student)")


def _qat_args(p):
    p.add_argument("--data", type=Path, help="pairs folder (default: RUN/data)")
    p.add_argument("--student", type=Path, help="float student to fine-tune (default: RUN/student/best.keras)")
    p.add_argument("--out", type=Path, help="QAT checkpoint folder (default: RUN/qat)")


def _export_args(p):
    p.add_argument("--model", type=Path, action="append", help="Keras model(s) to export (default: run's)")
    p.add_argument("--out", type=Path, help="folder for the .tflite files and their reports (default: RUN/export)")


def bounded(cast, low, high, what: str):
    """argparse type: `cast(text)` within [low, high], refused before any model loads."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if not low <= value <= high:   # nan fails this too
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value
    return parse


positive_int = bounded(int, 1, 256, "a whole number")     # threads, chunk sizes
share = bounded(float, 0.0, 1.0, "a number")               # --min-change


def _remove_args(p):
    p.add_argument("inputs", nargs="*", type=Path, help="images, folders (recursive) or video files")
    p.add_argument("--out", type=Path, required=False, help="output folder")
    p.add_argument("--model", type=Path,
                   help="default (the shipped model; 'mixed' is an alias of it) or a .tflite made by "
                        "`mask2face export`")
    p.add_argument("--mask-threshold", type=share, default=None, metavar="P",
                   help="restore a face only if the mask classifier gives it a mask probability of at least P "
                        "(0-1; default: the threshold stored in the classifier). Lower restores more masks and "
                        "changes more faces of unmasked people; the trade-off is in README, 'Masked or not'")
    p.add_argument("--classifier", default=None, metavar="C",
                   help="the mask classifier that decides which faces are restored: default (shipped), a .tflite "
                        "made by `mask2face classifier`, or none (the inpainting model's own mask decides alone)")
    p.add_argument("--camera", type=int, default=None, help="camera index")
    p.add_argument("--delegate", default="cpu", help="cpu | gpu | nnapi (falls back to cpu with a warning)")
    p.add_argument("--threads", type=positive_int, default=2, help="model threads (default 2)")
    p.add_argument("--detector-threads", type=positive_int, default=None,
                   help="face detector threads (default: --threads)")
    p.add_argument("--chunk", type=positive_int, default=None,
                   help="photos or video frames detected before the model runs on all their faces back to back "
                        "(warm; default 8; 1 = one at a time, least memory)")
    p.add_argument("--redetect-every", type=positive_int, default=None, metavar="N",
                   help="videos and the camera: follow faces from frame to frame and run the full face detector "
                        "every N frames (default 10: a face that comes in is found within N frames; 1 = every "
                        "frame). Photos always get the full detector")
    p.add_argument("--min-change", type=share, default=None, metavar="X",
                   help="a second safety net after the mask decision: paste a face only if the model changes its "
                        "masked region by at least X on average (0-1; default 0: off). With --classifier none, "
                        "0.08 leaves about half of bare faces alone (README, 'Masked or not')")
    p.add_argument("--summary", type=Path, help="JSON summary path (default: OUT/summary.json)")
    p.add_argument("--skip-existing", action="store_true",
                   help="leave files whose output already exists (e.g. to finish a batch stopped with Ctrl-C)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs another input made (another run into the same --out) or that no record "
                        "explains; without it they are listed as errors and left alone")
    p.add_argument("--max-file-mb", type=bounded(int, 1, 2048, "a whole number"), default=None, metavar="N",
                   help="photos larger than N MiB are listed as errors without being read (default 256)")


def _bench_args(p):
    p.add_argument("--models", type=Path, nargs="*", help=".tflite files or folders (default: RUN/export)")
    p.add_argument("--data", type=Path, help="pairs folder for quality (default: RUN/data)")
    p.add_argument("--out", type=Path, help="results folder (default: RUN/bench)")
    p.add_argument("--what", default="models",
                   help="models (size, latency, quality of .tflite files) | runtime (photos/s end to end; --models "
                        "FILE, --data PAIRS for masked photos) | detect (face finding on real-masked-dev)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true",
                     help="print one JSON document to stdout: a row per artifact and thread count (p50/p90/p99 ms, "
                          "bytes, PSNR/SSIM whole and masked, sharpness, structure, blockiness, seam), baseline rows (masked "
                          "input, cv2.inpaint TELEA and NS), failed files as rows with their error, the environment")
    fmt.add_argument("--csv", action="store_true", help="the same rows as CSV on stdout")


def _pipeline_args(p):
    p.add_argument("--faces", type=Path, action="append", help="folder of face photos (repeatable)")
    p.add_argument("--until", default="bench", help="last stage to run")


def _demo_args(p):
    p.add_argument("--out", type=Path, default=Path("mask2face-demo"),
                   help="folder for mask_types.png and before_after.png (default: ./mask2face-demo; the README's "
                        "pictures: --out docs/images)")
    p.add_argument("--compare", action="append", default=[], metavar="LABEL=MODEL.tflite",
                   help="also show this model, pasted back as `remove` pastes it, in before_after.png "
                        "(repeatable), e.g. --compare 0.5.0=models/cpu/export/student-qat-int8.tflite")
    p.add_argument("--compare-classifier", default=None, metavar="C.tflite",
                   help="the mask classifier the --compare columns decide with (default: the shipped one)")


def _web_args(p):
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any free port)")
    p.add_argument("--no-open", action="store_true", help="do not open a browser, only print the URL")
    p.add_argument("--install", action="store_true",
                   help="first fetch LiteRT.js from npm into the user's cache (needs npm and the registry once)")
    p.add_argument("--litertjs", type=Path, default=None, help="an @litertjs folder (with core/ and wasm-utils/) to serve")


_VERB_ARGS = {"web": _web_args, "data": _data_args, "train": _train_args, "classifier": _classifier_args, "eval": _eval_args, "distill": _distill_args,
              "qat": _qat_args, "export": _export_args, "remove": _remove_args, "bench": _bench_args,
              "pipeline": _pipeline_args, "demo": _demo_args}


def _import_verb(verb: str):
    """The verb's module, imported with TensorFlow's native start-up lines (CUDA probing on a machine without a GPU,
    the oneDNN notice) filtered out of stderr; TensorFlow probes its devices here too, inside the filter."""
    from mask2face.edge_runtime.native_log import filtered_stderr

    with filtered_stderr():
        if "tensorflow" in NEEDS.get(verb, ()):   # verbs that import it lazily would print the lines later
            importlib.import_module("tensorflow").config.list_physical_devices()
        return importlib.import_module(VERBS[verb][0])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may come after options too (`--model M export.int8_io=true`): argparse fills a
    # nargs="*" positional only once, so later ones arrive as leftovers and are added here.
    args, leftovers = parser.parse_known_args(argv)
    late = [a for a in leftovers if "=" in a and not a.startswith("-")]
    unknown = [a for a in leftovers if a not in late]
    if unknown or (late and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown or late)}")
    if late:
        args.overrides = list(args.overrides or []) + late
    if args.version:
        from mask2face import __version__
        print(f"mask2face {__version__}")
        return 0
    if not args.verb:
        parser.print_help()
        return 0
    from mask2face.edge_runtime.errors import Mask2FaceError
    if args.verb == "remove":
        # `timeout`, `docker stop` and systemd send SIGTERM: end like Ctrl-C (finished outputs kept, temp files
        # removed, one line) instead of dying mid-write. Not for verbs with worker pools, whose children get
        # SIGTERM from pool.terminate() as a normal end.
        signal.signal(signal.SIGTERM, _terminate)
    missing = missing_packages(args.verb)
    if missing:
        print(f"mask2face {args.verb}: error: {install_hint(args.verb, missing)}", file=sys.stderr)
        return 2
    try:
        cfg = None
        if args.verb in CONFIGURED:
            from mask2face import config
            cfg = config.load(args.preset, args.overrides)
            if args.run is None:
                args.run = Path("runs") / args.preset
            # Before TensorFlow loads: tfmot needs tf_keras models, and C++ INFO/WARNING lines bury our progress.
            os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        module = _import_verb(args.verb)
        return int(module.cli_main(cfg, args) or 0)
    except ModuleNotFoundError as exc:   # a package an option needs (e.g. scikit-image for a benchmark's extra rows)
        print(f"mask2face {args.verb}: error: {install_hint(args.verb, [exc.name or str(exc)])}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mask2face: interrupted; finished parts are kept. Run the same command again to resume.", file=sys.stderr)
        return 130
    except (Mask2FaceError, ValueError) as exc:  # ConfigError is a ValueError; DiskFullError a Mask2FaceError
        print(f"mask2face {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path that cannot be read or written: permissions, a read-only disk, /proc, ...
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"mask2face {args.verb}: error: {exc.strerror or exc}{where}: check the path and its permissions",
              file=sys.stderr)
        return 2
    except MemoryError:
        advice = ("use --chunk 1 and smaller photos" if args.verb == "remove"
                  else "lower the batch size (e.g. train.batch_size=4)")
        print(f"mask2face {args.verb}: error: out of memory; {advice}", file=sys.stderr)
        return 2


def _terminate(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
