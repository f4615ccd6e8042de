"""edge_runtime.media + cli: folders, hostile files, no-face copy-through, video fps, the summary."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from mask2face.edge_runtime import cli, media
from mask2face.edge_runtime.errors import Mask2FaceError
from mask2face.edge_runtime.inpaint import Inpainter
from mask2face.edge_runtime.safeio import load_image, save_image
from test_inpaint import masked_astronaut
from test_model import make_tiny_tflite

skimage_data = pytest.importorskip("skimage.data")


def _args(inputs, out, model, **kw):
    return argparse.Namespace(inputs=inputs, out=out, model=model, camera=kw.get("camera"), delegate="cpu",
                              threads=2, summary=kw.get("summary"), redetect_every=kw.get("redetect_every"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_tflite(tmp_path_factory.mktemp("m"))


def _tree(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_folder_batch_with_hostile_file_no_face_and_summary(tmp_path, tiny, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    save_image(src / "masked.png", masked_astronaut())
    save_image(src / "sub" / "coffee.jpg", skimage_data.coffee())
    (src / "sub" / "evil.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)    # truncated JPEG
    (src / "notes.txt").write_text("not an image")
    before = _tree(src)
    out = tmp_path / "out"
    rc = cli.cli_main(None, _args([src], out, tiny))
    assert rc == 1                                                       # one file failed, the batch went on
    assert _tree(src) == before                                          # inputs never modified
    summary = json.loads((out / "summary.json").read_text())
    by = {Path(r["file"]).name: r for r in summary["records"]}
    assert set(by) == {"masked.png", "coffee.jpg", "evil.jpg"}           # .txt is not an input
    assert by["evil.jpg"]["status"] == "error" and by["evil.jpg"]["reason"] in ("truncated", "not-an-image")
    assert by["coffee.jpg"]["status"] == "no-face"
    assert (out / "in" / "sub" / "coffee.jpg").read_bytes() == (src / "sub" / "coffee.jpg").read_bytes()
    assert by["masked.png"]["status"] == "ok" and by["masked.png"]["pasted"] == 1
    restored = load_image(out / "in" / "masked.png")
    assert not np.array_equal(restored, masked_astronaut())
    assert summary["files"] == 3 and summary["faces"] == 1 and summary["faces_pasted"] == 1
    assert set(summary["time_seconds"]) >= {"wall", "detection", "model", "blending"}
    assert summary["model"]["delegate"] == "cpu" and summary["model"]["threads"] == 2
    assert [p.name for p in out.rglob(".*")] == [".mask2face"]           # the records; no temp files left behind
    assert not list((out / ".mask2face").rglob(".*"))
    assert "evil.jpg" in capsys.readouterr().err


def _masked_clip(path: Path, frames: int, fps: float) -> Path:
    """An MJPG .avi of `frames` copies of the masked astronaut."""
    frame = cv2.cvtColor(masked_astronaut(), cv2.COLOR_RGB2BGR)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (512, 512))
    for _ in range(frames):
        w.write(frame)
    w.release()
    return path


def test_video_keeps_fps_and_frame_count(tmp_path, tiny):
    src = _masked_clip(tmp_path / "clip.avi", 5, 12.0)
    out = tmp_path / "out"
    assert cli.cli_main(None, _args([src], out, tiny, summary=tmp_path / "s.json")) == 0
    rec = json.loads((tmp_path / "s.json").read_text())["records"][0]
    assert rec["frames"] == 5 and rec["pasted"] == 5
    cap = cv2.VideoCapture(str(out / "clip.avi"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5
    # Written through a private temp file, but with the permissions of any other output (umask applied)
    assert (out / "clip.avi").stat().st_mode & 0o777 == 0o666 & ~_umask()


def test_video_faces_are_followed_between_full_detections(tmp_path, tiny):
    """By default the full detector runs on the first frame of a still clip only (the face is followed after it);
    --redetect-every 1 runs it on every frame. The restored frames are the same either way."""
    src = _masked_clip(tmp_path / "clip.avi", 5, 12.0)
    frames = {}
    for every, full in ((None, 1), (1, 5)):
        out, summary = tmp_path / f"out{every}", tmp_path / f"s{every}.json"
        assert cli.cli_main(None, _args([src], out, tiny, summary=summary, redetect_every=every)) == 0
        rec = json.loads(summary.read_text())["records"][0]
        assert (rec["frames"], rec["pasted"], rec["full_detections"]) == (5, 5, full)
        assert rec["redetect_every"] == (every or 10)
        cap = cv2.VideoCapture(str(out / "clip.avi"))
        frames[every] = np.array([cap.read()[1] for _ in range(5)], np.float32)
        cap.release()
    assert np.abs(frames[None] - frames[1]).mean() < 1.0   # MJPG-coded: not bit-identical, but the same pictures


def _umask() -> int:
    import os
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_out_inside_the_input_folder_is_not_read_again_and_other_formats_are_listed(tmp_path, tiny):
    """`remove photos --out photos` twice: the second run takes the same inputs, not the first run's outputs; a
    .webp in the folder is an error record that says to convert it, not a file silently left out."""
    src = tmp_path / "photos"
    src.mkdir()
    save_image(src / "masked.png", masked_astronaut())
    (src / "scan.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    jobs = [[(p.name, k) for p, _, k in media.collect([src], src)]]
    assert cli.cli_main(None, _args([src], src, tiny)) == 1          # the .webp is an error
    jobs.append([(p.name, k) for p, _, k in media.collect([src], src)])
    assert jobs[0] == jobs[1] == [("masked.png", "image"), ("scan.webp", "unknown")]
    summary = json.loads((src / "summary.json").read_text())
    webp = [r for r in summary["records"] if r["file"].endswith("scan.webp")][0]
    assert webp["status"] == "error" and "convert it to JPEG or PNG" in webp["error"]


def test_grey_and_transparent_photos_keep_their_kind(tmp_path, tiny):
    """decode_image gives RGB; a restored grey photo is written grey, and a PNG's alpha channel comes back."""
    from mask2face.edge_runtime.safeio import encode_image
    rgba = np.dstack([masked_astronaut(), np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))])
    src = tmp_path / "in"
    src.mkdir()
    (src / "rgba.png").write_bytes(encode_image(rgba, ".png"))
    assert cli.cli_main(None, _args([src / "rgba.png"], tmp_path / "out", tiny)) == 0
    written = cv2.imread(str(tmp_path / "out" / "rgba.png"), cv2.IMREAD_UNCHANGED)
    assert written.shape == (512, 512, 4)
    assert np.array_equal(written[..., 3], rgba[..., 3])
    assert not np.array_equal(written[..., 2::-1], rgba[..., :3])       # the face was restored
    grey = cv2.cvtColor(masked_astronaut(), cv2.COLOR_RGB2GRAY)
    for ext in (".png", ".jpg"):
        data = encode_image(grey, ext)
        restored = np.full((512, 512, 3), (10, 200, 30), np.uint8)
        assert media.in_source_layout(restored, data).shape == (512, 512)
        assert media.in_source_layout(masked_astronaut(), encode_image(masked_astronaut(), ext)).shape == (512, 512, 3)


