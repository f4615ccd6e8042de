"""`mask2face export`: .tflite files of every precision + embedded metadata + delegate reports + manifest.

    mask2face export --preset cpu            # RUN/{teacher,student,qat} -> RUN/export/*.tflite
    mask2face export --preset cpu export.int8_io=true

Files: `{teacher|student}-{fp32|fp16|dynamic|int8|qat-int8}.tflite` (qat-int8 only for models with a QAT
checkpoint, i.e. the student), each with a `<name>.delegates.json` report beside it, and `manifest.json`.
- Batch is fixed to 1 (a concrete function with input spec [1,S,S,3]): the runtime and delegates see static shapes.
- fp16: float16 weights (dequantised at load on CPU; the GPU delegate runs them natively).
- dynamic: int8 weights, float activations (no representative data).
- int8: full-integer post-training quantisation calibrated on `export.representative_samples` training pairs
  (same preprocessing as training: RGB uint8 / 255), TFLITE_BUILTINS_INT8 only.
- qat-int8: the QAT model with `optimizations=[DEFAULT]` plus the representative dataset (observed with TF 2.21, not
  tested here: without it TFLITE_BUILTINS_INT8 fails; `optimizations=[DEFAULT]` alone gave a byte-identical file).
- export.int8_io=true: int8 input/output tensors for int8/qat-int8; the quantisation parameters are recorded in
  the metadata (input_quantization / output_quantization) so the runtime needs no other source.
Every file is loaded and run once in ai_edge_litert before it is kept.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from mask2face import runs  # noqa: E402
from mask2face.edge_runtime.align import DEFAULT_FRAMING  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402

PRECISIONS = ("fp32", "fp16", "dynamic", "int8", "qat-int8")


class ExportError(Mask2FaceError):
    """A model that cannot be converted or whose .tflite does not run."""


def representative_images(data_dir: Path, samples: int) -> np.ndarray:
    """Up to `samples` masked training inputs, uint8 (N,S,S,3); the representative dataset of int8 calibration."""
    from mask2face.train import pairs

    try:
        return pairs.load_split(Path(data_dir), "train", limit=samples)["masked"]
    except FileNotFoundError as exc:
        raise ExportError(f"int8 export needs training pairs for calibration: {exc}") from None


def convert(model, precision: str, rep_images: np.ndarray | None = None, int8_io: bool = False) -> bytes:
    """Keras model -> .tflite bytes at one precision, batch fixed to 1."""
    import tensorflow as tf

    size = tuple(int(d) for d in model.input_shape[1:])
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec((1,) + size, tf.float32, name="masked"))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision in ("int8", "qat-int8"):
        if rep_images is None or not len(rep_images):
            raise ExportError(f"{precision} export needs representative images")

        def rep():
            for img in rep_images:
                yield [img[None].astype(np.float32) / np.float32(255.0)]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    elif precision != "fp32":
        raise ExportError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    try:
        return bytes(conv.convert())
    except Exception as exc:  # the converter raises many types; one actionable line for the CLI
        raise ExportError(f"TFLite conversion to {precision} failed: {str(exc).splitlines()[0][:300]}") from exc


def io_quantization(model_bytes: bytes) -> tuple[dict | None, dict | None]:
    from mask2face.edge_runtime.model import new_interpreter

    it = new_interpreter(model_bytes, allocate=False)

    def q(detail):
        if detail["dtype"] in (np.int8, np.uint8):
            scale, zp = detail["quantization"]
            return {"scale": float(scale), "zero_point": int(zp), "dtype": np.dtype(detail["dtype"]).name}
        return None

    return q(it.get_input_details()[0]), q(it.get_output_details()[0])


def run_once(model_bytes: bytes, x01: np.ndarray) -> np.ndarray:
    """Run a .tflite on one float image in [0,1] (quantising int8 I/O), return float output in [0,1]."""
    from mask2face.edge_runtime.model import from_tensor, new_interpreter, to_tensor

    it = new_interpreter(model_bytes, 1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    x = x01[None].astype(np.float32) if x01.ndim == 3 else x01.astype(np.float32)
    it.set_tensor(inp["index"], to_tensor(inp, x))
    it.invoke()
    return from_tensor(out, it.get_tensor(out["index"]))[0]


def export_one(model, precision: str, out_path: Path, *, name: str, rep_images=None, int8_io=False,
               config_hash=None, parent_sha256=None, framing: dict | None = None) -> dict:
    """`framing`: the crop framing the model was trained on (edge_runtime.align.Framing's fields; None = the
    default)."""
    from mask2face.compress import delegates, tflite_metadata
    from mask2face.edge_runtime.inpaint import runtime_settings

    data = convert(model, precision, rep_images, int8_io and precision in ("int8", "qat-int8"))
    in_q, out_q = io_quantization(data)
    size = [int(model.input_shape[1]), int(model.input_shape[2])]
    channels = int(model.output_shape[-1])
    meta = tflite_metadata.build_metadata(
        name=name, precision=precision, input_size=size,
        output_channels=("r", "g", "b", "mask")[:channels] if channels <= 4 else [str(i) for i in range(channels)],
        input_quantization=in_q, output_quantization=out_q, config_hash=config_hash, parent_sha256=parent_sha256,
        # model.blend_input: the RGB channels already hold the input outside the model's own mask
        rgb_blended_by_mask=any(l.name in ("blend_add", "quant_blend_add") for l in model.layers),
        # the paste gates and blend the runtime uses with this file unless told otherwise (this version's)
        runtime=runtime_settings(),
        # where the eyes sit in the crop the model was trained on: the runtime cuts this model's crops so
        framing=dict(framing) if framing else DEFAULT_FRAMING.to_dict())
    data = tflite_metadata.embed(data, meta)
    try:  # every artifact must load and run before it is kept
        y = run_once(data, np.full((size[0], size[1], 3), 0.5, np.float32))
        if not np.all(np.isfinite(y)):
            raise ExportError("non-finite output")
    except Exception as exc:
        raise ExportError(f"{out_path.name} does not run in ai_edge_litert: {exc}") from exc
    runs.write_bytes(out_path, data)
    rep_path, rep = delegates.write_report(out_path)
    print(delegates.format_table(rep), file=sys.stderr)
    return {"file": out_path.name, "bytes": len(data), "precision": precision, "model": name,
            "gpu_compatible": rep["gpu_compatible"], "xnnpack_partitions": rep["xnnpack_partitions"],
            "delegate_report": rep_path.name, "input_quantization": in_q, "output_quantization": out_q}


def training_framing(cfg, data_dir: Path) -> dict:
    """The crop framing the run's models learned: its pairs folder's (what `mask2face data` made), else the config's."""
    from mask2face.train import pairs

    if (Path(data_dir) / "dataset.json").is_file():
        return pairs.data_framing(data_dir)
    return {"eye_line": cfg.data.eye_line, "eye_distance": cfg.data.eye_distance}


