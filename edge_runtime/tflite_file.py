"""A tiny, pure-python, bounds-checked reader for the parts of a .tflite flatbuffer the runtime needs.

Why not the `tflite` / `flatbuffers` packages: the edge install is numpy + OpenCV + LiteRT only, and files come
from users, so every offset is checked before it is followed: a truncated, fake or hostile file raises
`ModelFileError` (never IndexError, struct.error, a hang or a huge allocation).

Flatbuffer layout used here (https://flatbuffers.dev/internals/): the file starts with a u32 offset to the root
table, then the 4-byte file identifier ("TFL3" for TFLite). A table starts with an i32 *backwards* offset to its
vtable; the vtable holds u16 vtable size, u16 table size and one u16 per field (0 = absent) giving the field's
offset inside the table. Offset-typed fields (tables, vectors, strings) hold a u32 relative to their own position.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelFileError

FILE_IDENTIFIER = b"TFL3"
MIN_SIZE = 16                      # root offset + identifier + a minimal table
MAX_SIZE = 2 << 30                 # flatbuffers cannot address more than 2 GiB
MAX_VECTOR = 1 << 24               # more metadata entries / ops than this is not a real model
METADATA_NAME = "mask2face"

# Field indices in schema.fbs (TFLite 2.x).
MODEL_VERSION, MODEL_OPERATOR_CODES, MODEL_SUBGRAPHS, MODEL_DESCRIPTION, MODEL_BUFFERS = 0, 1, 2, 3, 4
MODEL_METADATA_BUFFER, MODEL_METADATA, MODEL_SIGNATURE_DEFS = 5, 6, 7
BUFFER_DATA, BUFFER_OFFSET, BUFFER_SIZE = 0, 1, 2
METADATA_NAME_FIELD, METADATA_BUFFER_FIELD = 0, 1
OPCODE_DEPRECATED_BUILTIN, OPCODE_CUSTOM, OPCODE_VERSION, OPCODE_BUILTIN = 0, 1, 2, 3
SUBGRAPH_TENSORS, SUBGRAPH_INPUTS, SUBGRAPH_OUTPUTS, SUBGRAPH_OPERATORS = 0, 1, 2, 3
TENSOR_SHAPE, TENSOR_TYPE, TENSOR_BUFFER, TENSOR_NAME, TENSOR_QUANTIZATION, TENSOR_IS_VARIABLE = 0, 1, 2, 3, 4, 5
QUANT_SCALE, QUANT_ZERO_POINT, QUANT_DIMENSION = 2, 3, 6
OPERATOR_OPCODE, OPERATOR_INPUTS, OPERATOR_OUTPUTS, OPERATOR_INTERMEDIATES = 0, 1, 2, 8

# TensorType -> (name, bytes per element; None: variable-sized or opaque). INT4 packs two values per byte.
TENSOR_TYPES = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8), 5: ("string", None),
    6: ("bool", 1), 7: ("int16", 2), 8: ("complex64", 8), 9: ("int8", 1), 10: ("float64", 8), 11: ("complex128", 16),
    12: ("uint64", 8), 13: ("resource", None), 14: ("variant", None), 15: ("uint32", 4), 16: ("uint16", 2),
    17: ("int4", None), 18: ("bfloat16", 2),
}
# Zero points an integer tensor may carry (LiteRT indexes lookup tables with them: out of range reads wild memory).
ZERO_POINT_RANGE = {"uint8": (0, 255), "int8": (-128, 127), "int16": (-32768, 32767), "int4": (-8, 7),
                    "uint16": (0, 65535)}
INT32_RANGE = (-(1 << 31), (1 << 31) - 1)
# Operator inputs that may be absent (-1), by operator name: the bias of the convolutions. Kernels of the other ops
# we know read every input they are given (an absent one segfaults); ops we do not know are not second-guessed.
OPTIONAL_INPUTS = {"CONV_2D": {2}, "DEPTHWISE_CONV_2D": {2}, "FULLY_CONNECTED": {2}, "TRANSPOSE_CONV": {3}}
MAX_RANK = 8                       # LiteRT kernels stop at rank 6; more is damage
MAX_TENSOR_BYTES = 1 << 30         # a declared tensor over 1 GiB: LiteRT would try to allocate it
DIGEST_FIELD = "weights_sha256"    # the mask2face metadata field holding the file's digest (docs/EDGE.md)

# BuiltinOperator names for the codes a mask2face / BlazeFace graph uses; others print as BUILTIN_<n>.
BUILTIN_NAMES = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 5: "DEPTH_TO_SPACE",
    6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 21: "RELU6",
    22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX", 28: "TANH", 32: "CUSTOM", 34: "PAD", 39: "TRANSPOSE",
    40: "MEAN", 41: "SUB", 42: "DIV", 49: "SPLIT", 53: "CAST", 54: "PRELU", 55: "MAXIMUM", 57: "MINIMUM",
    67: "TRANSPOSE_CONV", 74: "SUM", 83: "PACK", 97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU",
    102: "SPLIT_V", 114: "QUANTIZE", 117: "HARD_SWISH",
}

KNOWN_OPS = frozenset(BUILTIN_NAMES.values())


@dataclass(frozen=True)
class Quantization:
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    dimension: int = 0


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    type: int
    buffer: int
    quantization: Quantization | None = None
    is_variable: bool = False


@dataclass(frozen=True)
class Operator:
    opcode: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...] = ()


@dataclass(frozen=True)
class Subgraph:
    tensors: tuple[Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: tuple[Operator, ...]


@dataclass(frozen=True)
class TfliteInfo:
    """What the runtime reads from a .tflite without an interpreter."""
    version: int
    description: str
    metadata: dict[str, bytes] = field(default_factory=dict)
    ops: tuple[str, ...] = ()       # operator codes in the model (names; custom ops as CUSTOM:<name>)
    subgraphs: tuple[Subgraph, ...] = ()
    buffer_spans: tuple[tuple[int, int], ...] = ()   # [start, end) of each Model.buffers entry's data in the file
    buffer_sizes: tuple[int, ...] = ()               # bytes of data each Model.buffers entry holds
    metadata_spans: dict[str, tuple[int, int]] = field(default_factory=dict)   # name -> [start, end) in the file

    def mask2face_metadata(self) -> dict | None:
        """The `mask2face` JSON entry (docs/ARCHITECTURE.md), or None when the file has none."""
        raw = self.metadata.get(METADATA_NAME)
        if raw is None:
            return None
        try:
            value = json.loads(raw.rstrip(b"\0").decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"the '{METADATA_NAME}' metadata entry is not UTF-8 JSON ({exc}); "
                                 "re-export the model with `mask2face export`") from exc
        if not isinstance(value, dict):
            raise ModelFileError(f"the '{METADATA_NAME}' metadata entry is not a JSON object; re-export the model")
        return value


class _Reader:
    """Bounds-checked flatbuffer primitives over an immutable bytes object."""

    def __init__(self, data: bytes, source: str):
        self.data = data
        self.n = len(data)
        self.source = source

    def fail(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.source} is not a valid .tflite file ({what}); "
                              "export it again or pass the right file with --model")

    def _unpack(self, fmt: str, pos: int):
        size = struct.calcsize(fmt)
        if pos < 0 or pos + size > self.n:
            raise self.fail(f"offset {pos} out of bounds")
        return struct.unpack_from(fmt, self.data, pos)[0]

    def u8(self, pos): return self._unpack("<B", pos)
    def u16(self, pos): return self._unpack("<H", pos)
    def i32(self, pos): return self._unpack("<i", pos)
    def u32(self, pos): return self._unpack("<I", pos)
    def u64(self, pos): return self._unpack("<Q", pos)

    def table(self, pos: int) -> "_Table":
        vt = pos - self.i32(pos)
        vt_size = self.u16(vt)
        if vt_size < 4 or vt_size % 2 or vt + vt_size > self.n:
            raise self.fail(f"bad vtable at {vt}")
        table_size = self.u16(vt + 2)
        if pos + table_size > self.n:
            raise self.fail(f"table at {pos} runs past the end")
        return _Table(self, pos, vt, vt_size, table_size)

    def indirect(self, pos: int) -> int:
        target = pos + self.u32(pos)
        if target >= self.n:
            raise self.fail(f"offset at {pos} points past the end")
        return target

    def vector(self, pos: int, elem_size: int) -> tuple[int, int]:
        """(first element position, length) of the vector whose offset field sits at `pos`."""
        start = self.indirect(pos)
        length = self.u32(start)
        if length > MAX_VECTOR or start + 4 + length * elem_size > self.n:
            raise self.fail(f"vector at {start} of {length} elements runs past the end")
        return start + 4, length

    def string(self, pos: int) -> str:
        first, length = self.vector(pos, 1)
        try:
            return self.data[first:first + length].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"string at {first} is not UTF-8") from exc


@dataclass(frozen=True)
class _Table:
    r: _Reader
    pos: int
    vt: int
    vt_size: int
    size: int

    def field_pos(self, index: int) -> int | None:
        slot = 4 + 2 * index
        if slot + 2 > self.vt_size:
            return None
        off = self.r.u16(self.vt + slot)
        if off == 0:
            return None
        if off >= self.size:
            raise self.r.fail(f"field {index} of table at {self.pos} lies outside the table")
        return self.pos + off

    def scalar(self, index: int, fmt: str, default):
        p = self.field_pos(index)
        return default if p is None else self.r._unpack(fmt, p)

    def table(self, index: int) -> "_Table | None":
        p = self.field_pos(index)
        return None if p is None else self.r.table(self.r.indirect(p))

    def string(self, index: int) -> str | None:
        p = self.field_pos(index)
        return None if p is None else self.r.string(p)

    def tables(self, index: int) -> list["_Table"]:
        p = self.field_pos(index)
        if p is None:
            return []
        first, length = self.r.vector(p, 4)
        return [self.r.table(self.r.indirect(first + 4 * i)) for i in range(length)]

    def numbers(self, index: int, fmt: str) -> tuple:
        """A vector of scalars (`fmt` one struct code, e.g. "i", "f", "q"), read in one unpack."""
        p = self.field_pos(index)
        if p is None:
            return ()
        size = struct.calcsize("<" + fmt)
        first, length = self.r.vector(p, size)
        return struct.unpack_from(f"<{length}{fmt}", self.r.data, first)

    def bytes_vector(self, index: int) -> bytes | None:
        p = self.field_pos(index)
        if p is None:
            return None
        first, length = self.r.vector(p, 1)
        return self.r.data[first:first + length]


def check_header(data: bytes, source: str = "model") -> None:
    """Size and file identifier, before anything else (and before LiteRT sees the bytes)."""
    if len(data) == 0:
        raise ModelFileError(f"{source} is empty (0 bytes); export the model again with `mask2face export`")
    if len(data) < MIN_SIZE:
        raise ModelFileError(f"{source} is only {len(data)} bytes: truncated or not a .tflite file; export it again")
    if len(data) > MAX_SIZE:
        raise ModelFileError(f"{source} is larger than 2 GiB: not a model this runtime can load")
    if data[4:8] != FILE_IDENTIFIER:
        raise ModelFileError(f"{source} is not a TFLite model (file identifier {data[4:8]!r}, expected b'TFL3'); "
                             "pass a .tflite written by `mask2face export`")


def read_bytes(path: str | Path) -> bytes:
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist; check the path, or use a shipped model "
                             "(--model default)") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from exc
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder; pass the .tflite file itself")
    if not path.is_file():   # a pipe would block for ever, /dev/zero would fill memory
        raise ModelFileError(f"{path} is not a regular file (a pipe, socket or device); pass the .tflite file")
    if size > MAX_SIZE:
        raise ModelFileError(f"{path} is larger than 2 GiB: not a model this runtime can load")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from exc


def _buffer_span(r: _Reader, buf: _Table) -> tuple[int, int]:
    """[start, end) of a buffer's bytes in the file (start == end: no data)."""
    p = buf.field_pos(BUFFER_DATA)
    if p is not None:
        first, length = r.vector(p, 1)
        if length:
            return first, first + length
    # Models > 2 GiB keep buffers after the flatbuffer: Buffer.offset/size (offset 0 or 1 = unused).
    offset = buf.scalar(BUFFER_OFFSET, "<Q", 0)
    size = buf.scalar(BUFFER_SIZE, "<Q", 0)
    if offset > 1:
        if offset + size > r.n:
            raise r.fail(f"external buffer [{offset}, {offset + size}) runs past the end")
        return offset, offset + size
    return 0, 0


