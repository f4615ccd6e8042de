"""edge_runtime.safeio against real files made with OpenCV and PIL (CMYK, 16-bit, EXIF, bombs, junk)."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from mask2face.edge_runtime import safeio
from mask2face.edge_runtime.errors import ImageError


def _gradient(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)], -1).astype(np.uint8)


def _reason(path, **kw):
    with pytest.raises(ImageError) as info:
        safeio.load_image(path, **kw)
    return info.value.reason


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def test_png_round_trip_is_exact_and_rgb(tmp_path):
    rgb = _gradient()
    safeio.save_image(tmp_path / "a.png", rgb)
    assert np.array_equal(safeio.load_image(tmp_path / "a.png"), rgb)
    # RGB order: the file on disk (BGR in OpenCV) has red in channel 2
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png"))[..., 2], rgb[..., 0])
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temp file left behind


def test_jpeg_and_png_named_jpg_load(tmp_path):
    rgb = _gradient()
    safeio.save_image(tmp_path / "a.jpg", rgb)
    assert np.abs(safeio.load_image(tmp_path / "a.jpg").astype(int) - rgb).mean() < 3
    (tmp_path / "png.jpg").write_bytes(safeio.encode_image(rgb, ".png"))  # format comes from the bytes
    assert np.array_equal(safeio.load_image(tmp_path / "png.jpg"), rgb)


def test_bad_files_raise_short_reasons(tmp_path):
    (tmp_path / "text.jpg").write_text("hello, I am not a photo\n")
    (tmp_path / "zero.jpg").write_bytes(b"")
    jpg = safeio.encode_image(_gradient(), ".jpg")
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    png = safeio.encode_image(_gradient(), ".png")
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "anim.gif").write_bytes(b"GIF89a" + b"\0" * 20)
    (tmp_path / "header_only.jpg").write_bytes(b"\xff\xd8\xff")
    assert _reason(tmp_path / "text.jpg") == "not-an-image"
    assert _reason(tmp_path / "zero.jpg") == "empty"
    assert _reason(tmp_path / "cut.jpg") == "truncated"
    assert _reason(tmp_path / "cut.png") == "truncated"
    assert _reason(tmp_path / "anim.gif") == "unsupported-format"
    assert _reason(tmp_path / "header_only.jpg") == "truncated"
    assert _reason(tmp_path / "missing.jpg") == "unreadable"


def test_decompression_bomb_headers_are_refused_before_decoding(tmp_path):
    # A PNG declaring 100k x 100k pixels (10 gigapixels) with a tiny body: refused from IHDR alone.
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    bomb = safeio.PNG_MAGIC + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) \
        + _png_chunk(b"IEND", b"")
    (tmp_path / "bomb.png").write_bytes(bomb)
    assert safeio.image_size(bomb) == ("png", 100_000, 100_000)
    assert _reason(tmp_path / "bomb.png") == "too-large"
    # A real JPEG whose SOF0 is patched to claim 60000 x 60000.
    jpg = bytearray(safeio.encode_image(_gradient(), ".jpg"))
    i = jpg.find(b"\xff\xc0")
    jpg[i + 5:i + 9] = struct.pack(">HH", 60000, 60000)
    (tmp_path / "bomb.jpg").write_bytes(bytes(jpg))
    assert safeio.image_size(bytes(jpg))[1:] == (60000, 60000)
    assert _reason(tmp_path / "bomb.jpg") == "too-large"
    # The limit is a parameter: an ordinary image over a small cap is refused too.
    safeio.save_image(tmp_path / "ok.png", _gradient())
    assert _reason(tmp_path / "ok.png", max_pixels=1000) == "too-large"


def test_jpeg_header_size_matches_decoder(tmp_path):
    rgb = _gradient(37, 91)
    data = safeio.encode_image(rgb, ".jpg")
    assert safeio.image_size(data) == ("jpeg", 91, 37)


def test_cmyk_jpeg_becomes_rgb():
    from PIL import Image
    import io
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16] = (220, 30, 30)
    rgb[:, 16:] = (30, 30, 220)
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG", quality=95)
    assert Image.open(io.BytesIO(buf.getvalue())).mode == "CMYK"
    out = safeio.decode_image(buf.getvalue())
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert np.abs(out[8, 4].astype(int) - (220, 30, 30)).max() < 40   # red stays red (no inverted CMYK)
    assert np.abs(out[8, 28].astype(int) - (30, 30, 220)).max() < 40


def test_16bit_grey_and_alpha_png_become_8bit_rgb(tmp_path):
    g16 = (np.arange(64 * 32).reshape(32, 64) * 31).astype(np.uint16)
    rgb16 = np.stack([g16, g16 // 2, 65535 - g16], -1)
    cv2.imwrite(str(tmp_path / "deep.png"), rgb16[..., ::-1])
    out = safeio.load_image(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out.shape == (32, 64, 3)
    assert np.abs(out.astype(int) - (rgb16 >> 8)).max() <= 1   # scaled, not clipped
    grey = _gradient()[..., 0]
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    out = safeio.load_image(tmp_path / "grey.png")
    assert out.shape == grey.shape + (3,) and np.array_equal(out[..., 1], grey)
    rgba = np.dstack([_gradient(), np.full(_gradient().shape[:2], 7, np.uint8)])
    cv2.imwrite(str(tmp_path / "alpha.png"), rgba[..., [2, 1, 0, 3]])
    assert np.array_equal(safeio.load_image(tmp_path / "alpha.png"), _gradient())


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image
    # Stored pixels: 20 rows x 40 cols, left half red. EXIF 6 = "rotate 90 deg clockwise to display",
    # so the displayed image is 40 x 20 with red on top.
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = (230, 20, 20)
    stored[:, 20:] = (20, 20, 230)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "rot.jpg", "JPEG", quality=95, exif=exif.tobytes())
    out = safeio.load_image(tmp_path / "rot.jpg")
    assert out.shape == (40, 20, 3)
    assert out[5, 10, 0] > 150 and out[5, 10, 2] < 100     # top is red
    assert out[35, 10, 2] > 150 and out[35, 10, 0] < 100   # bottom is blue


def test_save_image_replaces_atomically(tmp_path):
    p = tmp_path / "x.png"
    safeio.save_image(p, _gradient())
    safeio.save_image(p, 255 - _gradient())
    assert np.array_equal(safeio.load_image(p), 255 - _gradient())
    assert sorted(q.name for q in tmp_path.iterdir()) == ["x.png"]
    with pytest.raises(ImageError):
        safeio.save_image(tmp_path / "y.png", np.zeros((4, 4), np.float32))


def test_atomic_write_on_a_full_disk_is_one_clear_error_and_leaves_no_temp_file(tmp_path, monkeypatch):
    import errno
    import os

    from mask2face.edge_runtime import safeio
    from mask2face.edge_runtime.errors import DiskFullError

    (tmp_path / "keep.png").write_bytes(b"old")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match="disk full while writing .*keep.png: free some space"):
        safeio.atomic_write(tmp_path / "keep.png", b"new")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]                 # no temp file left
    assert (tmp_path / "keep.png").read_bytes() == b"old"                        # the old file is untouched
