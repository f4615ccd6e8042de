"""Malformed .tflite files made from a good one, for the fuzz tests (test_model_fuzz.py).

Most mutations edit bytes in place (the file keeps its size), found with the runtime's own bounds-checked reader:
a quantisation scale or zero point, a shape dimension, an operator's tensor index, a random bit, the identifier.
A mutation of a signed file can be signed again (`resign`), as a hostile exporter would: then the digest passes and
the graph checks alone must catch it. Metadata fields get values of the wrong type (`metadata_variants`).
"""

from __future__ import annotations

import json
import random
import struct

from mask2face.edge_runtime import tflite_file as tf_

SCALE_EDGES = (float("inf"), float("-inf"), float("nan"), 0.0, -0.0, -1.0, -1e-3)
ZERO_POINT_EDGES = (1000, -1000, 128, -129, 256, 1 << 40, -(1 << 40))
DIM_EDGES = (-1, -5, -(1 << 31), 1 << 30, (1 << 31) - 1, 100_000)


def _walk(data: bytes):
    """(kind, position, fmt) of every editable scalar: scales, zero points, shape dims, operator tensor indices."""
    r = tf_._Reader(data, "fuzz")
    model = r.table(r.indirect(0))
    for g in model.tables(tf_.MODEL_SUBGRAPHS):
        for t in g.tables(tf_.SUBGRAPH_TENSORS):
            p = t.field_pos(tf_.TENSOR_SHAPE)
            if p is not None:
                first, n = r.vector(p, 4)
                yield from (("dim", first + 4 * i, "<i") for i in range(n))
            q = t.table(tf_.TENSOR_QUANTIZATION)
            if q is None:
                continue
            for field, kind, size, fmt in ((tf_.QUANT_SCALE, "scale", 4, "<f"), (tf_.QUANT_ZERO_POINT, "zp", 8, "<q")):
                p = q.field_pos(field)
                if p is not None:
                    first, n = r.vector(p, size)
                    yield from ((kind, first + size * i, fmt) for i in range(n))
        for op in g.tables(tf_.SUBGRAPH_OPERATORS):
            for field, kind in ((tf_.OPERATOR_INPUTS, "op-in"), (tf_.OPERATOR_OUTPUTS, "op-out")):
                p = op.field_pos(field)
                if p is not None:
                    first, n = r.vector(p, 4)
                    yield from ((kind, first + 4 * i, "<i") for i in range(n))


def _put(data: bytes, pos: int, fmt: str, value) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, pos, value)
    return bytes(b)


def resign(data: bytes) -> bytes:
    """`data` with its digest recomputed (a no-op for a file that carries none)."""
    try:
        span = tf_.digest_span(data, tf_.parse(data))
    except tf_.ModelFileError:   # a flip that broke the file's layout or its metadata: nothing to sign
        return data
    if span is None:
        return data
    return data[:span[0]] + tf_.weights_digest(data, span).encode() + data[span[1]:]


def unsign(data: bytes) -> bytes:
    """The same file without a digest (the field renamed in place): what an older export or another tool gives."""
    at = data.find(b'"weights_sha256"')
    assert at > 0
    return data[:at] + b'"weights_sha2xx"' + data[at + 16:]


def structural(data: bytes, rng: random.Random, per_kind: int) -> list[tuple[str, bytes]]:
    """(label, bytes): every scale / zero-point edge on a sample of tensors, rewired operators, huge shapes."""
    spots: dict[str, list[tuple[int, str]]] = {}
    for kind, pos, fmt in _walk(data):
        spots.setdefault(kind, []).append((pos, fmt))
    n_tensors = sum(len(g.tensors) for g in tf_.parse(data).subgraphs)
    out = []
    for kind, edges in (("scale", SCALE_EDGES), ("zp", ZERO_POINT_EDGES), ("dim", DIM_EDGES)):
        for value in edges:
            for pos, fmt in rng.sample(spots.get(kind, []), min(per_kind, len(spots.get(kind, [])))):
                out.append((f"{kind}={value}@{pos}", _put(data, pos, fmt, value)))
    for kind in ("op-in", "op-out"):
        for pos, fmt in rng.sample(spots[kind], min(6 * per_kind, len(spots[kind]))):
            value = rng.choice([rng.randrange(n_tensors), rng.randrange(n_tensors), -1, n_tensors, 1 << 30, -7])
            out.append((f"{kind}={value}@{pos}", _put(data, pos, fmt, value)))
    return out


