"""A folder of hostile inputs for `mask2face remove` (test_hostile_inputs.py): damaged and fake photos, bombs,
odd names, links and special files. `make(folder)` returns the names it wrote, by family."""

from __future__ import annotations

import io
import os
import random
import struct
from pathlib import Path

import cv2
import numpy as np

from test_inpaint import masked_astronaut


def _jpeg(rgb: np.ndarray, **pil) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=90, **pil)
    return buf.getvalue()


def _png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", rgb[..., ::-1] if rgb.ndim == 3 else rgb)
    assert ok
    return buf.tobytes()


def _with_png_size(data: bytes, width: int, height: int) -> bytes:
    return data[:16] + struct.pack(">II", width, height) + data[24:]


def _with_jpeg_size(data: bytes, width: int, height: int) -> bytes:
    at = data.find(b"\xff\xc0") if b"\xff\xc0" in data else data.find(b"\xff\xc2")
    return data[:at + 5] + struct.pack(">HH", height, width) + data[at + 9:]


def _scan_bomb(data: bytes, repeats: int) -> bytes:
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * repeats + data[end:]


def _exif_long_orientation() -> bytes:
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 4, 1, 6) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def _clip(path: Path, frames: int = 2) -> bytes:
    frame = cv2.cvtColor(cv2.resize(masked_astronaut(), (96, 96)), cv2.COLOR_RGB2BGR)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 96))
    for _ in range(frames):
        w.write(frame)
    w.release()
    data = path.read_bytes()
    path.unlink()
    return data


def make(folder: Path, seed: int = 0, flips: int = 230, cuts: int = 160) -> dict[str, list[str]]:
    """Write the corpus into `folder` (created); {family: [entry names]}. About 520 entries by default."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    face = cv2.resize(masked_astronaut(), (128, 128))
    jpeg, png, progressive = _jpeg(face), _png(face), _jpeg(face, progressive=True)
    families: dict[str, list[str]] = {}

    def put(family: str, name: str, data: bytes | None = None) -> None:
        if data is not None:
            with open(os.path.join(os.fsencode(folder), os.fsencode(name)), "wb") as fh:
                fh.write(data)
        families.setdefault(family, []).append(name)

    for k in range(cuts):
        base, ext = (jpeg, "jpg") if k % 2 else (png, "png")
        put("truncated", f"cut{k:03d}.{ext}", base[:rng.randrange(0, len(base))])
    for k in range(flips):
        base, ext = ((jpeg, "jpg"), (png, "png"), (progressive, "jpg"))[k % 3]
        b = bytearray(base)
        for _ in range(rng.randint(1, 12)):
            b[rng.randrange(2, len(b))] = rng.randrange(256)
        put("bit flips", f"flip{k:03d}.{ext}", bytes(b))
    for k in range(40):
        put("random bytes", f"random{k:02d}.{('jpg', 'png', 'jpeg')[k % 3]}",
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000))))
    for k, magic in enumerate((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")):
        put("magic only", f"magic{k}.jpg", magic)
        put("magic only", f"magic{k}-junk.png", magic + b"\x00" * 5000)
    for k in range(20):
        put("empty or text", f"empty{k:02d}.jpg" if k % 2 else f"text{k:02d}.png",
            b"" if k % 2 else f"not an image {k}\n".encode())
    for w, h in ((0, 0), (0, 64), (1 << 31, 1 << 31), (100_000, 100_000), (65535, 65535), (7000, 7000)):
        put("declared size", f"size-{w}x{h}.png", _with_png_size(png, w, h))
        put("declared size", f"size-{w}x{h}.jpg", _with_jpeg_size(jpeg, min(w, 65535), min(h, 65535)))
    for k, repeats in enumerate((150, 1000, 11_000)):
        put("scan bombs", f"scanbomb{k}.jpg", _scan_bomb(progressive, repeats))
    others = {"gif": b"GIF89a" + b"\x00" * 40, "bmp": b"BM" + b"\x00" * 60, "webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
              "tif": b"II*\x00" + b"\x00" * 40, "heic": b"\x00\x00\x00\x18ftypheic", "jp2": b"\x00" * 12}
    for ext, data in others.items():
        put("other formats", f"other.{ext}", data)
        put("other formats", f"{ext}-named.jpg", data)
    clip = _clip(folder / "tmp-clip.avi")
    put("videos", "clip.avi", clip)
    put("videos", "cut-clip.avi", clip[:len(clip) // 2])
    put("videos", "random.mp4", bytes(rng.randrange(256) for _ in range(3000)))
    put("videos", "empty.mkv", b"")
    put("videos", "photo-named.mov", jpeg)
    put("names", os.fsdecode(b"photo_\xe9.jpg"), jpeg)
    put("names", os.fsdecode(b"clip_\xe9.avi"), clip)
    put("names", "p" * 240 + ".jpg", jpeg)
    put("names", "space and ünïcødé ☺.png", png)
    put("names", "-dash-first.jpg", jpeg)
    put("names", "UPPER.JPG", jpeg)
    put("colour", "exif-long.jpg", _jpeg(np.ascontiguousarray(np.rot90(face)), exif=_exif_long_orientation()))
    from PIL import Image, ImageCms
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk = io.BytesIO()
    Image.fromarray(face).convert("CMYK").save(cmyk, "JPEG", icc_profile=srgb[:16] + b"CMYK" + srgb[20:])
    put("colour", "cmyk.jpg", cmyk.getvalue())
    put("colour", "grey.png", _png(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY)))
    rgba = np.dstack([face[..., ::-1], np.full(face.shape[:2], 99, np.uint8)])
    put("colour", "rgba.png", cv2.imencode(".png", rgba)[1].tobytes())
    put("colour", "16bit.png", cv2.imencode(".png", face[..., ::-1].astype(np.uint16) * 257)[1].tobytes())
    put("colour", "tiny-1x1.png", _png(face[:1, :1]))
    put("colour", "thin-8x4000.png", _png(np.full((8, 4000, 3), 90, np.uint8)))
    giant = os.path.join(os.fsencode(folder), b"giant-1GiB.jpg")
    with open(giant, "wb") as fh:
        fh.write(b"\xff\xd8\xff\xe0")
        fh.truncate(1 << 30)                               # sparse: no disk used
    families.setdefault("special", []).append("giant-1GiB.jpg")
    for name, target in (("loop.jpg", "loop.jpg"), ("loop-a.png", "loop-b.png"), ("loop-b.png", "loop-a.png"),
                         ("dirloop", "dirloop"), ("dangling.jpg", "nowhere.jpg"), ("zero.jpg", "/dev/zero")):
        os.symlink(target, folder / name)
        families.setdefault("links", []).append(name)
    os.mkfifo(folder / "pipe.jpg")
    families["special"].append("pipe.jpg")
    (folder / "folder.jpg").mkdir()           # walked as the (empty) folder it is: no record expected
    return families


def entries(families: dict[str, list[str]]) -> list[str]:
    return [name for names in families.values() for name in names]
