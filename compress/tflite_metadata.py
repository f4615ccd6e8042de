"""Embed / read the `mask2face` metadata entry of a .tflite file with TensorFlow's own flatbuffer schema.

Contract (docs/ARCHITECTURE.md): a `Model.metadata` entry named "mask2face" whose buffer holds UTF-8 JSON. The
edge runtime reads it with a tiny pure-python reader (edge_runtime/tflite_file.py); this side writes it with
`tensorflow.lite.python.schema_py_generated` (the object API: ModelT / MetadataT / BufferT) and
`tensorflow.lite.tools.flatbuffer_utils` (the same helpers TF's own model tools use), so the file stays a valid
TFLite model that LiteRT loads unchanged. Other metadata entries (min_runtime_version, CONVERSION_METADATA) are kept.

Every file written by `embed` carries `weights_sha256` (tflite_file.weights_digest: sha256 of the file with those
64 hex digits read as "0"s), which the runtime checks on load. A file exported before the digest existed gets one,
with its weights, graph and other metadata unchanged, by

    python -m mask2face.compress.tflite_metadata --stamp FILE.tflite [FILE.tflite ...] [--runtime]

(`--runtime` also writes the runtime settings `mask2face export` writes: the paste gates and blend the file is used
with, `edge_runtime.inpaint.runtime_settings`.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from mask2face.edge_runtime import tflite_file  # noqa: E402

METADATA_NAME = "mask2face"
METADATA_VERSION = 1


def build_metadata(*, name: str, precision: str, input_size, output_channels=("r", "g", "b", "mask"),
                   input_quantization=None, output_quantization=None, config_hash: str | None = None,
                   parent_sha256: str | None = None, version: int = METADATA_VERSION, **extra) -> dict:
    """The metadata dict with every field the contract names (extra keys are allowed and kept)."""
    meta = {
        "name": name,
        "version": version,
        "precision": precision,
        "input_size": [int(input_size[0]), int(input_size[1])],
        "color_order": "RGB",
        "input_range": [0, 1],
        "normalization": "x = pixel / 255",
        "output_channels": list(output_channels),
        "output_range": [0, 1],
        "input_quantization": input_quantization,
        "output_quantization": output_quantization,
        "config_hash": config_hash,
        "parent_sha256": parent_sha256,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta.update(extra)
    return meta


def _name(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def embed(model_bytes: bytes, meta: dict, name: str = METADATA_NAME) -> bytes:
    """Return `model_bytes` with metadata entry `name` set to UTF-8 JSON of `meta` (replacing an old one)."""
    from tensorflow.lite.python import schema_py_generated as schema_fb
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    payload = np.frombuffer(json.dumps(embed_placeholder(meta), sort_keys=True).encode("utf-8"), dtype=np.uint8)
    entries = [m for m in (model.metadata or []) if _name(m.name) != name]
    buf = schema_fb.BufferT()
    buf.data = payload
    model.buffers.append(buf)
    entry = schema_fb.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = entries + [entry]
    return sign(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def embed_placeholder(meta: dict) -> dict:
    """`meta` with a digest of "0"s: the JSON then has its final length, and `sign` writes the digest in place."""
    return {**meta, tflite_file.DIGEST_FIELD: "0" * 64}


def sign(model_bytes: bytes) -> bytes:
    """Write the weights digest into the 64 digits the mask2face entry holds for it (the file keeps its size)."""
    info = tflite_file.parse(model_bytes)
    span = tflite_file.digest_span(model_bytes, info)
    if span is None:
        raise ValueError("the mask2face metadata has no weights_sha256 field to sign")
    digest = tflite_file.weights_digest(model_bytes, span).encode("ascii")
    return model_bytes[:span[0]] + digest + model_bytes[span[1]:]


def weight_buffers(model_bytes: bytes) -> list[bytes]:
    """Every buffer that is not a metadata entry, in order: what must stay byte-identical when metadata changes."""
    info = tflite_file.parse(model_bytes)
    used = [t.buffer for g in info.subgraphs for t in g.tensors]
    data = tflite_file.buffer_data(model_bytes)
    return [data[i] for i in sorted(set(used))]


def stamp(model_bytes: bytes, runtime: dict | None = None) -> bytes:
    """A file from an older export with a weights digest added to its mask2face entry and, when `runtime` is
    given, its `runtime` field set to it (every other field, every weight and the graph unchanged: checked). A file
    that already has both comes back as it is; one whose digest does not match is refused (ModelFileError)."""
    info = tflite_file.parse(model_bytes)
    meta = info.mask2face_metadata()
    if meta is None:
        raise ValueError("the file has no mask2face metadata entry; export it with `mask2face export`")
    if runtime is not None:
        meta = {**meta, "runtime": runtime}
    if tflite_file.verify_digest(model_bytes, info) and meta == info.mask2face_metadata():
        return model_bytes   # already stamped: stamping again changes nothing
    stamped = embed(model_bytes, embed_placeholder(meta))
    if weight_buffers(stamped) != weight_buffers(model_bytes):
        raise ValueError("re-writing the metadata changed the weights; file left unchanged")
    return stamped


def read_all(model_bytes: bytes) -> dict[str, bytes]:
    """Every metadata entry: name -> raw buffer bytes (TF schema reader; the test twin of the edge reader)."""
    from tensorflow.lite.python import schema_py_generated as schema_fb

    model = schema_fb.Model.GetRootAsModel(bytearray(model_bytes), 0)
    out = {}
    for i in range(model.MetadataLength()):
        m = model.Metadata(i)
        b = model.Buffers(m.Buffer())
        if b.Offset() > 1:  # large models store buffers after the flatbuffer
            data = bytes(model_bytes[b.Offset():b.Offset() + b.Size()])
        else:
            data = b.DataAsNumpy().tobytes() if b.DataLength() else b""
        out[_name(m.Name())] = data
    return out


def read(model_bytes: bytes, name: str = METADATA_NAME) -> dict | None:
    raw = read_all(model_bytes).get(name)
    return None if raw is None else json.loads(raw.decode("utf-8"))


def op_names(model_bytes: bytes) -> list[str]:
    """Builtin operator names of every op in every subgraph, in graph order (from the flatbuffer op codes)."""
    from tensorflow.lite.python import schema_py_generated as schema_fb
    from tensorflow.lite.python import schema_util

    names = {v: k for k, v in vars(schema_fb.BuiltinOperator).items() if not k.startswith("_")}
    model = schema_fb.Model.GetRootAsModel(bytearray(model_bytes), 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = schema_util.get_builtin_code_from_operator_code(oc)
        codes.append(oc.CustomCode().decode() if code == schema_fb.BuiltinOperator.CUSTOM and oc.CustomCode()
                     else names.get(code, f"BUILTIN_{code}"))
    out = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for o in range(sg.OperatorsLength()):
            out.append(codes[sg.Operators(o).OpcodeIndex()])
    return out


def update_manifest(path: Path, data: bytes) -> bool:
    """A stage manifest beside `path` (mask2face.runs.write_manifest) lists its sha256 and size: keep them true."""
    import hashlib

    from mask2face import runs

    manifest_path = path.parent / "manifest.json"
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text())
    found = False
    for entry in manifest.get("outputs", []):
        if Path(entry.get("path", "")).name == path.name:
            entry.update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
            found = True
    for row in manifest.get("artifacts", []):
        if row.get("file") == path.name:
            row["bytes"] = len(data)
    if found:
        runs.write_json(manifest_path, manifest)
    return found


def main(argv: list[str] | None = None) -> int:
    """`--stamp FILE...`: add the weights digest to exported files in place (atomically), and keep a manifest.json
    beside a file true to it."""
    parser = argparse.ArgumentParser(prog="python -m mask2face.compress.tflite_metadata",
                                     description="Add the weights digest to .tflite files exported without one.")
    parser.add_argument("--stamp", nargs="+", type=Path, required=True, metavar="FILE")
    parser.add_argument("--runtime", action="store_true",
                        help="also write this version's runtime settings (paste gates and blend: "
                             "edge_runtime.inpaint.runtime_settings) into each file, as `mask2face export` does")
    args = parser.parse_args(argv)
    from mask2face import runs

    runtime = None
    if args.runtime:
        from mask2face.edge_runtime.inpaint import runtime_settings
        runtime = runtime_settings()

    for path in args.stamp:
        try:
            before = path.read_bytes()
            after = stamp(before, runtime)
        except (OSError, ValueError, tflite_file.ModelFileError) as exc:
            print(f"{path}: not stamped: {exc}", file=sys.stderr)
            return 2
        runs.write_bytes(path, after)
        digest = tflite_file.parse(after).mask2face_metadata()[tflite_file.DIGEST_FIELD]
        listed = " (manifest.json updated)" if update_manifest(path, after) else ""
        print(f"{path}: weights_sha256 {digest} ({len(before)} -> {len(after)} bytes){listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
