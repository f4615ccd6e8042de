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
import re
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
# libjpeg decodes the whole image once per scan: a 389 KB file repeating its last scan 11,000 times took minutes
# (a "scan bomb"). Progressive JPEGs from cameras, browsers and encoders use about 10 (mozjpeg a few more).
MAX_JPEG_SCANS = 100
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
        # Junk between segments is tolerated, as libjpeg does, then fill bytes (0xFF padding is legal). Both are
        # skipped by C-level searches: a 1 GiB file of zeros posing as a JPEG took minutes one byte at a time.
        i = data.find(b"\xff", i)
        if i < 0:
            raise ImageError("JPEG ends before its frame header", "truncated")
        i = _FILL_BYTES.match(data, i).end()
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


_FILL_BYTES = re.compile(rb"\xff*")


def jpeg_scans(data: bytes) -> int:
    """How many scans (SOS markers) a JPEG holds. 0xFF 0xDA cannot occur inside entropy-coded data (a 0xFF there
    is always followed by 0x00 or a restart marker), so one C-level count is exact but for an embedded thumbnail."""
    return data.count(b"\xff\xda")


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
    if fmt == "jpeg" and jpeg_scans(data) > MAX_JPEG_SCANS:
        raise ImageError(f"{name}: JPEG holds {jpeg_scans(data):,} scans, more than the {MAX_JPEG_SCANS} any encoder "
                         "writes (each one decodes the whole image again); re-save it as a normal JPEG", "too-large")
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


# An input photo over this is refused from stat() alone, before any reading (`remove --max-file-mb` changes it). A
# 40 MP photo (DEFAULT_MAX_PIXELS) is ~10-40 MB as a JPEG and 120 MB as an uncompressed 8-bit PNG.
MAX_FILE_BYTES = 256 << 20


def resolved(path: str | os.PathLike) -> Path:
    """path.resolve(), or the absolute path where it cannot be resolved: a symlink loop makes Path.resolve raise
    RuntimeError on Python 3.11 (OSError later), and one folder entry must not stop a batch."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def is_link_loop(path: str | os.PathLike) -> bool:
    """A symbolic link that leads back to itself (stat fails with ELOOP)."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def missing_message(path: str | os.PathLike) -> str:
    """Why `path` cannot be found: a link loop, a broken link, or nothing there."""
    if is_link_loop(path):
        return f"{path} is a symbolic link loop (it leads back to itself); remove it or point it at a file"
    if os.path.islink(path):
        return f"{path} is a broken symbolic link (its target {os.readlink(path)!r} does not exist)"
    return f"{path} does not exist"


def _check_regular(st: os.stat_result, p: Path, max_bytes: int) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{p} is a folder, not an image", "not-an-image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"{p} is not a regular file (a pipe, socket or device)", "not-an-image")
    if st.st_size > max_bytes:
        raise ImageError(f"{p} is {st.st_size / 2**20:,.0f} MiB, larger than the {max_bytes / 2**20:,.0f} MiB an "
                         "input may be (--max-file-mb raises the limit)", "too-large")


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes. FIFOs and devices (a pipe named x.jpg blocks for ever, /dev/zero never ends) and
    files over `max_bytes` are refused from stat() alone, before any reading; the file is then opened without
    blocking and checked again on the open descriptor, so a path swapped for a FIFO in between cannot block."""
    p = Path(path)
    try:
        _check_regular(p.stat(), p, max_bytes)
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            _check_regular(st, p, max_bytes)
            with os.fdopen(fd, "rb", closefd=False) as fh:
                data = fh.read(st.st_size + 1)       # one read of the size fstat gave: no unbounded growth
        finally:
            os.close(fd)
        if len(data) != st.st_size:
            raise ImageError(f"{p} changed while it was read; run again once it is complete", "truncated")
        return data
    except FileNotFoundError:
        raise ImageError(missing_message(p), "unreadable") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ImageError(missing_message(p), "unreadable") from None
        raise ImageError(f"{p} cannot be read: {exc.strerror or exc}", "unreadable") from None


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read a JPEG/PNG file as (H, W, 3) uint8 RGB, EXIF orientation applied. Raises ImageError."""
    return decode_image(read_bytes(path), max_pixels=max_pixels, name=str(path))


# Temp files beside an output: a short fixed prefix (mkstemp adds 8 random characters), not the output's own name,
# which may already be near NAME_MAX (255 bytes): ".<244-character name>.XXXXXXXX.tmp" does not fit.
TEMP_PREFIX = ".mask2face-"


def plain_permissions(path: str | os.PathLike) -> None:
    """mkstemp creates 0600; give a temp file the permissions a plain open() would have (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def atomic_write(path: str | os.PathLike, data: bytes, fsync: bool = True) -> Path:
    """Write bytes to a temp file beside `path`, then rename over it (readers never see half a file). `fsync`
    False: for small bookkeeping files that must survive a killed process, not a power cut (each fsync costs
    milliseconds, more on an SD card).

    A tiny twin of mask2face.runs.write_bytes: edge_runtime may not import mask2face.*."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if fsync:
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
    written from it: a phone photo's wide-gamut profile, capture time and camera stay with the restored photo.
    A profile is kept only if it describes the colour space the restored photo is written in (RGB, or grey for a
    grey photo): a CMYK photo is written as RGB, and its CMYK profile on RGB pixels shows wrong colours."""
    keep = []
    written_space = b"GRAY" if colour_layout(data) == "grey" else b"RGB "
    for marker, seg in _jpeg_segments(data):
        if marker == 0xE1 and seg[4:10] == b"Exif\x00\x00":
            seg = _exif_upright(seg)
            if seg is not None:
                keep.append(seg)
        elif marker == 0xE2 and seg[4:16] == b"ICC_PROFILE\x00":
            keep.append(seg)
    icc = [seg for seg in keep if seg[4:16] == b"ICC_PROFILE\x00"]
    if icc and icc_colour_space(icc) != written_space:
        keep = [seg for seg in keep if seg not in icc]
    return keep


def icc_colour_space(segments: list[bytes]) -> bytes | None:
    """The data colour space signature (b"RGB ", b"CMYK", b"GRAY", ...) of an ICC profile split over APP2 segments:
    bytes 16-20 of the profile, in the segment numbered 1 (each segment: FF E2, length, "ICC_PROFILE\0", its
    number, the count, then its part of the profile)."""
    for seg in segments:
        if len(seg) >= 18 and seg[16] == 1:
            return bytes(seg[18 + 16:18 + 20]) if len(seg) >= 18 + 20 else None
    return None


def _exif_upright(seg: bytes) -> bytes | None:
    """The EXIF segment with its IFD0 Orientation tag set to 1 (None if it cannot be parsed: better no EXIF than
    one that turns the upright pixels again). Whatever type the tag was stored as (SHORT as the standard says, but
    also LONG or a signed type from some writers), it is rewritten as SHORT 1, which fits in the entry itself."""
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
        (tag,) = struct.unpack(order + "H", out[entry:entry + 2])
        if tag == 0x0112:                       # Orientation: SHORT, count 1, value 1, padded to 4 bytes
            out[entry + 2:entry + 12] = struct.pack(order + "HIHH", 3, 1, 1, 0)
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