def test_output_over_input_is_refused(tmp_path):
    save_image(tmp_path / "a.png", skimage_data.coffee())
    with pytest.raises(media.MediaError, match="overwrite"):
        media.collect([tmp_path / "a.png"], tmp_path)


def test_nothing_to_do_is_a_clear_error(tmp_path, tiny):
    with pytest.raises(Mask2FaceError, match="nothing to do"):
        cli.cli_main(None, _args([], tmp_path, tiny))
    with pytest.raises(Mask2FaceError, match="--out"):
        cli.cli_main(None, _args([tmp_path], None, tiny))


def test_missing_camera_is_reported(tmp_path, tiny):
    # The camera alone: one error (the CLI prints it as one line, exit 2), no summary of nothing.
    with pytest.raises(media.MediaError, match="camera 97 cannot be opened"):
        cli.cli_main(None, _args([], tmp_path / "o", tiny, camera=97))
    assert not (tmp_path / "o" / "summary.json").exists()
    # Beside photos: the photos are done, and the camera is an error record of the batch.
    photo = tmp_path / "p.png"
    save_image(photo, skimage_data.coffee())
    rc = cli.cli_main(None, _args([photo], tmp_path / "o", tiny, camera=97))
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert rc == 1 and [e["file"] for e in s["errors"]] == ["camera:97"] and s["files"] == 2


