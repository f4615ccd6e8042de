"""`mask2face remove` on folders a careless or hostile user hands it, as real subprocesses: a bad entry is named in
the summary and the rest of the batch is done; nothing crashes, prints a traceback or hangs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mask2face.edge_runtime.safeio import save_image
from test_inpaint import masked_astronaut
from test_model import make_tiny_tflite


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_tflite(tmp_path_factory.mktemp("m"))


# Runs the command and reports its peak RSS on a last stderr line: the child's own, not the test process's.
MEASURE = ("import resource, subprocess, sys\n"
           "r = subprocess.run(sys.argv[1:])\n"
           "print('peak-rss-kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
           "sys.exit(r.returncode)\n")


def remove(inputs, out: Path, model: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`mask2face remove` in a subprocess; the result also has .seconds and .rss_mb (its peak resident memory)."""
    import time
    cmd = [sys.executable, "-c", MEASURE, sys.executable, "-m", "mask2face.cli", "remove",
           *map(os.fsdecode, inputs), "--out", str(out), "--model", str(model), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="backslashreplace",
                          cwd=out.parent)  # outside the clone: its mask2face/ folder would shadow the install
    proc.seconds = time.perf_counter() - t0
    head, _, last = proc.stderr.rstrip("\n").rpartition("\n")
    proc.rss_mb = int(last.split()[-1]) / 1024 if last.startswith("peak-rss-kb") else float("nan")
    proc.stderr = head
    return proc


def records(out: Path) -> dict[str, dict]:
    """Summary records by file name (names that are not UTF-8 come back as the same surrogate-escaped str)."""
    summary = json.loads((out / "summary.json").read_text())
    return {os.path.basename(r["file"]): r for r in summary["records"]}


def masked_clip(path: Path, frames: int = 3) -> None:
    frame = cv2.cvtColor(cv2.resize(masked_astronaut(), (128, 128)), cv2.COLOR_RGB2BGR)
    tmp = str(path.parent / "clip-tmp.avi")
    w = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 128))
    for _ in range(frames):
        w.write(frame)
    w.release()
    os.replace(tmp, path)


def test_link_loops_and_names_that_are_not_utf8_do_not_stop_the_batch(tmp_path, tiny):
    """A symlink loop made Path.resolve raise (nothing processed, a traceback); a video named `clip_\\xe9.avi`
    crashed the process inside cv2.VideoCapture. Now each loop is one error record and every other file is done."""
    src = tmp_path / "in"
    src.mkdir()
    save_image(src / "a.jpg", masked_astronaut())
    latin1 = os.fsdecode(b"photo_\xe9.jpg")             # str with a surrogate, as os.walk gives it
    (src / latin1).write_bytes((src / "a.jpg").read_bytes())
    masked_clip(src / os.fsdecode(b"clip_\xe9.avi"))
    (src / "loop.jpg").symlink_to("loop.jpg")
    (src / "dirloop").symlink_to("dirloop")
    (src / "dangling.jpg").symlink_to("nowhere.jpg")
    proc = remove([src], tmp_path / "out", tiny)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    by = records(tmp_path / "out")
    assert by["a.jpg"]["status"] == by[latin1]["status"] == "ok"
    assert by[os.fsdecode(b"clip_\xe9.avi")]["status"] == "ok" and by[os.fsdecode(b"clip_\xe9.avi")]["frames"] == 3
    for name in ("loop.jpg", "dirloop"):
        assert by[name]["status"] == "error" and "symbolic link loop" in by[name]["error"]
    assert by["dangling.jpg"]["status"] == "error" and "broken symbolic link" in by["dangling.jpg"]["error"]
    written = set(os.listdir(os.fsencode(tmp_path / "out" / "in")))
    assert written == {b"a.jpg", b"photo_\xe9.jpg", b"clip_\xe9.avi"}
    for name in ("loop.jpg", "dirloop", "dangling.jpg"):
        assert name in proc.stderr                                  # named on screen too


def test_a_link_loop_given_as_an_input_is_named(tmp_path, tiny):
    save_image(tmp_path / "a.jpg", masked_astronaut())
    (tmp_path / "loop.jpg").symlink_to("loop.jpg")
    proc = remove([tmp_path / "loop.jpg", tmp_path / "a.jpg"], tmp_path / "out", tiny)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    by = records(tmp_path / "out")
    assert "symbolic link loop" in by["loop.jpg"]["error"] and by["a.jpg"]["status"] == "ok"


