"""Embed / read the `mask2face` metadata entry of a .tflite file with TensorFlow's own flatbuffer schema.

Contract (docs/ARCHITECTURE.md): a `Model.metadata` entry named "mask2face" whose buffer holds UTF-8 JSON. The
edge runtime reads it with a tiny pure-python reader (edge_runtime/tflite_file.py); this side writes it with
`tensorflow.lite.python.schema_py_generated` (the object API: ModelT / MetadataT / BufferT) and
`tensorflow.lite.tools.flatbuffer_utils` (the same helpers TF's own model tools use), so the file stays a valid
TFLite model that LiteRT loads unchanged. Other metadata entries (min_runtime_version, CONVERSION_METADATA) are kept.
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

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
    payload = np.frombuffer(json.dumps(meta, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    entries = [m for m in (model.metadata or []) if _name(m.name) != name]
    buf = schema_fb.BufferT()
    buf.data = payload
    model.buffers.append(buf)
    entry = schema_fb.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    model.metadata = entries + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


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
