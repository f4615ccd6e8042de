"""Safe image reading and atomic writing (numpy + OpenCV only).

User folders hold anything: text files named .jpg, truncated downloads, CMYK JPEGs, 16-bit PNGs and
decompression bombs (a tiny file that declares a gigapixel image). `load_image` checks the format by its magic
bytes, reads the declared size from the header (PNG IHDR / JPEG SOFn) BEFORE decoding, and returns 8-bit RGB
with the EXIF orientation applied. Every failure is an `ImageError` with a short `reason`:
"not-an-image", "truncated", "too-large", "empty", "unsupported-format", "unreadable".
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import DiskFullError, ImageError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DEFAULT_MAX_PIXELS = 40_000_000
# Other formats recognised only to give a precise reason (they are images, just not ones we accept).
_OTHER_MAGIC = {b"GIF8": "GIF", b"BM": "BMP", b"RIFF": "WEBP/RIFF", b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG ext) and CC (DAC) share the range but do not.
_SOF_MARKERS = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def sniff_format(data: bytes) -> str | None:
    """'jpeg' | 'png' | None from the first bytes."""
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    return None


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the IHDR chunk, which the PNG spec requires to come first."""
    if len(data) < 33:
        raise ImageError("PNG header is cut short", "truncated")
    length, ctype = struct.unpack(">I4s", data[8:16])
    if ctype != b"IHDR" or length != 13:
        raise ImageError("PNG does not start with an IHDR chunk", "not-an-image")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the first SOFn marker segment, walking the segments from SOI."""
    width, height, _ = jpeg_frame(data)
    return width, height


def _jpeg_markers(data: bytes):
    """(marker, offset of its 0xFF, segment length) of each marker segment from SOI on, ending with SOS or EOI
    (length 0). Junk and fill bytes between segments are skipped, as libjpeg does; a cut-off or corrupt header
    raises ImageError. The one walk both the size check and the metadata copy use."""
    i, n = 2, len(data)
    while True:
        # Skip fill bytes (0xFF padding is legal between segments).
        while i < n and data[i] != 0xFF:
            i += 1  # tolerate junk between segments, as libjpeg does
        while i < n and data[i] == 0xFF:
            i += 1
        if i >= n:
            raise ImageError("JPEG ends before its frame header", "truncated")
        marker = data[i]
        i += 1
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue  # standalone markers, no length
        if marker in (0xD9, 0xDA):
            yield marker, i - 2, 0
            return
        if i + 2 > n:
            raise ImageError("JPEG ends inside a segment header", "truncated")
        (length,) = struct.unpack(">H", data[i:i + 2])
        if length < 2:
            raise ImageError("JPEG has a corrupt segment length", "not-an-image")
        yield marker, i - 2, length
        i += length


def jpeg_frame(data: bytes) -> tuple[int, int, int]:
    """(width, height, colour components) from the first SOFn marker segment, walking the segments from SOI."""
    for marker, at, _ in _jpeg_markers(data):
        if marker in (0xD9, 0xDA):
            break
        if marker in _SOF_MARKERS:
            i, n = at + 2, len(data)
            if i + 7 > n:
                raise ImageError("JPEG ends inside its frame header", "truncated")
            height, width = struct.unpack(">HH", data[i + 3:i + 7])
            return width, height, (data[i + 7] if i + 7 < n else 3)
    raise ImageError("JPEG has no frame header before its image data", "not-an-image")


def image_size(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header alone; raises ImageError for anything else."""
    if not data:
        raise ImageError("file is empty (0 bytes)", "empty")
    fmt = sniff_format(data)
    if fmt is None:
        for magic, name in _OTHER_MAGIC.items():
            if data.startswith(magic):
                raise ImageError(f"{name} images are not supported; convert to JPEG or PNG", "unsupported-format")
        raise ImageError("not a JPEG or PNG file (checked by content, not extension)", "not-an-image")
    width, height = png_size(data) if fmt == "png" else jpeg_size(data)
    return fmt, width, height


