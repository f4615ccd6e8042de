"""edge_runtime.model: checked loading, metadata defaults, (de)quantisation, delegate fallback.

`make_tiny_tflite` (also used by test_inpaint / test_media) builds a real 4-channel .tflite with TensorFlow in
tmp_path: a 1x1 sigmoid conv whose RGB output is flat grey (0.5) and whose mask channel fires on saturated blue
(R, G low, B high), so a blue "mask" painted on a face is exactly what it predicts as mask.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mask2face.edge_runtime import model as model_mod
from mask2face.edge_runtime import tflite_file
from mask2face.edge_runtime.errors import ModelFileError
from mask2face.edge_runtime.model import Model, dequantize, quantize

TINY_SIZE = 64
_CACHE: dict = {}


def make_tiny_tflite(directory: Path, size: int = TINY_SIZE, channels: int = 4, metadata: bool = True) -> Path:
    """A real .tflite made with TF (cached for the whole test run: TF import + convert cost seconds)."""
    key = (size, channels, metadata)
    if key not in _CACHE:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import tensorflow as tf
        import tf_keras as keras

        inp = keras.Input((size, size, 3), batch_size=1)
        conv = keras.layers.Conv2D(channels, 1, activation="sigmoid")
        out = conv(inp)
        m = keras.Model(inp, out)
        w = np.zeros((1, 1, 3, channels), np.float32)
        b = np.zeros((channels,), np.float32)
        if channels == 4:
            w[0, 0, :, 3] = [-20.0, -20.0, 20.0]
            b[3] = -5.0
        conv.set_weights([w, b])
        data = tf.lite.TFLiteConverter.from_keras_model(m).convert()
        if metadata:
            from mask2face.compress.tflite_metadata import build_metadata, embed
            names = ("r", "g", "b", "mask")[:channels]
            data = embed(data, build_metadata(name="tiny", precision="fp32", input_size=(size, size),
                                              output_channels=names))
        _CACHE[key] = data
    path = Path(directory) / f"tiny-{size}-{channels}-{int(metadata)}.tflite"
    path.write_bytes(_CACHE[key])
    return path


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> Path:
    return make_tiny_tflite(tmp_path_factory.mktemp("tiny"))


def test_loads_and_runs_with_metadata(tiny_path):
    m = Model.from_file(tiny_path, threads=2)
    assert m.delegate == "cpu" and m.threads == 2 and m.has_metadata
    assert m.metadata["name"] == "tiny" and m.input_size == (TINY_SIZE, TINY_SIZE)
    x = np.zeros((2, TINY_SIZE, TINY_SIZE, 3), np.float32)
    x[1, ..., 2] = 1.0                        # pure blue
    y = m.run(x)
    assert y.shape == (2, TINY_SIZE, TINY_SIZE, 4)
    np.testing.assert_allclose(y[..., :3], 0.5, atol=1e-6)
    np.testing.assert_allclose(y[0, ..., 3], 1 / (1 + np.exp(5.0)), atol=1e-5)   # sigmoid(-5)
    np.testing.assert_allclose(y[1, ..., 3], 1 / (1 + np.exp(-15.0)), atol=1e-5)  # sigmoid(20 - 5)


def test_uint8_pixels_are_scaled_for_a_float_model(tiny_path):
    m = Model.from_file(tiny_path, threads=1)
    u8 = np.zeros((1, TINY_SIZE, TINY_SIZE, 3), np.uint8)
    u8[..., 2] = 255                          # pure blue, as pixels
    np.testing.assert_array_equal(m.to_input_u8(u8), m.to_input(u8.astype(np.float32) / 255))
    np.testing.assert_allclose(m.run(u8)[..., 3], 1 / (1 + np.exp(-15.0)), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        m.to_input_u8(u8.astype(np.float32))


def test_defaults_without_metadata(tmp_path):
    path = make_tiny_tflite(tmp_path, channels=3, metadata=False)
    m = Model.from_file(path)
    assert not m.has_metadata
    assert m.metadata["input_size"] == [TINY_SIZE, TINY_SIZE]
    assert m.metadata["input_range"] == [0, 1] and m.metadata["color_order"] == "RGB"
    assert m.metadata["output_channels"] == ["r", "g", "b"]


def test_int8_quantise_round_trip():
    scale, zp = 1 / 255.0, -128
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    q = quantize(x, scale, zp, np.int8)
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127
    assert np.abs(dequantize(q, scale, zp) - x).max() <= scale / 2 + 1e-6       # round-to-nearest
    # Out of range clips instead of wrapping around.
    assert quantize(np.array([2.0, -1.0]), scale, zp, np.int8).tolist() == [127, -128]
    assert quantize(np.array([2.0, -1.0]), scale, 0, np.uint8).tolist() == [255, 0]
    # Every int8 value survives dequantise -> quantise exactly.
    all_q = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(quantize(dequantize(all_q, 0.02, 3), 0.02, 3, np.int8), all_q)


def test_gpu_request_falls_back_to_cpu_with_one_warning(tiny_path, capsys):
    m = Model.from_file(tiny_path, delegate="gpu:/nonexistent/libtensorflowlite_gpu_delegate.so")
    err = capsys.readouterr().err.strip().splitlines()
    assert m.delegate == "cpu" and m.requested_delegate.startswith("gpu")
    assert len(err) == 1 and "gpu delegate unavailable" in err[0] and "running on cpu" in err[0]
    assert m.run(np.zeros((1, TINY_SIZE, TINY_SIZE, 3), np.float32)).shape[-1] == 4


def test_nnapi_off_android_falls_back(tiny_path, capsys, monkeypatch):
    monkeypatch.delenv("ANDROID_ROOT", raising=False)
    m = Model.from_file(tiny_path, delegate="nnapi")
    assert m.delegate == "cpu" and "Android" in capsys.readouterr().err


def test_unknown_delegate_is_a_clear_error(tiny_path):
    with pytest.raises(ModelFileError, match="unknown delegate"):
        Model.from_file(tiny_path, delegate="tpu")


@pytest.mark.parametrize("content", [b"", b"TFL3", b"\x00" * 64, b"\x1c\x00\x00\x00TFL3" + b"\xff" * 100,
                                     os.urandom(4096)], ids=["empty", "tiny", "zeros", "fake-header", "random"])
def test_hostile_bytes_raise_model_file_error(tmp_path, content):
    p = tmp_path / "bad.tflite"
    p.write_bytes(content)
    with pytest.raises(ModelFileError):
        Model.from_file(p)


def test_truncated_real_model(tiny_path, tmp_path):
    data = tiny_path.read_bytes()
    for cut in (len(data) // 2, len(data) - 100, 40):
        p = tmp_path / f"cut{cut}.tflite"
        p.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            Model.from_file(p)


def test_missing_file_message(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        Model.from_file(tmp_path / "nope.tflite")


def test_a_model_changed_after_export_is_refused(tiny_path, tmp_path):
    data = bytearray(tiny_path.read_bytes())
    info = tflite_file.parse(bytes(data))
    start, end = info.buffer_spans[info.subgraphs[0].tensors[1].buffer]   # a weight of the conv
    assert end > start
    data[start] ^= 0x01                                                     # one bit of one weight
    p = tmp_path / "changed.tflite"
    p.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="changed after it was exported") as err:
        Model.from_file(p)
    assert "\n" not in str(err.value)


def test_an_unsigned_model_loads_with_one_warning(tiny_path, tmp_path, capsys):
    p = tmp_path / "unsigned.tflite"
    p.write_bytes(tiny_path.read_bytes().replace(b'"weights_sha256"', b'"weights_sha2xx"'))
    capsys.readouterr()
    m = Model.from_file(p)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mask2face")]
    assert not m.verified and Model.from_file(tiny_path).verified
    assert len(err) == 1 and "unverified" in err[0]


@pytest.mark.parametrize("key,value", [("output_channels", 7), ("input_size", "64"), ("input_range", [1, 0]),
                                       ("color_order", 3), ("output_quantization", {"scale": float("inf")})])
def test_metadata_of_the_wrong_type_is_one_line(tmp_path, key, value):
    from mask2face.compress.tflite_metadata import build_metadata, embed

    base = make_tiny_tflite(tmp_path, metadata=False).read_bytes()
    meta = build_metadata(name="tiny", precision="fp32", input_size=(TINY_SIZE, TINY_SIZE),
                          output_channels=("r", "g", "b", "mask")) | {key: value}
    p = tmp_path / "bad-meta.tflite"
    p.write_bytes(embed(base, meta))
    with pytest.raises(ModelFileError, match=f"metadata field '{key}'"):
        Model.from_file(p)


def test_new_interpreter_from_bytes_or_a_path_runs_the_same(tiny_path):
    x = np.random.default_rng(0).random((1, TINY_SIZE, TINY_SIZE, 3), dtype=np.float32)
    outputs = []
    for source in (tiny_path.read_bytes(), tiny_path, str(tiny_path)):
        it = model_mod.new_interpreter(source, 1)
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        outputs.append(it.get_tensor(it.get_output_details()[0]["index"]))
    assert all(np.array_equal(outputs[0], out) for out in outputs[1:])
    resized = model_mod.new_interpreter(tiny_path.read_bytes(), 1, input_shape=[1, 32, 32, 3])
    assert list(resized.get_input_details()[0]["shape"]) == [1, 32, 32, 3]
    assert list(model_mod.new_interpreter(tiny_path, allocate=False).get_input_details()[0]["shape"]) == \
        [1, TINY_SIZE, TINY_SIZE, 3]


def test_every_interpreter_is_made_by_new_interpreter():
    """model.new_interpreter is the one place that calls LiteRT's Interpreter(...) (inside
    native_log.filtered_stderr()): another caller would print LiteRT's start-up line on every run again."""
    import ast
    root = Path(__file__).resolve().parents[1]
    callers = []
    for folder in ("edge_runtime", "train", "compress", "benchmarks", "mask2face", "web"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                func = getattr(node, "func", None)
                if getattr(func, "id", None) == "Interpreter" or getattr(func, "attr", None) == "Interpreter":
                    callers.append(str(path.relative_to(root)))
    assert callers == ["edge_runtime/model.py"], callers