def bit_flips(data: bytes, rng: random.Random, count: int) -> list[tuple[str, bytes]]:
    out = []
    for k in range(count):
        b = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b[rng.randrange(8, len(b))] ^= 1 << rng.randrange(8)
        out.append((f"bitflip-{k}", bytes(b)))
    return out


def truncations(data: bytes, count: int) -> list[tuple[str, bytes]]:
    return [(f"truncated-{n}", data[:n]) for n in range(0, len(data), max(1, len(data) // count))][:count]


def identifiers(data: bytes) -> list[tuple[str, bytes]]:
    return [(f"identifier-{ident!r}", data[:4] + ident + data[8:])
            for ident in (b"TFL2", b"tfl3", b"\0\0\0\0", b"ONNX")]


# Metadata entries of the wrong type: each one a TypeError / ValueError somewhere before the contract was checked.
BAD_METADATA = {
    "output_channels": [7, "7", ["r", "g"], ["r", 1, "b", "mask"], [], None, {"r": 1}],
    "input_size": [7, [64], ["64", "64"], [-64, 64], [0, 0], None, [64.5, 64]],
    "input_range": [1, [1, 0], ["0", "1"], [0, float("inf")], None],
    "output_range": [0, [0], [None, 1]],
    "color_order": [1, "YUV", None, ["R", "G", "B"]],
    "input_quantization": [1, "x", {"scale": 0, "zero_point": 0}, {"scale": "a"}, {"scale": 1, "zero_point": 1.5}],
    "output_quantization": [[1], {"scale": -1, "zero_point": 0}],
    "rgb_blended_by_mask": ["yes", 1],
    "version": ["1", 1.5],
    "name": [7, ["x"]],
    "weights_sha256": [7, "abc", "G" * 64],
}


def metadata_variants(data: bytes) -> list[tuple[str, bytes]]:
    """The file with one metadata field of the wrong type, signed again (so only the type checks can stop it).
    The value is rewritten in place, padded with JSON whitespace, so the file keeps its layout (no TF needed)."""
    out = []
    for key, values in BAD_METADATA.items():
        for value in values:
            blob = _with_field(data, key, json.dumps(value))
            if blob is not None:
                out.append((f"meta-{key}={json.dumps(value)}", blob if key == "weights_sha256" else resign(blob)))
    span = tf_.parse(data).metadata_spans["mask2face"]
    size = span[1] - span[0]
    for label, payload in (("meta-not-json", b"\xff\xfe{not json"), ("meta-list", b"[1, 2, 3]")):
        out.append((label, data[:span[0]] + payload.ljust(size) + data[span[1]:]))
    return out


def _with_field(data: bytes, key: str, text: str) -> bytes | None:
    """`data` with the JSON value of `key` in the mask2face entry replaced by `text` (None if it does not fit)."""
    start, end = tf_.parse(data).metadata_spans["mask2face"]
    payload = data[start:end].decode("utf-8")
    at = payload.find(json.dumps(key) + ":")
    if at < 0:
        return None
    value_at = at + len(json.dumps(key)) + 1
    while payload[value_at] == " ":
        value_at += 1
    _, value_end = json.JSONDecoder().raw_decode(payload, value_at)
    if len(text) > value_end - value_at:
        return None
    payload = payload[:value_at] + text.ljust(value_end - value_at) + payload[value_end:]
    return data[:start] + payload.encode("utf-8") + data[end:]


def corpus(signed: bytes, seed: int = 0, per_kind: int = 3, flips: int = 60) -> list[tuple[str, bytes]]:
    """Every mutation family, on the signed file and on its unsigned twin; structural ones signed again too."""
    rng = random.Random(seed)
    unsigned = unsign(signed)
    cases = []
    for tag, base in (("signed", signed), ("unsigned", unsigned)):
        cases += [(f"{tag}/{label}", blob) for label, blob in structural(base, rng, per_kind)]
        cases += [(f"{tag}/{label}", blob) for label, blob in bit_flips(base, rng, flips)]
    cases += [(f"resigned/{label}", resign(blob)) for label, blob in structural(signed, rng, per_kind)]
    cases += [(f"resigned/{label}", resign(blob)) for label, blob in bit_flips(signed, rng, flips // 2)
              if _parses(blob)]
    cases += [(f"signed/{label}", blob) for label, blob in truncations(signed, 20) + identifiers(signed)]
    return cases


def _parses(blob: bytes) -> bool:
    try:
        tf_.parse(blob)
        return True
    except tf_.ModelFileError:
        return False