def _sources(cfg, args, run_dir: Path) -> list[tuple[str, str, Path]]:
    """(name, kind, path) of the Keras models to export; kind 'float' or 'qat'."""
    given = getattr(args, "model", None)
    if given:
        out = []
        for p in given:
            p = Path(p)
            kind = "qat" if (p.parent / "qat_spec.json").exists() else "float"
            name = "student" if kind == "qat" or "student" in str(p) else ("teacher" if "teacher" in str(p)
                                                                            else p.stem)
            out.append((name, kind, p))
        return out
    out = [("teacher", "float", run_dir / "teacher" / "best.keras"),
           ("student", "float", run_dir / "student" / "best.keras"),
           ("student", "qat", run_dir / "qat" / "best.keras")]
    return [s for s in out if s[2].is_file()]


def cli_main(cfg, args) -> int:
    from mask2face import config as config_mod
    from mask2face.compress.qat import load_qat_model
    from mask2face.train import student_arch  # noqa: F401  (registers DepthToSpace)
    from mask2face.train.models import load_model

    cfg = cfg or config_mod.load("cpu")
    run_dir = runs.run_dir(cfg, args)
    out_dir = Path(getattr(args, "out", None) or run_dir / "export")
    data_dir = run_dir / "data"
    ec = cfg.export
    sources = _sources(cfg, args, run_dir)
    if not sources:
        raise ExportError(f"no models to export in {run_dir} (teacher/, student/, qat/): run train/distill/qat "
                          "first or pass --model PATH")
    bad = [p for p in ec.precisions if p not in PRECISIONS]
    if bad:
        raise ExportError(f"unknown precision(s) {bad}; choose from {', '.join(PRECISIONS)}")
    rep_images = None
    if any(p in ("int8", "qat-int8") for p in ec.precisions):
        rep_images = representative_images(data_dir, ec.representative_samples)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, outputs = [], []
    chash = config_mod.config_hash(cfg)
    framing = training_framing(cfg, data_dir)
    for name, kind, path in sources:
        model = load_qat_model(path) if kind == "qat" else load_model(path)
        parent = runs.sha256_file(path)
        precisions = ["qat-int8"] if kind == "qat" else [p for p in ec.precisions if p != "qat-int8"]
        precisions = [p for p in precisions if p in ec.precisions]
        for precision in precisions:
            target = out_dir / f"{name}-{precision}.tflite"
            print(f"export: {path} -> {target.name}", file=sys.stderr)
            row = export_one(model, precision, target, name=name, rep_images=rep_images, int8_io=ec.int8_io,
                             config_hash=chash, parent_sha256=parent, framing=framing)
            row["parent"] = str(path)
            rows.append(row)
            outputs += [target, target.with_suffix(".delegates.json")]
    runs.write_manifest(out_dir, stage="export", config=config_mod.to_dict(cfg),
                        inputs=[p for _, _, p in sources], outputs=outputs,
                        parents=[str(p) for _, _, p in sources], extra={"artifacts": rows})
    print(f"{'file':<28}{'bytes':>10}  GPU  XNNPACK partitions")
    for r in rows:
        print(f"{r['file']:<28}{r['bytes']:>10}  {'yes' if r['gpu_compatible'] else 'NO ':<4} {r['xnnpack_partitions']}")
    print(f"export: {len(rows)} files in {out_dir}")
    return 0