def _looks_truncated(data: bytes, fmt: str) -> bool:
    # libjpeg fills a cut-off JPEG with grey and only warns, so check the end markers ourselves.
    # Search the tail only: some cameras append trailers after EOI, so EOI need not be the last bytes.
    if fmt == "jpeg":
        return data.rfind(b"\xff\xd9", max(0, len(data) - (1 << 20))) < 0
    return data.rfind(b"IEND", max(0, len(data) - (1 << 16))) < 0


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image") -> np.ndarray:
    """Bytes -> (H, W, 3) uint8 RGB; see the module docstring for the checks."""
    fmt, width, height = image_size(data)
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: header declares an empty image ({width}x{height})", "empty")
    if width * height > max_pixels:
        raise ImageError(f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels:,} "
                         "(possible decompression bomb); downscale it first", "too-large")
    if _looks_truncated(data, fmt):
        raise ImageError(f"{name}: {fmt.upper()} file is cut short (no end marker); re-download or re-export it",
                         "truncated")
    # IMREAD_COLOR: 8-bit, 3 channels (grey expanded, alpha dropped, 16-bit scaled, CMYK converted) and the
    # EXIF orientation applied (only IMREAD_IGNORE_ORIENTATION turns that off).
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageError(f"{name}: {fmt.upper()} data is corrupt and cannot be decoded", "truncated")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def colour_layout(data: bytes) -> str:
    """'grey' | 'rgb' | 'grey+alpha' | 'rgba' of a JPEG/PNG, from its header, so that an output can keep its
    input's kind (decode_image always gives RGB)."""
    if sniff_format(data) == "jpeg":
        return "grey" if jpeg_frame(data)[2] == 1 else "rgb"
    ctype = data[25] if len(data) > 25 else 2          # IHDR colour type: 0 grey, 2 RGB, 3 palette, 4/6 + alpha
    head = data[:data.find(b"IDAT")] if b"IDAT" in data else data
    alpha = ctype in (4, 6) or b"tRNS" in head          # tRNS: transparency of a palette / colour-key image
    grey = ctype in (0, 4)
    return ("grey" if grey else "rgb") + ("+alpha" if alpha else "")


def in_source_layout(rgb: np.ndarray, data: bytes) -> np.ndarray:
    """The restored RGB photo back in the layout of the file it came from (`data`): grey stays grey, and a PNG's
    alpha channel (read again from `data`) comes back, so transparent areas stay transparent."""
    layout = colour_layout(data)
    if layout == "rgb":
        return rgb
    if not layout.endswith("+alpha"):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 3 or raw.shape[2] not in (2, 4) or raw.shape[:2] != rgb.shape[:2]:
        return rgb
    alpha = raw[..., -1]
    if alpha.dtype != np.uint8:                          # 16-bit PNG
        alpha = (alpha // 257).astype(np.uint8)
    colour = np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, 2) if layout.startswith("grey") else rgb
    return np.dstack([colour, alpha])


MAX_FILE_BYTES = 1 << 30   # no JPEG/PNG within DEFAULT_MAX_PIXELS comes near 1 GiB


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes. FIFOs and devices (a pipe named x.jpg blocks for ever, /dev/zero never ends) and
    files over `max_bytes` are refused from stat() alone, before any reading."""
    p = Path(path)
    try:
        st = p.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{p} is not a regular file (a pipe, socket or device)", "not-an-image")
        if st.st_size > max_bytes:
            raise ImageError(f"{p} is {st.st_size / 2**30:.1f} GiB, larger than any photo this tool reads",
                             "too-large")
        return p.read_bytes()
    except IsADirectoryError:
        raise ImageError(f"{p} is a folder, not an image", "not-an-image") from None
    except FileNotFoundError:
        raise ImageError(f"{p} does not exist", "unreadable") from None
    except OSError as exc:
        raise ImageError(f"{p} cannot be read: {exc.strerror or exc}", "unreadable") from None


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a JPEG/PNG file as (H, W, 3) uint8 RGB, EXIF orientation applied. Raises ImageError."""
    return decode_image(read_bytes(path), max_pixels=max_pixels, name=str(path))