def test_chunked_folder_equals_one_at_a_time_and_bad_files_stay_alone(tmp_path, tiny):
    """Photos go through Inpainter.remove_many in chunks: byte-identical outputs for chunk 1 and 3, in input order;
    an unusable photo inside a chunk is its own error record."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        save_image(src / f"{i}-masked.png", masked_astronaut())
    save_image(src / "2-coffee.png", skimage_data.coffee())
    save_image(src / "3-tiny.png", np.zeros((4, 4, 3), np.uint8))     # decodes, but cannot hold a face
    outputs = {}
    for chunk in (1, 3):
        out = tmp_path / f"out{chunk}"
        args = _args([src], out, tiny)
        args.chunk = chunk
        assert cli.cli_main(None, args) == 1
        records = json.loads((out / "summary.json").read_text())["records"]
        assert [Path(r["file"]).name for r in records] == sorted(p.name for p in src.iterdir())
        by = {Path(r["file"]).name: r for r in records}
        assert by["3-tiny.png"]["status"] == "error" and "too small" in by["3-tiny.png"]["error"]
        assert [by[f"{i}-masked.png"]["status"] for i in range(4)] == ["ok"] * 4
        outputs[chunk] = {p.name: p.read_bytes() for p in (out / "in").iterdir()}
    assert outputs[1] == outputs[3] and len(outputs[1]) == 5


class _FailsOnWidePhotos:
    """An inpainter stand-in whose model breaks on photos wider than 600 px."""

    def __init__(self, inpainter):
        self.inner = inpainter

    def remove_detailed(self, image):
        if image.shape[1] > 600:
            raise ValueError("model failed on this photo")
        return self.inner.remove_detailed(image)

    def remove_many(self, images):
        return [self.remove_detailed(image) for image in images]


def test_a_photo_that_breaks_the_model_fails_alone(tmp_path, tiny):
    src = tmp_path / "in"
    src.mkdir()
    save_image(src / "a.png", masked_astronaut())
    save_image(src / "b.png", np.concatenate([masked_astronaut(), masked_astronaut()], axis=1))
    save_image(src / "c.png", masked_astronaut())
    jobs = media.collect([src], tmp_path / "out")
    records = media.run_batch(_FailsOnWidePhotos(Inpainter.from_file(tiny)), jobs, chunk=8)
    assert [(Path(r["file"]).name, r["status"]) for r in records] == [("a.png", "ok"), ("b.png", "error"),
                                                                       ("c.png", "ok")]
    assert "model failed" in records[1]["error"]


def test_video_in_chunks_keeps_every_frame(tmp_path, tiny):
    src = _masked_clip(tmp_path / "clip.avi", 5, 10.0)
    inp = Inpainter.from_file(tiny)
    for chunk, max_frames, expect in ((2, None, 5), (3, 4, 4), (1, 2, 2)):
        cap, fps, _ = media.open_video(src)
        try:
            rec = media.process_stream(inp, cap, tmp_path / f"o{chunk}.avi", fps, "clip", max_frames=max_frames,
                                       chunk=chunk)
        finally:
            cap.release()
        assert rec["frames"] == expect and rec["pasted"] == expect


def test_progress_bar_counts_finished_files(tmp_path, tiny):
    """The bar advances as files are written (photos in chunks, then a video), and reaches the job count."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        save_image(src / f"{i}.png", masked_astronaut())
    _masked_clip(src / "v.avi", 2, 5.0)
    jobs = media.collect([src], tmp_path / "out")
    seen = []

    class Bar:
        def __init__(self, total=None, **kw):
            self.total, self.n, self.top = total, 0, "desc" in kw and kw["desc"] == "remove"

        def update(self, k):
            self.n += k
            if self.top:
                seen.append((self.n, len(list((tmp_path / "out").rglob("*.png")))))

        def close(self):
            pass

    records = media.run_batch(Inpainter.from_file(tiny), jobs, bar_factory=Bar, chunk=2)
    assert len(records) == 4
    assert seen == [(1, 1), (2, 2), (3, 3), (4, 3)]      # each file as it is written, never ahead of them