def scan_bomb(path: Path, side: int = 1000, repeats: int = 11_000) -> None:
    """A progressive JPEG whose last scan is repeated `repeats` times: a few hundred KB that libjpeg decodes
    `repeats` times over (minutes for 6000x3000)."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((side, side, 3), 120, np.uint8)).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    last, end = data.rfind(b"\xff\xda"), data.rfind(b"\xff\xd9")
    path.write_bytes(data[:end] + data[last:end] * repeats + data[end:])


def test_scan_bombs_giants_and_huge_files_are_bounded(tmp_path, tiny):
    """Each is refused before decoding, or decoded within the pixel limit, in bounded time and memory: a scan bomb
    (11,000 scans), a 2000x20000 JPEG (40 MP, the limit), a 1 GiB file posing as a JPEG (sparse: no disk used)."""
    src = tmp_path / "in"
    src.mkdir()
    scan_bomb(src / "bomb.jpg")
    tall = cv2.resize(cv2.cvtColor(masked_astronaut(), cv2.COLOR_RGB2BGR), (2000, 20000))
    cv2.imwrite(str(src / "tall.jpg"), tall, [cv2.IMWRITE_JPEG_QUALITY, 70])
    with open(src / "giant.jpg", "wb") as fh:
        fh.write(b"\xff\xd8\xff\xe0")
        fh.truncate(1 << 30)
    save_image(src / "a.jpg", masked_astronaut())
    proc = remove([src], tmp_path / "out", tiny, "--chunk", "1")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    by = records(tmp_path / "out")
    assert "more than the 100" in by["bomb.jpg"]["error"] and by["bomb.jpg"]["reason"] == "too-large"
    assert by["giant.jpg"]["reason"] == "too-large" and "--max-file-mb" in by["giant.jpg"]["error"]
    assert by["tall.jpg"]["status"] in ("ok", "no-face", "no-mask") and by["a.jpg"]["status"] == "ok"
    print(f"\n4 hostile photos: {proc.seconds:.1f} s, peak RSS {proc.rss_mb:.0f} MB")
    assert proc.seconds < 60 and proc.rss_mb < 1500, (proc.seconds, proc.rss_mb)


def test_max_file_mb_sets_the_size_limit(tmp_path, tiny):
    src = tmp_path / "a.png"
    save_image(src, np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8))   # ~3 MB
    proc = remove([src], tmp_path / "out", tiny, "--max-file-mb", "1")
    assert proc.returncode == 1 and "larger than the 1 MiB" in records(tmp_path / "out")["a.png"]["error"]
    assert remove([src], tmp_path / "out2", tiny, "--max-file-mb", "4").returncode == 0


# Bounds stated in docs/EDGE.md (Command line): per photo, at most 256 MiB read and one decode of at most 40 MP;
# these photos are small, so a whole folder of them must finish well within these.
FOLDER_SECONDS, FILE_SECONDS, RSS_MB = 180, 10, 1500


def check_every_entry_named(proc, out: Path, expected: set[str]) -> dict[str, dict]:
    assert proc.returncode == 1, proc.stderr[-3000:]                 # some files failed; the batch finished
    assert "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    by = {os.path.basename(r["file"]): r for r in summary["records"]}
    assert set(by) == expected                                       # every entry has its record
    errors = {os.path.basename(e["file"]) for e in summary["errors"]}
    assert errors == {name for name, r in by.items() if r["status"] == "error"}
    for name in errors:
        assert by[name]["error"] and "\n" not in by[name]["error"]
    slowest = max((r.get("timings", {}).get("total", 0) for r in by.values()), default=0)
    assert slowest < FILE_SECONDS, slowest
    assert not [p for p in out.rglob(".*") if ".mask2face" not in p.parts]   # no temp files left
    return by


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import hostile_corpus
    folder = tmp_path_factory.mktemp("hostile") / "in"
    families = hostile_corpus.make(folder)
    return folder, families


def test_hundreds_of_hostile_inputs_as_one_folder(corpus, tiny, tmp_path):
    import hostile_corpus
    folder, families = corpus
    names = hostile_corpus.entries(families)
    assert len(names) >= 500
    proc = remove([folder], tmp_path / "out", tiny, timeout=FOLDER_SECONDS * 2)
    by = check_every_entry_named(proc, tmp_path / "out", set(names))
    status = {}
    for r in by.values():
        status[r["status"]] = status.get(r["status"], 0) + 1
    print(f"\n{len(names)} hostile inputs as one folder: {proc.seconds:.1f} s, peak RSS {proc.rss_mb:.0f} MB, "
          f"0 crashes, 0 tracebacks; {status}")
    assert proc.seconds < FOLDER_SECONDS and proc.rss_mb < RSS_MB, (proc.seconds, proc.rss_mb)
    for name in ("photo_\udce9.jpg", "clip_\udce9.avi", "p" * 240 + ".jpg", "exif-long.jpg", "cmyk.jpg"):
        assert by[name]["status"] == "ok", by[name]
    for name in families["scan bombs"][1:] + ["giant-1GiB.jpg", "loop.jpg", "dirloop", "pipe.jpg", "zero.jpg"]:
        assert by[name]["status"] == "error", by[name]


def one_by_one(folder: Path, names: list[str], tiny: Path, out: Path) -> None:
    for name in names:
        proc = remove([os.path.join(os.fsencode(folder), os.fsencode(name))], out, tiny, timeout=FILE_SECONDS * 6)
        assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, (name, proc.stderr[-2000:])
        assert proc.rss_mb < RSS_MB, (name, proc.rss_mb)
        summary = json.loads((out / "summary.json").read_text())
        assert any(os.path.basename(r["file"]) == name for r in summary["records"]), name
        assert (proc.returncode == 1) == any(os.path.basename(e["file"]) == name for e in summary["errors"])


def test_a_sample_of_hostile_inputs_one_by_one(corpus, tiny, tmp_path):
    folder, families = corpus
    sample = [names[0] for names in list(families.values())[::2]] + families["names"][:2] + families["links"][:1]
    one_by_one(folder, sample, tiny, tmp_path / "out")


@pytest.mark.slow
def test_every_hostile_input_one_by_one(corpus, tiny, tmp_path):
    import hostile_corpus
    folder, families = corpus
    one_by_one(folder, hostile_corpus.entries(families), tiny, tmp_path / "out")
