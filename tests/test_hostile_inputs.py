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


def remove(inputs, out: Path, model: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mask2face.cli", "remove", *map(os.fsdecode, inputs), "--out", str(out),
           "--model", str(model), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


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