def test_a_video_missing_frames_never_takes_its_final_name(tmp_path):
    """cv2.VideoWriter drops frames without an error (full disk, codec trouble); check_video counts what the file
    holds before it is renamed into place."""
    path = tmp_path / ".tmp.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    media.check_video(str(path), 5, tmp_path / "out.avi")
    with pytest.raises(media.MediaError, match=r"not written completely \(5 of 6 frames"):
        media.check_video(str(path), 6, tmp_path / "out.avi")
    with pytest.raises(media.MediaError, match=r"\(0 of 5 frames"):
        media.check_video(str(tmp_path / "missing.avi"), 5, tmp_path / "out.avi")


def test_outputs_never_land_on_inputs_or_on_each_other(tmp_path, tiny):
    """Checked before any work: --summary on an input photo, and two inputs that would write one output."""
    src = tmp_path / "in"
    src.mkdir()
    save_image(src / "precious.jpg", masked_astronaut())
    before = (src / "precious.jpg").read_bytes()
    with pytest.raises(media.MediaError, match="--summary .* is an input or an output"):
        cli.cli_main(None, _args([src], tmp_path / "out", tiny, summary=src / "precious.jpg"))
    with pytest.raises(media.MediaError, match="is an input or an output"):
        cli.cli_main(None, _args([src], tmp_path / "out", tiny, summary=tmp_path / "out" / "in" / "precious.jpg"))
    assert (src / "precious.jpg").read_bytes() == before
    for a, b in (("x/photos", "y/photos"), ("v/clip.mkv", "v/clip.mp4")):
        for rel in (a, b):
            target = tmp_path / rel
            if target.suffix:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"video")
            else:
                target.mkdir(parents=True)
                save_image(target / "p.jpg", masked_astronaut())
        with pytest.raises(media.MediaError, match="would both be written to"):
            media.collect([tmp_path / a, tmp_path / b], tmp_path / "out2")


def test_pipes_devices_and_thin_giants_do_not_hang_or_eat_memory(tmp_path, tiny):
    """A FIFO named .jpg would block read() for ever and /dev/zero never ends: both are refused from stat(). A
    60000x8 PNG is a few KB within the pixel limit; the detector's padded view must not blow it up to gigabytes."""
    import os
    import time
    src = tmp_path / "in"
    src.mkdir()
    os.mkfifo(src / "pipe.jpg")
    (src / "zero.jpg").symlink_to("/dev/zero")
    save_image(src / "thin.png", np.full((8, 60000, 3), 128, np.uint8))
    t0 = time.perf_counter()
    assert cli.cli_main(None, _args([src], tmp_path / "out", tiny)) == 1
    assert time.perf_counter() - t0 < 60
    by = {Path(r["file"]).name: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())["records"]}
    assert by["pipe.jpg"]["status"] == by["zero.jpg"]["status"] == "error"
    assert "not a regular file" in by["pipe.jpg"]["error"] and "not a regular file" in by["zero.jpg"]["error"]
    assert by["thin.png"]["status"] == "no-face"


