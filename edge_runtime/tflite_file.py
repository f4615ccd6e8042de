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

import json
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

# BuiltinOperator names for the codes a mask2face / BlazeFace graph uses; others print as BUILTIN_<n>.
BUILTIN_NAMES = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D", 5: "DEPTH_TO_SPACE",
    6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 21: "RELU6",
    22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX", 28: "TANH", 32: "CUSTOM", 34: "PAD", 39: "TRANSPOSE",
    40: "MEAN", 41: "SUB", 42: "DIV", 49: "SPLIT", 53: "CAST", 54: "PRELU", 55: "MAXIMUM", 57: "MINIMUM",
    67: "TRANSPOSE_CONV", 74: "SUM", 83: "PACK", 97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU",
    102: "SPLIT_V", 114: "QUANTIZE", 117: "HARD_SWISH",
}


@dataclass(frozen=True)
class TfliteInfo:
    """What the runtime reads from a .tflite without an interpreter."""
    version: int
    description: str
    metadata: dict[str, bytes] = field(default_factory=dict)
    ops: tuple[str, ...] = ()       # operator codes in the model (names; custom ops as CUSTOM:<name>)

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
                             "(--model default or --model mixed)") from None
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


def _buffer_bytes(r: _Reader, buf: _Table) -> bytes:
    data = buf.bytes_vector(BUFFER_DATA)
    if data:
        return data
    # Models > 2 GiB keep buffers after the flatbuffer: Buffer.offset/size (offset 0 or 1 = unused).
    offset = buf.scalar(BUFFER_OFFSET, "<Q", 0)
    size = buf.scalar(BUFFER_SIZE, "<Q", 0)
    if offset > 1:
        if offset + size > r.n:
            raise r.fail(f"external buffer [{offset}, {offset + size}) runs past the end")
        return r.data[offset:offset + size]
    return b""


def parse(data: bytes, source: str = "model") -> TfliteInfo:
    """Read version, description, metadata entries and operator codes. Raises ModelFileError on any damage."""
    check_header(data, source)
    r = _Reader(bytes(data), source)
    try:
        model = r.table(r.indirect(0))
        version = model.scalar(MODEL_VERSION, "<I", 0)
        description = model.string(MODEL_DESCRIPTION) or ""
        buffers = model.tables(MODEL_BUFFERS)
        metadata: dict[str, bytes] = {}
        for entry in model.tables(MODEL_METADATA):
            name = entry.string(METADATA_NAME_FIELD) or ""
            index = entry.scalar(METADATA_BUFFER_FIELD, "<I", 0)
            if index >= len(buffers):
                raise r.fail(f"metadata '{name}' points to buffer {index} of {len(buffers)}")
            metadata[name] = _buffer_bytes(r, buffers[index])
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
    return TfliteInfo(version=version, description=description, metadata=metadata, ops=tuple(ops))


def read(path: str | Path) -> TfliteInfo:
    return parse(read_bytes(path), source=str(path))
