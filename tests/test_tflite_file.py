"""edge_runtime.tflite_file: the pure-python reader agrees with TensorFlow's schema and survives hostile files."""

from __future__ import annotations

import json
import random
import struct

import pytest

from mask2face.edge_runtime import tflite_file
from mask2face.edge_runtime.errors import ModelFileError
from test_model import make_tiny_tflite

ASSETS = tflite_file.Path(tflite_file.__file__).resolve().parent / "assets"


def test_metadata_matches_what_was_written(tmp_path):
    from mask2face.compress.tflite_metadata import read_all

    path = make_tiny_tflite(tmp_path)
    data = path.read_bytes()
    info = tflite_file.parse(data)
    assert info.metadata == read_all(data)          # every entry, byte for byte, as TF's own reader sees it
    meta = info.mask2face_metadata()
    assert meta == json.loads(read_all(data)["mask2face"])
    assert meta["name"] == "tiny" and meta["input_size"] == [64, 64] and meta["output_channels"][-1] == "mask"
    assert "CONV_2D" in info.ops and info.version == 3


def test_blazeface_ops_and_no_mask2face_entry():
    info = tflite_file.read(ASSETS / "face_detection_full_range.tflite")
    assert info.mask2face_metadata() is None
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE"} <= set(info.ops)


@pytest.mark.parametrize("data,match", [(b"", "empty"), (b"12345678", "truncated"),
                                        (b"\x10\x00\x00\x00NOPE" + b"\x00" * 32, "not a TFLite model")])
def test_header_checks(data, match):
    with pytest.raises(ModelFileError, match=match):
        tflite_file.parse(data)


def test_root_offset_past_end():
    data = struct.pack("<I", 1 << 30) + b"TFL3" + b"\x00" * 32
    with pytest.raises(ModelFileError, match="past the end|out of bounds"):
        tflite_file.parse(data)


def test_every_truncation_and_random_corruption_is_a_clean_error(tmp_path):
    """No IndexError / struct.error / MemoryError escapes, whatever bytes are damaged."""
    good = make_tiny_tflite(tmp_path).read_bytes()
    rng = random.Random(0)
    cases = [good[:n] for n in range(0, len(good), max(1, len(good) // 97))]
    for _ in range(300):
        b = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(8, len(b))] = rng.randrange(256)
        cases.append(bytes(b))
    cases += [b"\x00\x00\x00\x00TFL3" + bytes(rng.randrange(256) for _ in range(500)) for _ in range(50)]
    for data in cases:
        try:
            tflite_file.parse(data)
        except ModelFileError:
            pass


def test_metadata_that_is_not_json(tmp_path):
    from mask2face.compress import tflite_metadata as tm

    path = make_tiny_tflite(tmp_path)
    info = tflite_file.parse(path.read_bytes())
    broken = tflite_file.TfliteInfo(info.version, info.description, {"mask2face": b"\xff\xfe not json"}, info.ops)
    with pytest.raises(ModelFileError, match="not UTF-8 JSON"):
        broken.mask2face_metadata()


def test_elementwise_shapes_must_broadcast_to_the_output():
    from mask2face.edge_runtime.tflite_file import _broadcast
    assert _broadcast((1, 32, 32, 48), (48,)) == (1, 32, 32, 48)
    assert _broadcast((1, 32, 32, 48), (1, 1, 1, 48)) == (1, 32, 32, 48)
    assert _broadcast((1, 32, 32, 48), (64, 1, 1, 48)) == (64, 32, 32, 48)   # broadcasts, but not to the output
    assert _broadcast((1, 32, 32, 48), (1, 32, 32, 16)) is None
    assert _broadcast((0, 4), (1, 4)) == (0, 4)                               # numpy's rule for empty tensors