def _quantization(table: "_Table | None") -> Quantization | None:
    if table is None:
        return None
    scales = table.numbers(QUANT_SCALE, "f")
    zero_points = table.numbers(QUANT_ZERO_POINT, "q")
    if not scales and not zero_points:
        return None   # min/max only (or nothing): the tensor is not quantised
    return Quantization(scales, zero_points, table.scalar(QUANT_DIMENSION, "<i", 0))


def _subgraph(table: "_Table") -> Subgraph:
    tensors = tuple(Tensor(name=t.string(TENSOR_NAME) or "", shape=t.numbers(TENSOR_SHAPE, "i"),
                           type=t.scalar(TENSOR_TYPE, "<b", 0), buffer=t.scalar(TENSOR_BUFFER, "<I", 0),
                           quantization=_quantization(t.table(TENSOR_QUANTIZATION)),
                           is_variable=bool(t.scalar(TENSOR_IS_VARIABLE, "<B", 0)))
                    for t in table.tables(SUBGRAPH_TENSORS))
    operators = tuple(Operator(opcode=o.scalar(OPERATOR_OPCODE, "<I", 0), inputs=o.numbers(OPERATOR_INPUTS, "i"),
                               outputs=o.numbers(OPERATOR_OUTPUTS, "i"),
                               intermediates=o.numbers(OPERATOR_INTERMEDIATES, "i"))
                      for o in table.tables(SUBGRAPH_OPERATORS))
    return Subgraph(tensors, table.numbers(SUBGRAPH_INPUTS, "i"), table.numbers(SUBGRAPH_OUTPUTS, "i"), operators)


