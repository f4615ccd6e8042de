"""A .tflite model in LiteRT: checked loading, embedded metadata, (de)quantisation and delegates.

The file is checked before LiteRT sees it: size, TFL3 identifier, our own bounds-checked parse, then the graph
(tflite_file.validate: tensor types, shapes, constant sizes, quantisation, operator indices, data flow), the
metadata's field types and, when the file carries one, its weights digest. It is then passed as `model_content=`
so that LiteRT's flatbuffer verifier runs too, allocated and invoked once on zeros: a damaged file becomes a
ModelFileError with one line, never a segfault or a traceback, and a file whose weights changed after export is
refused. Delegates are requested by name and fall back to the CPU (XNNPACK) with one warning
line; `model.delegate` and `model.threads` say what actually runs.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import native_log, tflite_file
from .errors import ModelFileError

DELEGATES = ("cpu", "gpu", "nnapi")
# Library names tried for `--delegate gpu` when no path is given (`gpu:/path/to/lib.so` picks one).
GPU_LIBRARIES = ("libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so",
                 "libtensorflowlite_gpu_delegate.dylib", "tensorflowlite_gpu_delegate.dll")
NNAPI_LIBRARIES = ("libtensorflowlite_nnapi_delegate.so", "libnnapi_delegate.so")


def _litert():
    """(Interpreter class, load_delegate) from ai_edge_litert, else the older tflite_runtime."""
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter, load_delegate
        except ImportError:
            raise ModelFileError("no TFLite runtime installed: run `pip install ai-edge-litert` "
                                 "(or `pip install mask2face[edge]`)") from None
    return Interpreter, load_delegate


def new_interpreter(model: bytes | str | os.PathLike, threads: int | None = None, delegates: list | None = None,
                    input_shape: list[int] | None = None, allocate: bool = True):
    """A LiteRT interpreter for a .tflite given as bytes or a path: the one place this package makes one.

    Made (and allocated, after resizing input 0 to `input_shape` when given) inside native_log.filtered_stderr(),
    because LiteRT writes "Created TensorFlow Lite XNNPACK delegate" to fd 2 there on every run. `threads` and
    `delegates` go to LiteRT as they are (None: its defaults); `allocate=False` for reading tensor details only."""
    Interpreter, _ = _litert()
    source = {"model_path": str(model)} if isinstance(model, (str, os.PathLike)) else {"model_content": model}
    with native_log.filtered_stderr():
        it = Interpreter(**source, num_threads=threads, experimental_delegates=delegates)
        if input_shape is not None:
            it.resize_tensor_input(it.get_input_details()[0]["index"], list(input_shape))
        if allocate:
            it.allocate_tensors()
    return it


def warn(message: str) -> None:
    """One line on stderr: the run goes on."""
    print(f"mask2face: warning: {message}", file=sys.stderr, flush=True)


def is_android() -> bool:
    return "ANDROID_ROOT" in os.environ or hasattr(sys, "getandroidapilevel")


def default_metadata(input_shape, output_shape) -> dict:
    """What a model without the `mask2face` entry is assumed to be: [0,1] RGB in, [0,1] RGB(+mask) out."""
    channels = int(output_shape[-1]) if len(output_shape) else 3
    names = ["r", "g", "b", "mask"][:channels] if channels <= 4 else [f"c{i}" for i in range(channels)]
    return {"name": "unknown", "version": None, "precision": None,
            "input_size": [int(input_shape[1]), int(input_shape[2])], "color_order": "RGB",
            "input_range": [0, 1], "normalization": "x = pixel / 255", "output_channels": names,
            "output_range": [0, 1], "input_quantization": None, "output_quantization": None}


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """float -> int8/uint8: round to nearest, then clip to the type's range (no wrap-around)."""
    info = np.iinfo(dtype)
    q = np.round(np.asarray(x, np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (np.asarray(q, np.float32) - np.float32(zero_point)) * np.float32(scale)


def to_tensor(detail: dict, x: np.ndarray) -> np.ndarray:
    """Floats -> the tensor an interpreter input takes (`detail`: one of get_input_details()): quantised for an
    int8/uint8 input, else cast. The one quantisation of inputs that export checks, eval and bench use."""
    if detail["dtype"] in (np.int8, np.uint8):
        return quantize(x, *detail["quantization"], detail["dtype"])
    return np.asarray(x, detail["dtype"])


def from_tensor(detail: dict, y: np.ndarray) -> np.ndarray:
    """An interpreter output (`detail`: one of get_output_details()) -> float32, dequantised when it is integer."""
    if detail["dtype"] in (np.int8, np.uint8):
        return dequantize(y, *detail["quantization"])
    return np.asarray(y, np.float32)


def _u8_shortcut(dtype, quant: tuple[float, int] | None) -> str | None:
    """How uint8 pixels of a plain model (RGB, [0,1]) become its input: "xor" (int8, scale 1/255, zero point
    -128: q = pixel - 128), "copy" (uint8, scale 1/255, zero point 0), "scale" (float32: pixel / 255), or None
    (any other quantisation: through floats, Model.to_input)."""
    if quant is None:
        return "scale" if dtype == np.float32 else None
    scale, zero_point = quant
    if abs(scale * 255 - 1) >= 1e-6:
        return None
    if dtype == np.int8 and zero_point == -128:
        return "xor"
    if dtype == np.uint8 and zero_point == 0:
        return "copy"
    return None


def _tensor_quant(detail: dict, meta_quant: dict | None) -> tuple[float, int] | None:
    """Quantisation of an integer tensor: the interpreter's own parameters win; metadata is the fallback."""
    if detail["dtype"] not in (np.int8, np.uint8):
        return None
    scale, zp = detail.get("quantization", (0.0, 0))
    if scale:
        return float(scale), int(zp)
    if meta_quant and meta_quant.get("scale"):
        return float(meta_quant["scale"]), int(meta_quant.get("zero_point", 0))
    raise ModelFileError(f"integer {detail['name']} tensor has no quantisation parameters; re-export the model")


class Model:
    """A loaded .tflite: `run(batch)` takes and returns float32 in the metadata's value ranges ([0, 1])."""

    def __init__(self, content: bytes, source: str = "model", delegate: str = "cpu", threads: int = 2):
        tflite_file.check_header(content, source)
        self.source = source
        self.info = tflite_file.parse(content, source)
        tflite_file.validate(self.info, source)
        embedded = self.info.mask2face_metadata()
        if embedded:
            tflite_file.check_metadata(embedded, source)
        self.verified = tflite_file.verify_digest(content, self.info, source)
        if not self.verified:
            warn(f"{source} carries no weights digest: its weights are unverified "
                 "(files from `mask2face export` carry one)")
        self.threads = max(1, int(threads))
        self.requested_delegate = delegate
        self.fallback_reason: str | None = None
        self._content = content
        self.interpreter, self.delegate = self._make_interpreter(delegate)
        inp = self.interpreter.get_input_details()
        out = self.interpreter.get_output_details()
        if len(inp) != 1 or len(inp[0]["shape"]) != 4:
            raise ModelFileError(f"{source} must have one (B, H, W, C) input, has {[d['shape'] for d in inp]}")
        self.input_detail = inp[0]
        self.output_details = out
        self.output_detail = out[0]
        meta = default_metadata(self.input_detail["shape"], self.output_detail["shape"])
        if embedded:
            meta.update({k: v for k, v in embedded.items() if v is not None or k.endswith("quantization")})
        self.metadata = meta
        self.has_metadata = embedded is not None
        self.input_size = tuple(int(v) for v in self.input_detail["shape"][1:3])
        if list(meta["input_size"]) != list(self.input_size):
            raise ModelFileError(f"{source}: metadata says input {meta['input_size']} but the tensor is "
                                 f"{list(self.input_size)}; re-export the model")
        channels = int(self.output_detail["shape"][-1]) if len(self.output_detail["shape"]) else 0
        if len(meta["output_channels"]) != channels:
            raise ModelFileError(f"{source}: metadata names {len(meta['output_channels'])} output channel(s) but the "
                                 f"tensor has {channels}; re-export the model")
        self.in_quant = _tensor_quant(self.input_detail, meta.get("input_quantization"))
        self.out_quant = _tensor_quant(self.output_detail, meta.get("output_quantization"))
        self.last_invoke_s = 0.0
        # Decided once, not per call: the shipped student invokes in ~0.35 ms, so per-face Python work shows.
        # run() on a uint8 crop costs ~0.04 ms over the bare invoke (warm loop, 2 threads; A/B in one process:
        # about 0.01 ms less than re-reading the metadata on every call); set_tensor + get_tensor are ~0.02 ms.
        self._plain_input = (str(meta.get("color_order", "RGB")).upper() == "RGB"
                             and [float(v) for v in meta.get("input_range", [0, 1])] == [0.0, 1.0])
        self._plain_output = [float(v) for v in meta.get("output_range", [0, 1])] == [0.0, 1.0]
        self._u8_shortcut = _u8_shortcut(self.input_detail["dtype"], self.in_quant) if self._plain_input else None
        self._batch_step = max(int(self.input_detail["shape"][0]), 1)
        self._input_index = self.input_detail["index"]
        self._output_index = self.output_detail["index"]
        self._first_invoke()

    def _first_invoke(self) -> None:
        """One invoke on zeros at load: what LiteRT only finds when it runs (an operator reading a tensor without
        data, a kernel refusing its parameters) fails here with one line, not on the first photo."""
        try:
            self.invoke(np.zeros(self.input_detail["shape"], self.input_detail["dtype"]))
        except Exception as exc:   # LiteRT raises RuntimeError / ValueError with multi-line messages
            raise ModelFileError(f"{self.source} could not be run by LiteRT ({_one_line(exc)}); "
                                 "export it again with `mask2face export`") from None

    @classmethod
    def from_file(cls, path: str | Path, delegate: str = "cpu", threads: int = 2) -> "Model":
        return cls(tflite_file.read_bytes(path), source=str(path), delegate=delegate, threads=threads)

    # -- delegates -------------------------------------------------------------------------------------------
    def _make_interpreter(self, delegate: str):
        _, load_delegate = _litert()
        name, _, lib_path = (delegate or "cpu").partition(":")
        name = name.lower()
        if name not in DELEGATES:
            raise ModelFileError(f"unknown delegate '{delegate}': use one of {', '.join(DELEGATES)} "
                                 "(gpu:/path/to/libtensorflowlite_gpu_delegate.so picks a library)")
        if name != "cpu":
            try:
                lib = self._load_accelerator(name, lib_path, load_delegate)
                return self._interpreter([lib]), name
            except ModelFileError:
                raise
            except Exception as exc:  # delegate libraries fail in many ways; the CPU always works
                self.fallback_reason = f"{name} delegate unavailable ({_one_line(exc, 600)}); running on cpu"
                warn(self.fallback_reason)
        return self._interpreter(None), "cpu"

    def _load_accelerator(self, name: str, lib_path: str, load_delegate):
        if name == "nnapi" and not is_android():
            raise RuntimeError("NNAPI exists on Android only")
        candidates = (lib_path,) if lib_path else (GPU_LIBRARIES if name == "gpu" else NNAPI_LIBRARIES)
        errors = []
        for lib in candidates:
            try:
                # dlopen first: a LiteRT Delegate whose library fails to load raises again in its __del__.
                ctypes.CDLL(lib)
                return load_delegate(lib)
            except (ValueError, OSError, RuntimeError) as exc:
                message = _one_line(exc)   # dlopen's message often starts with the library's name already
                errors.append(message if message.startswith(lib) else f"{lib}: {message}")
        raise RuntimeError("; ".join(errors) or "no library")

    def _interpreter(self, delegates):
        try:
            # XNNPACK is LiteRT's default CPU path; threads are passed explicitly (its default is 1 on some builds).
            return new_interpreter(self._content, self.threads, delegates)
        except Exception as exc:   # ValueError, RuntimeError, and whatever a future LiteRT raises
            if delegates:
                raise  # caught by the caller, which falls back to the CPU
            raise ModelFileError(f"{self.source} could not be loaded by LiteRT ({_one_line(exc)}); "
                                 "export it again with `mask2face export`") from None

    # -- inference -------------------------------------------------------------------------------------------
    def to_input(self, x01: np.ndarray) -> np.ndarray:
        """[0,1] RGB float -> the model's input tensor (range, colour order, quantisation)."""
        x = np.asarray(x01, np.float32)
        if str(self.metadata.get("color_order", "RGB")).upper() == "BGR":
            x = x[..., ::-1]
        lo, hi = (float(v) for v in self.metadata.get("input_range", [0, 1]))
        if (lo, hi) != (0.0, 1.0):
            x = x * (hi - lo) + lo
        if self.in_quant:
            return quantize(x, *self.in_quant, self.input_detail["dtype"])
        return np.ascontiguousarray(x, dtype=self.input_detail["dtype"])

    def to_input_u8(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 RGB pixels -> the model's input tensor. The same values as `to_input(pixels / 255)`, with
        shortcuts for plain models: int8 input quantised with scale 1/255 and zero point -128 is q = pixel - 128,
        one XOR per byte instead of a float round trip (camera frames and crops are uint8 anyway); a float input
        is one multiply."""
        pixels = np.asarray(pixels)
        if pixels.dtype != np.uint8:
            raise ValueError(f"to_input_u8 takes uint8 pixels, got {pixels.dtype}")
        if self._u8_shortcut == "xor":
            return np.bitwise_xor(pixels, np.uint8(0x80)).view(np.int8)
        if self._u8_shortcut == "copy":
            return np.ascontiguousarray(pixels)
        x01 = np.multiply(pixels, np.float32(1 / 255), dtype=np.float32)
        if self._u8_shortcut == "scale":
            return x01
        return self.to_input(x01)

    def from_output(self, y: np.ndarray) -> np.ndarray:
        y = dequantize(y, *self.out_quant) if self.out_quant else np.asarray(y, np.float32)
        if not self._plain_output:
            lo, hi = (float(v) for v in self.metadata["output_range"])
            y = (y - lo) / (hi - lo)
        return y

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """One raw invoke on an already-prepared input tensor (what benchmarks compare against)."""
        self.interpreter.set_tensor(self._input_index, x)
        t0 = time.perf_counter()
        self.interpreter.invoke()
        self.last_invoke_s = time.perf_counter() - t0
        return self.interpreter.get_tensor(self._output_index)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) float32 in [0,1], or uint8 pixels -> (B, H, W, C) float32 in [0,1]. Runs one image at a
        time when the model has a fixed batch of 1 (the exported files do; at batch 1 this costs nothing)."""
        batch = np.asarray(batch)
        prepare = self.to_input_u8 if batch.dtype == np.uint8 else self.to_input
        if batch.ndim == 3:
            batch = batch[None]
        h, w = self.input_size
        if batch.shape[1:3] != (h, w):
            raise ValueError(f"model expects {h}x{w} inputs, got {batch.shape[1]}x{batch.shape[2]}")
        step = self._batch_step
        if len(batch) == step:  # the usual case (one face crop): no loop, no concatenation copy
            return self.from_output(self.invoke(prepare(batch)))
        outs = []
        for i in range(0, len(batch), step):
            chunk = batch[i:i + step]
            if len(chunk) != step:
                raise ValueError(f"model has a fixed batch of {step}")
            outs.append(self.from_output(self.invoke(prepare(chunk))))
        return np.concatenate(outs) if outs else np.zeros((0, h, w, self.output_detail["shape"][-1]), np.float32)

    def describe(self) -> dict:
        return {"source": self.source, "delegate": self.delegate, "threads": self.threads,
                "requested_delegate": self.requested_delegate, "fallback_reason": self.fallback_reason,
                "input_size": list(self.input_size), "input_dtype": np.dtype(self.input_detail["dtype"]).name,
                "has_metadata": self.has_metadata, "weights_verified": self.verified,
                "name": self.metadata.get("name"), "precision": self.metadata.get("precision")}


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text[:limit] or type(exc).__name__