def test_a_model_output_with_nan_is_never_pasted(tiny):
    from mask2face.edge_runtime.inpaint import FaceReport
    inp = Inpainter.from_file(tiny)
    s = inp.size
    report = FaceReport(box=[0, 0, 1, 1], score=1.0, stage="full", pasted=False)
    pred = np.full((s, s, 4), 0.9, np.float32)
    pred[3, 3, 0] = np.nan
    alpha = inp._alpha(pred, report, np.zeros((s, s, 3), np.uint8))
    assert not report.pasted and "not finite" in report.reason and not alpha.any()


def test_a_restored_jpeg_keeps_its_exif_and_colour_profile_and_stays_upright(tmp_path, tiny):
    """A phone photo: pixels stored sideways with EXIF orientation 6, a camera name and an ICC profile. The restored
    JPEG is stored upright, so its orientation tag says 1; the rest of the EXIF and the profile come along."""
    from PIL import Image, ImageCms
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    upright = np.ascontiguousarray(masked_astronaut()[:, :400])                 # 512 rows x 400 columns
    exif = Image.Exif()
    exif[0x0112] = 6                                                           # rotate 90 degrees clockwise to view
    exif[0x010F] = "mask2face-test-camera"                                     # Make
    stored = np.ascontiguousarray(np.rot90(upright, k=1))                      # what the sensor wrote
    src = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(src, "JPEG", quality=95, exif=exif.tobytes(), icc_profile=icc)
    assert cli.cli_main(None, _args([src], tmp_path / "out", tiny)) == 0
    out = Image.open(tmp_path / "out" / "phone.jpg")
    assert out.size == (400, 512)                                              # stored upright now
    assert out.getexif()[0x0112] == 1 and out.getexif()[0x010F] == "mask2face-test-camera"
    assert out.info.get("icc_profile") == icc
    assert not np.array_equal(np.asarray(out), upright)                        # the face was restored


def test_min_change_decides_what_is_pasted(tmp_path, tiny):
    """--min-change 1.0 (the model would have to change every masked pixel completely) pastes nothing, and the
    photo is copied through byte for byte; the default pastes the same photo."""
    src = tmp_path / "masked.png"
    save_image(src, masked_astronaut())
    for value, status in ((None, "ok"), (1.0, "no-mask")):
        args = _args([src], tmp_path / f"out-{value}", tiny)
        args.min_change = value
        assert cli.cli_main(None, args) == 0
        rec = json.loads((tmp_path / f"out-{value}" / "summary.json").read_text())["records"][0]
        assert rec["status"] == status, rec
    assert (tmp_path / "out-1.0" / "masked.png").read_bytes() == src.read_bytes()


def test_a_folder_that_cannot_be_read_is_an_error_record(tmp_path, tiny, monkeypatch):
    """os.walk skips a subfolder it may not list (no read permission; root, who runs CI, may list anything, so the
    walk's error is simulated): the summary lists it instead of leaving its photos out silently."""
    import os
    src = tmp_path / "in"
    (src / "locked").mkdir(parents=True)
    save_image(src / "masked.png", masked_astronaut())
    real_walk = os.walk

    def walk(top, onerror=None, **kw):
        onerror(PermissionError(13, "Permission denied", str(src / "locked")))
        for root, dirs, files in real_walk(top, onerror=onerror, **kw):
            dirs[:] = [d for d in dirs if d != "locked"]
            yield root, dirs, files
    monkeypatch.setattr(media.os, "walk", walk)
    assert cli.cli_main(None, _args([src], tmp_path / "out", tiny)) == 1
    by = {Path(r["file"]).name: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())["records"]}
    assert by["masked.png"]["status"] == "ok"
    assert by["locked"]["status"] == "error" and "cannot be read" in by["locked"]["error"]


