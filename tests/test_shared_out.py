"""Runs that share an --out folder, as real `mask2face remove` processes: one after the other and at once, two
folders both named DCIM with the same file names; a run killed with SIGKILL and resumed; Ctrl-C mid-chunk. Nothing
is overwritten without --overwrite, every run's records stay in summary.json, a resumed run knows its faces."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from mask2face.edge_runtime.ledger import FINISHED, OutputLedger
from test_inpaint import masked_astronaut
from test_model import make_tiny_tflite

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_tflite(tmp_path_factory.mktemp("m"))


def dcim(folder: Path, n: int, masked: bool) -> Path:
    """`folder`/DCIM with IMG_0000.jpg.. : masked faces (restored: a new JPEG) or a face-free photo (copied)."""
    photo = masked_astronaut() if masked else skimage_data.coffee()
    bgr = cv2.cvtColor(cv2.resize(photo, (256, 256)), cv2.COLOR_RGB2BGR)
    (folder / "DCIM").mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / "DCIM" / f"IMG_{i:04d}.jpg"), bgr)
    return folder / "DCIM"


def command(src: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mask2face.cli", "remove", str(src), "--out", str(out), "--model", str(model),
            *extra]


# Started outside the source tree: `python -m` puts the working directory first on sys.path, and the clone's own
# mask2face/ folder (without the mapped edge_runtime/) would shadow the installed package.
RUN_IN = Path(__file__).parent


def remove(src, out, model, *extra) -> subprocess.CompletedProcess:
    return subprocess.run(command(src, out, model, *extra), capture_output=True, text=True, timeout=300, cwd=RUN_IN)


def summary_records(out: Path) -> list[dict]:
    return json.loads((out / "summary.json").read_text())["records"]


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (out / "DCIM").iterdir()}


def test_a_second_folder_of_the_same_name_overwrites_nothing_unless_asked(tmp_path, tiny):
    n = 6
    a, b = dcim(tmp_path / "a", n, masked=True), dcim(tmp_path / "b", n, masked=False)
    out = tmp_path / "out"
    assert remove(a, out, tiny).returncode == 0
    first = outputs(out)
    proc = remove(b, out, tiny)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert outputs(out) == first                                       # nothing overwritten
    assert "is the output of" in proc.stderr and "--overwrite" in proc.stderr
    records = summary_records(out)
    assert len(records) == 2 * n                                       # both runs' records kept
    assert sorted(r["status"] for r in records) == ["error"] * n + ["ok"] * n
    assert {r["reason"] for r in records if r["status"] == "error"} == {"output-exists"}
    # the same command again is a redo, not a collision; --skip-existing keeps the outputs and their faces
    assert remove(a, out, tiny).returncode == 0
    proc = remove(a, out, tiny, "--skip-existing")
    assert proc.returncode == 0
    mine = [r for r in summary_records(out) if r["file"].startswith(str(a))]
    assert all(r["from_earlier_run"] and len(r["faces"]) == 1 for r in mine)
    # asked: b's photos replace a's outputs, and a's records no longer claim them
    assert remove(b, out, tiny, "--overwrite").returncode == 0
    assert all(data == (b / name).read_bytes() for name, data in outputs(out).items())
    records = summary_records(out)
    assert len(records) == n and all(r["file"].startswith(str(b)) and r["status"] == "no-face" for r in records)


def test_an_existing_file_no_record_explains_is_left_alone(tmp_path, tiny):
    a = dcim(tmp_path / "a", 2, masked=True)
    (tmp_path / "out" / "DCIM").mkdir(parents=True)
    (tmp_path / "out" / "DCIM" / "IMG_0000.jpg").write_bytes(b"the user's own file")
    proc = remove(a, tmp_path / "out", tiny)
    assert proc.returncode == 1 and "no record says it was made from" in proc.stderr
    assert (tmp_path / "out" / "DCIM" / "IMG_0000.jpg").read_bytes() == b"the user's own file"
    assert remove(a, tmp_path / "out", tiny, "--overwrite").returncode == 0


def test_two_runs_at_once_into_one_out(tmp_path, tiny):
    """Started together: each output is claimed by exactly one of them and holds that input's result; the other
    run lists it as an error; summary.json ends with both runs' records (merged under a lock)."""
    n = 12
    a, b = dcim(tmp_path / "a", n, masked=True), dcim(tmp_path / "b", n, masked=False)
    out = tmp_path / "out"
    procs = [subprocess.Popen(command(src, out, tiny, "--chunk", "1"), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=RUN_IN) for src in (a, b)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert rc in (0, 1) and "Traceback" not in err, err[-2000:]
    ledger = OutputLedger(out)
    for name, data in outputs(out).items():
        owner = ledger.read(out / "DCIM" / name)["file"]
        from_b = data == (b / name).read_bytes()
        assert owner == str((b if from_b else a) / name)              # the output is its claimant's result
    records = summary_records(out)
    assert len(records) == 2 * n
    assert sum(r["status"] == "error" for r in records) == n and len(outputs(out)) == n


def test_a_run_killed_with_sigkill_resumes_with_its_faces(tmp_path, tiny):
    n = 120
    a = dcim(tmp_path / "a", n, masked=True)
    out = tmp_path / "out"
    proc = subprocess.Popen(command(a, out, tiny, "--chunk", "1"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=RUN_IN)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list((out / "DCIM").glob("*.jpg"))
                                                                   if (out / "DCIM").is_dir() else []) < 5:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not (out / "summary.json").exists()
    done_bytes = outputs(out)
    done = set(done_bytes)
    assert 5 <= len(done) < n
    ledger = OutputLedger(out)
    recorded = {name for name in done if (ledger.read(out / "DCIM" / name) or {}).get("status") in FINISHED}
    r = remove(a, out, tiny, "--skip-existing")
    assert r.returncode == 0, r.stderr[-2000:]
    records = {Path(rec["file"]).name: rec for rec in summary_records(out)}
    assert len(records) == n
    # An output whose record was written before the kill is listed from it; the kill may land between the one
    # output in flight (chunk 1) taking its name and its record: that photo is made again, with the same result.
    assert len(done - recorded) <= 1, done - recorded
    for name in done:
        assert bool(records[name].get("from_earlier_run")) == (name in recorded), records[name]
        assert len(records[name]["faces"]) == 1 and (out / "DCIM" / name).read_bytes() == done_bytes[name]


def test_ctrl_c_mid_chunk_leaves_exactly_the_outputs_it_reports(tmp_path, tiny):
    n = 200
    a = dcim(tmp_path / "a", n, masked=True)
    out = tmp_path / "out"
    proc = subprocess.Popen(command(a, out, tiny, "--chunk", "8"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=RUN_IN, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list((out / "DCIM").glob("*.jpg"))
                                                                   if (out / "DCIM").is_dir() else []) < 11:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    said = int(re.search(r"(\d+) of \d+ file\(s\) done", err).group(1))
    assert said == len(outputs(out)) == len(summary_records(out))