def plain_permissions(path: str | os.PathLike) -> None:
    """mkstemp creates 0600; give a temp file the permissions a plain open() would have (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to a temp file beside `path`, then rename over it (readers never see half a file).

    A tiny twin of mask2face.runs.write_bytes: edge_runtime may not import mask2face.*."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        plain_permissions(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"disk full while writing {path}: free some space in {path.parent}") from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def encode_image(rgb: np.ndarray, ext: str = ".png", jpeg_quality: int = 95) -> bytes:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3):
        raise ImageError(f"cannot encode array of dtype {rgb.dtype} and shape {rgb.shape}", "unsupported-format")
    if rgb.ndim == 3 and rgb.shape[2] not in (3, 4):
        raise ImageError(f"cannot encode an image with {rgb.shape[2]} channels", "unsupported-format")
    img = rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR if rgb.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ext = ext.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise ImageError(f"cannot encode image as {ext}", "unsupported-format")
    return buf.tobytes()


def save_image(path: str | os.PathLike, rgb: np.ndarray, jpeg_quality: int = 95, like: bytes | None = None) -> Path:
    """Write an RGB (or grey, or RGBA for PNG) uint8 image atomically; the format follows the suffix (.png,
    .jpg/.jpeg). `like`: the source file's bytes; a JPEG written from a JPEG keeps its EXIF (orientation reset to
    upright: the pixels already are) and its ICC colour profile."""
    path = Path(path)
    ext = path.suffix.lower() or ".png"
    data = encode_image(rgb, ext, jpeg_quality)
    if like is not None and ext in (".jpg", ".jpeg") and sniff_format(like) == "jpeg":
        data = with_jpeg_metadata(data, jpeg_metadata(like))
    return atomic_write(path, data)


def _jpeg_segments(data: bytes):
    """(marker, whole segment bytes) of the complete segments before the scan data (_jpeg_markers' walk); a
    damaged header only ends the list: metadata is copied where it can be, never a reason to fail a write."""
    try:
        for marker, at, length in _jpeg_markers(data):
            if marker in (0xD9, 0xDA) or at + 2 + length > len(data):
                return
            yield marker, data[at:at + 2 + length]
    except ImageError:
        return


def jpeg_metadata(data: bytes) -> list[bytes]:
    """The EXIF segment (orientation set to 1) and the ICC profile segments of a JPEG, to carry over to a JPEG
    written from it: a phone photo's wide-gamut profile, capture time and camera stay with the restored photo."""
    keep = []
    for marker, seg in _jpeg_segments(data):
        if marker == 0xE1 and seg[4:10] == b"Exif\x00\x00":
            seg = _exif_upright(seg)
            if seg is not None:
                keep.append(seg)
        elif marker == 0xE2 and seg[4:16] == b"ICC_PROFILE\x00":
            keep.append(seg)
    return keep


def _exif_upright(seg: bytes) -> bytes | None:
    """The EXIF segment with its IFD0 Orientation tag set to 1 (None if it cannot be parsed: better no EXIF than
    one that turns the upright pixels again)."""
    out = bytearray(seg)
    tiff = 10                                   # FF E1, length (2), "Exif\0\0"
    order = {b"II": "<", b"MM": ">"}.get(bytes(out[tiff:tiff + 2]))
    if order is None or len(out) < tiff + 8:
        return None
    (ifd,) = struct.unpack(order + "I", out[tiff + 4:tiff + 8])
    at = tiff + ifd
    if at + 2 > len(out):
        return None
    (count,) = struct.unpack(order + "H", out[at:at + 2])
    for k in range(count):
        entry = at + 2 + 12 * k
        if entry + 12 > len(out):
            return None
        tag, kind = struct.unpack(order + "HH", out[entry:entry + 4])
        if tag == 0x0112 and kind == 3:         # Orientation, SHORT
            out[entry + 8:entry + 10] = struct.pack(order + "H", 1)
    return bytes(out)


def with_jpeg_metadata(jpeg: bytes, segments: list[bytes]) -> bytes:
    """`jpeg` with `segments` inserted right after its start (and its JFIF header, if any)."""
    if not segments:
        return jpeg
    at = 2
    for marker, seg in _jpeg_segments(jpeg):
        if marker != 0xE0:
            break
        at += len(seg)
    return jpeg[:at] + b"".join(segments) + jpeg[at:]