def _exif_orientation_long(value: int) -> bytes:
    """An EXIF block whose Orientation is stored as a LONG (type 4), as some writers do, instead of a SHORT."""
    import struct
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 4, 1, value) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def test_an_orientation_stored_as_long_is_reset_too(tmp_path, tiny):
    """The pixels are turned upright on reading; the tag must then say 1, whatever its type, or viewers turn the
    photo a second time."""
    from PIL import Image
    upright = np.ascontiguousarray(masked_astronaut()[:, :400])                 # 512 rows x 400 columns
    src = tmp_path / "long.jpg"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1))).save(src, "JPEG", quality=95,
                                                                        exif=_exif_orientation_long(6))
    assert Image.open(src).getexif()[0x0112] == 6
    assert cli.cli_main(None, _args([src], tmp_path / "out", tiny)) == 0
    out = Image.open(tmp_path / "out" / "long.jpg")
    assert out.size == (400, 512) and out.getexif()[0x0112] == 1
    rec = json.loads((tmp_path / "out" / "summary.json").read_text())["records"][0]
    assert rec["status"] == "ok"


def test_a_cmyk_jpeg_does_not_come_out_as_rgb_with_its_cmyk_profile(tmp_path, tiny):
    from PIL import Image, ImageCms
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    cmyk_profile = srgb[:16] + b"CMYK" + srgb[20:]          # what a viewer reads: the data colour space
    src = tmp_path / "cmyk.jpg"
    Image.fromarray(masked_astronaut()).convert("CMYK").save(src, "JPEG", quality=95, icc_profile=cmyk_profile)
    assert Image.open(src).mode == "CMYK"
    assert cli.cli_main(None, _args([src], tmp_path / "out", tiny)) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["records"][0]["status"] == "ok"
    out = Image.open(tmp_path / "out" / "cmyk.jpg")
    assert out.mode == "RGB" and out.info.get("icc_profile") is None
    # and an RGB photo's own profile still comes along (test above), a grey photo's grey one too
    from mask2face.edge_runtime import safeio
    grey = srgb[:16] + b"GRAY" + srgb[20:]
    buf = tmp_path / "grey.jpg"
    Image.fromarray(masked_astronaut()).convert("L").save(buf, "JPEG", icc_profile=grey)
    assert safeio.icc_colour_space(safeio.jpeg_metadata(buf.read_bytes())) == b"GRAY"


def test_a_photo_with_a_244_character_name_is_restored(tmp_path, tiny):
    name = "p" * 240 + ".jpg"
    src = tmp_path / "in"
    src.mkdir()
    save_image(src / name, masked_astronaut())
    assert cli.cli_main(None, _args([src], tmp_path / "out", tiny)) == 0
    assert (tmp_path / "out" / "in" / name).is_file()
    assert not [p for p in (tmp_path / "out" / "in").iterdir() if p.name != name]     # no temp file left


@pytest.mark.timeout(60)
def test_a_path_swapped_for_a_fifo_after_its_stat_does_not_block(tmp_path, monkeypatch):
    """read_bytes checks the path with stat(), then opens it: a FIFO put there in between would block open() (and
    read()) for ever. It is opened without blocking and checked again on the open descriptor."""
    import os
    from mask2face.edge_runtime import safeio
    from mask2face.edge_runtime.errors import ImageError
    regular = tmp_path / "real.jpg"
    regular.write_bytes(b"\xff\xd8\xff" + b"\x00" * 100)
    fifo = tmp_path / "swapped.jpg"
    os.mkfifo(fifo)
    real_stat = Path.stat
    monkeypatch.setattr(Path, "stat", lambda self, **kw: real_stat(regular if self == fifo else self, **kw))
    with pytest.raises(ImageError, match="not a regular file"):
        safeio.read_bytes(fifo)