def parse(data: bytes, source: str = "model") -> TfliteInfo:
    """Read version, description, metadata entries, operator codes and the graph (tensors, operators).
    Raises ModelFileError on any damage; `validate` then checks that the graph is one LiteRT can run safely."""
    check_header(data, source)
    r = _Reader(bytes(data), source)
    try:
        model = r.table(r.indirect(0))
        version = model.scalar(MODEL_VERSION, "<I", 0)
        description = model.string(MODEL_DESCRIPTION) or ""
        spans = [_buffer_span(r, b) for b in model.tables(MODEL_BUFFERS)]
        metadata: dict[str, bytes] = {}
        metadata_spans: dict[str, tuple[int, int]] = {}
        for entry in model.tables(MODEL_METADATA):
            name = entry.string(METADATA_NAME_FIELD) or ""
            index = entry.scalar(METADATA_BUFFER_FIELD, "<I", 0)
            if index >= len(spans):
                raise r.fail(f"metadata '{name}' points to buffer {index} of {len(spans)}")
            metadata_spans[name] = spans[index]
            metadata[name] = r.data[slice(*spans[index])]
        subgraphs = tuple(_subgraph(t) for t in model.tables(MODEL_SUBGRAPHS))
        ops = []
        for code in model.tables(MODEL_OPERATOR_CODES):
            deprecated = code.scalar(OPCODE_DEPRECATED_BUILTIN, "<b", 0)
            builtin = code.scalar(OPCODE_BUILTIN, "<i", 0)
            # Since schema v3a the real code is max(deprecated_builtin_code, builtin_code).
            builtin = max(builtin, deprecated)
            if builtin == 32:
                ops.append(f"CUSTOM:{code.string(OPCODE_CUSTOM) or '?'}")
            else:
                ops.append(BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"))
    except RecursionError as exc:  # pragma: no cover - no recursion above, kept as a guard
        raise r.fail("nested too deeply") from exc
    return TfliteInfo(version=version, description=description, metadata=metadata, ops=tuple(ops),
                      subgraphs=subgraphs, buffer_spans=tuple(spans),
                      buffer_sizes=tuple(end - start for start, end in spans),
                      metadata_spans=metadata_spans)


def buffer_data(data: bytes) -> list[bytes]:
    """The bytes of every Model.buffers entry, in order."""
    return [data[start:end] for start, end in parse(data).buffer_spans]


def read(path: str | Path) -> TfliteInfo:
    return parse(read_bytes(path), source=str(path))


# -- validation: what LiteRT trusts without checking ---------------------------------------------------------------
# LiteRT's flatbuffer verifier checks the file's layout, not its meaning: a scale of +inf or a zero point of 1000
# crashes inside allocate_tensors (SIGSEGV), an operator that reads a tensor nobody writes fails at invoke. Every
# rule below is one such crash or traceback seen on a damaged file; all of them run before LiteRT sees the bytes.

def _bad(source: str, what: str) -> ModelFileError:
    return ModelFileError(f"{source} is a damaged model ({what}); export it again or pass the right file with --model")


def _element_count(shape: tuple[int, ...]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _check_quantization(t: Tensor, where: str, source: str) -> None:
    q = t.quantization
    if q is None:
        return
    if not all(math.isfinite(s) and s > 0 for s in q.scales):
        raise _bad(source, f"{where} has a quantisation scale that is not a finite positive number")
    if len(q.zero_points) != len(q.scales):
        raise _bad(source, f"{where} has {len(q.scales)} quantisation scale(s) but {len(q.zero_points)} zero point(s)")
    lo, hi = ZERO_POINT_RANGE.get(TENSOR_TYPES[t.type][0], INT32_RANGE)
    if not all(lo <= z <= hi for z in q.zero_points):
        raise _bad(source, f"{where} has a zero point outside [{lo}, {hi}]")
    if len(q.scales) > 1:   # per-channel: one scale per slice along `dimension`
        if not 0 <= q.dimension < len(t.shape) or t.shape[q.dimension] != len(q.scales):
            raise _bad(source, f"{where} has {len(q.scales)} per-channel scales along dimension {q.dimension} "
                               f"of shape {list(t.shape)}")


def _check_tensor(t: Tensor, where: str, buffer_sizes: tuple[int, ...], source: str) -> None:
    if t.type not in TENSOR_TYPES:
        raise _bad(source, f"{where} has unknown type {t.type}")
    if len(t.shape) > MAX_RANK or any(d < 0 for d in t.shape):
        raise _bad(source, f"{where} declares shape {list(t.shape)[:MAX_RANK + 1]}")
    itemsize = TENSOR_TYPES[t.type][1] or 1
    count = _element_count(t.shape)
    if count * itemsize > MAX_TENSOR_BYTES:
        raise _bad(source, f"{where} declares {list(t.shape)}: {count * itemsize / 2**30:.1f} GiB")
    if t.buffer >= len(buffer_sizes):
        raise _bad(source, f"{where} points to buffer {t.buffer} of {len(buffer_sizes)}")
    size = buffer_sizes[t.buffer]
    if size and TENSOR_TYPES[t.type][1] and size != count * itemsize:
        raise _bad(source, f"{where} holds {size} bytes of constant data where {list(t.shape)} "
                           f"{TENSOR_TYPES[t.type][0]} needs {count * itemsize}")
    if size and t.type == 17 and size not in (count, (count + 1) // 2):
        raise _bad(source, f"{where} holds {size} bytes of int4 data for {count} values")
    _check_quantization(t, where, source)


def _check_indices(indices: tuple[int, ...], count: int, where: str, source: str, optional: bool = False) -> None:
    for i in indices:
        if not (0 <= i < count or (optional and i == -1)):
            raise _bad(source, f"{where} names tensor {i} of {count}")


def _check_dataflow(g: Subgraph, names: tuple[str, ...], buffer_sizes: tuple[int, ...], k: int,
                    source: str) -> None:
    """Operators in file order must each read only tensors that hold data by then (an input, a constant, a variable
    or an earlier operator's output) and write only tensors nobody else provides."""
    constant = {i for i, t in enumerate(g.tensors) if buffer_sizes[t.buffer]}
    ready = set(g.inputs) | constant | {i for i, t in enumerate(g.tensors) if t.is_variable}
    for n, op in enumerate(g.operators):
        what = f"subgraph {k} operator {n} ({names[op.opcode]})"
        optional = OPTIONAL_INPUTS.get(names[op.opcode], set() if names[op.opcode] in KNOWN_OPS else None)
        for slot, i in enumerate(op.inputs):
            if i == -1 and optional is not None and slot not in optional:
                raise _bad(source, f"{what} lacks its input {slot}")
            if i != -1 and i not in ready:
                raise _bad(source, f"{what} reads tensor {i} '{g.tensors[i].name}', which holds no data")
        for i in op.outputs:
            if i in constant or i in g.inputs:
                raise _bad(source, f"{what} writes tensor {i} '{g.tensors[i].name}', a model input or constant")
            if i in ready and not g.tensors[i].is_variable:
                raise _bad(source, f"{what} writes tensor {i} '{g.tensors[i].name}' a second time")
            ready.add(i)
    missing = [i for i in g.outputs if i not in ready]
    if missing:
        raise _bad(source, f"subgraph {k} output tensor {missing[0]} is never written")


# Operators that requantise: (input slot, weights slot). Their output scale over input x weight scale must lie where
# the int8 kernels can represent it: XNNPACK's range [2^-32, 256). A finite but absurd weight scale (1e35) outside
# it made LiteRT abort the process ("double free or corruption") instead of refusing the file.
REQUANTIZING_OPS = {"CONV_2D": (0, 1), "DEPTHWISE_CONV_2D": (0, 1), "FULLY_CONNECTED": (0, 1), "TRANSPOSE_CONV": (2, 1)}
REQUANTIZATION_RANGE = (2.0 ** -32, 256.0)
INTEGER_TYPES = {3, 7, 9, 17}   # uint8, int16, int8, int4


def _check_requantization(g: Subgraph, names: tuple[str, ...], k: int, source: str) -> None:
    lo, hi = REQUANTIZATION_RANGE
    for n, op in enumerate(g.operators):
        slots = REQUANTIZING_OPS.get(names[op.opcode])
        if slots is None or max(slots) >= len(op.inputs) or not op.outputs:
            continue
        tensors = [op.inputs[slots[0]], op.inputs[slots[1]], op.outputs[0]]
        if -1 in tensors:
            continue
        x, w, y = (g.tensors[i] for i in tensors)
        if not all(t.type in INTEGER_TYPES and t.quantization is not None and t.quantization.scales for t in (x, w, y)):
            continue
        ratio = x.quantization.scales[0] / y.quantization.scales[0]
        if not all(lo <= ratio * s < hi for s in w.quantization.scales):
            raise _bad(source, f"subgraph {k} operator {n} ({names[op.opcode]}) has a requantisation scale (input x "
                               f"weight / output) outside [2^-32, 256): its quantisation is damaged")


# Elementwise operators with two inputs: the inputs must broadcast to the output's shape, and quantised ones carry
# one scale (per-channel quantisation is the weights' of convolutions). An ADD rewired to read a conv's per-channel
# weights (64, 1, 1, 48) beside a (1, 32, 32, 48) activation made LiteRT abort the process instead of refusing it.
ELEMENTWISE_OPS = {"ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE"}


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """numpy's broadcast of two shapes, or None when they do not broadcast."""
    out = []
    for x, y in zip((1,) * (len(b) - len(a)) + tuple(a), (1,) * (len(a) - len(b)) + tuple(b)):
        if x != y and 1 not in (x, y):
            return None
        out.append(y if x == 1 else x)
    return tuple(out)


def _check_elementwise(g: Subgraph, names: tuple[str, ...], k: int, source: str) -> None:
    for n, op in enumerate(g.operators):
        if names[op.opcode] not in ELEMENTWISE_OPS or len(op.inputs) != 2 or len(op.outputs) != 1 \
                or -1 in op.inputs:
            continue
        a, b, y = (g.tensors[i] for i in (*op.inputs, op.outputs[0]))
        what = f"subgraph {k} operator {n} ({names[op.opcode]})"
        shape = _broadcast(a.shape, b.shape)
        if shape is None or (y.shape and shape != tuple(y.shape)):
            raise _bad(source, f"{what} combines shapes {list(a.shape)} and {list(b.shape)} into "
                               f"{list(y.shape)}: its graph is damaged")
        for t in (a, b, y):
            if t.type in INTEGER_TYPES and t.quantization is not None and len(t.quantization.scales) > 1:
                raise _bad(source, f"{what} reads or writes a per-channel quantised tensor: its graph is damaged")


def validate(info: TfliteInfo, source: str = "model") -> None:
    """Refuse (ModelFileError, one line) a graph LiteRT would crash on or fail to run: unknown types, negative or
    huge shapes, constant data of the wrong size, quantisation that is not finite / positive / in range (and
    requantisation scales the int8 kernels cannot represent), operator and subgraph tensor indices out of range,
    operators reading tensors that hold no data, and elementwise operators whose inputs do not broadcast to their
    output."""
    if not info.subgraphs:
        raise _bad(source, "no subgraph")
    for k, g in enumerate(info.subgraphs):
        for i, t in enumerate(g.tensors):
            _check_tensor(t, f"subgraph {k} tensor {i} '{t.name[:60]}'", info.buffer_sizes, source)
        count = len(g.tensors)
        _check_indices(g.inputs, count, f"subgraph {k} inputs", source)
        _check_indices(g.outputs, count, f"subgraph {k} outputs", source)
        for n, op in enumerate(g.operators):
            if op.opcode >= len(info.ops):
                raise _bad(source, f"subgraph {k} operator {n} has operator code {op.opcode} of {len(info.ops)}")
            _check_indices(op.inputs, count, f"subgraph {k} operator {n} inputs", source, optional=True)
            _check_indices(op.outputs, count, f"subgraph {k} operator {n} outputs", source)
            _check_indices(op.intermediates, count, f"subgraph {k} operator {n} intermediates", source)
        if len(info.subgraphs) == 1:   # control flow (WHILE, IF) feeds tensors across subgraphs: not followed
            _check_dataflow(g, info.ops, info.buffer_sizes, k, source)
        _check_requantization(g, info.ops, k, source)
        _check_elementwise(g, info.ops, k, source)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_pair(v, positive_ints: bool = False) -> bool:
    if not isinstance(v, list) or len(v) != 2:
        return False
    if positive_ints:
        return all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
    return all(_is_number(x) for x in v) and v[0] < v[1]


def _is_quantization(v) -> bool:
    return v is None or (isinstance(v, dict) and _is_number(v.get("scale")) and v["scale"] > 0
                         and isinstance(v.get("zero_point", 0), int) and not isinstance(v.get("zero_point", 0), bool)
                         and INT32_RANGE[0] <= v.get("zero_point", 0) <= INT32_RANGE[1])


def _is_digest(v) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def _is_framing(v) -> bool:
    """align.framing_of accepts it: the eyes' height and distance as shares of the crop side, inside the crop."""
    def share(x, low, high):
        return isinstance(x, (int, float)) and not isinstance(x, bool) and low <= x <= high
    return isinstance(v, dict) and share(v.get("eye_line"), 0.05, 0.7) and share(v.get("eye_distance"), 0.05, 0.8)


# Field -> (test, what it must be): the runtime computes with these, so a wrong type is a damaged file, not a
# TypeError in the middle of a photo. Fields not listed (and future ones) are free.
METADATA_FIELDS = {
    "name": (lambda v: v is None or isinstance(v, str), "a string"),
    "precision": (lambda v: v is None or isinstance(v, str), "a string"),
    "version": (lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool)), "an integer"),
    "input_size": (lambda v: _is_pair(v, positive_ints=True), "[height, width] in pixels"),
    "color_order": (lambda v: isinstance(v, str) and v.upper() in ("RGB", "BGR"), '"RGB" or "BGR"'),
    "input_range": (_is_pair, "[low, high] with low < high"),
    "output_range": (_is_pair, "[low, high] with low < high"),
    "output_channels": (lambda v: isinstance(v, list) and 0 < len(v) <= 64 and all(isinstance(c, str) for c in v),
                        "a list of channel names"),
    "input_quantization": (_is_quantization, "null or {scale > 0, zero_point}"),
    "output_quantization": (_is_quantization, "null or {scale > 0, zero_point}"),
    "rgb_blended_by_mask": (lambda v: v is None or isinstance(v, bool), "true or false"),
    "framing": (lambda v: v is None or _is_framing(v), '{"eye_line": 0.05-0.7, "eye_distance": 0.05-0.8}'),
    DIGEST_FIELD: (_is_digest, "64 lowercase hex digits"),
}


def check_metadata(meta: dict, source: str = "model") -> None:
    """Every known field of the `mask2face` entry has the type the contract gives it (docs/ARCHITECTURE.md)."""
    for key, (ok, what) in METADATA_FIELDS.items():
        if key in meta and not ok(meta[key]):
            raise ModelFileError(f"{source}: metadata field '{key}' is {json.dumps(meta[key])[:60]}, not {what}; "
                                 "re-export the model with `mask2face export`")


# -- weights digest --------------------------------------------------------------------------------------------
# `weights_sha256` in the mask2face entry: sha256 of the whole file with the 64 hex digits of the digest itself
# replaced by ASCII "0"s (every weight, quantisation parameter, operator and the rest of the metadata are covered;
# a port recomputes it with nothing but the metadata JSON and a byte search). docs/EDGE.md, "App contract".

def digest_span(data: bytes, info: TfliteInfo) -> tuple[int, int] | None:
    """[start, end) of the digest's 64 hex digits inside the mask2face metadata bytes, or None if it has none."""
    span = info.metadata_spans.get(METADATA_NAME)
    meta = info.mask2face_metadata()
    if span is None or not meta or not _is_digest(meta.get(DIGEST_FIELD)):
        return None
    at = data.find(meta[DIGEST_FIELD].encode("ascii"), span[0], span[1])
    return None if at < 0 else (at, at + 64)


def weights_digest(data: bytes, span: tuple[int, int]) -> str:
    """The digest as the contract defines it: sha256 of `data` with the bytes of `span` read as "0"s."""
    h = hashlib.sha256()
    h.update(memoryview(data)[:span[0]])
    h.update(b"0" * (span[1] - span[0]))
    h.update(memoryview(data)[span[1]:])
    return h.hexdigest()


def verify_digest(data: bytes, info: TfliteInfo, source: str = "model") -> bool:
    """True: the file carries a digest and it matches. False: it carries none (a model from elsewhere or from an
    older export). A digest that does not match raises ModelFileError: the weights were changed after export."""
    span = digest_span(data, info)
    if span is None:
        return False
    if weights_digest(data, span) != data[span[0]:span[1]].decode("ascii"):
        raise ModelFileError(f"{source} was changed after it was exported (its weights digest does not match): "
                             "download or export it again")
    return True
