"""The console script, as a user runs it: real subprocesses."""

import subprocess
import sys
import time


def run(args, cwd, timeout=60):
    return subprocess.run(["mask2face", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


def test_help_is_fast_and_lists_every_verb(tmp_path):
    start = time.perf_counter()
    r = run(["--help"], tmp_path)
    elapsed = time.perf_counter() - start
    assert r.returncode == 0
    for verb in ("data", "train", "classifier", "eval", "distill", "qat", "export", "remove", "bench", "pipeline",
                 "demo"):
        assert verb in r.stdout
    assert elapsed < 3.0  # generous for a loaded CI machine; typically ~0.1 s


def test_help_does_not_import_tensorflow(tmp_path):
    code = ("import sys\nfrom mask2face import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('tensorflow', 'tf_keras', 'dlib', 'cv2') if m in sys.modules]\n"
            "print('HEAVY', heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_unknown_override_is_one_clear_line(tmp_path):
    r = run(["data", "--faces", str(tmp_path), "--preset", "smoke", "trian.epochs=2"], tmp_path)
    assert r.returncode == 2
    assert "did you mean 'train.epochs'" in r.stderr
    assert "Traceback" not in r.stderr


def test_overrides_may_follow_options_and_unknown_flags_are_refused(tmp_path):
    # an override after --faces is still an override (here a misspelt one, so it must be reported as such)
    r = run(["data", "--preset", "smoke", "data.seed=1", "--faces", str(tmp_path), "trian.epochs=2"], tmp_path)
    assert r.returncode == 2 and "did you mean 'train.epochs'" in r.stderr, r.stderr
    r = run(["data", "--preset", "smoke", "--bogus-flag"], tmp_path)
    assert r.returncode == 2 and "unrecognized arguments: --bogus-flag" in r.stderr
    assert "Traceback" not in r.stderr


def test_remove_picks_the_shipped_model_by_name(tmp_path):
    """`--model default` (and `mixed`, its alias, with a one-line note) loads the shipped file: its mask decision
    leaves a bare face alone (the output is the input, bit for bit) and restores the same face wearing a drawn
    mask (benchmarks/results/gate.jsonl)."""
    import json

    import cv2
    import numpy as np
    from test_inpaint import astronaut_with_drawn_mask
    bare, masked, _ = astronaut_with_drawn_mask()
    cv2.imwrite(str(tmp_path / "astronaut.png"), cv2.cvtColor(bare, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "astronaut-masked.png"), cv2.cvtColor(masked, cv2.COLOR_RGB2BGR))
    for name, photo, pasted in (("mixed", "astronaut.png", 0), ("default", "astronaut-masked.png", 1)):
        out = tmp_path / name
        r = run(["remove", str(tmp_path / photo), "--model", name, "--out", str(out), "--threads", "1"],
                cwd=tmp_path, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert ("'mixed' is now the default model" in r.stderr) == (name == "mixed"), r.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["model"]["source"].endswith("mask2face_default.tflite")
        assert summary["faces"] == 1 and summary["faces_pasted"] == pasted, summary["records"]
    same = cv2.imread(str(tmp_path / "mixed" / "astronaut.png"))
    assert np.array_equal(same, cv2.imread(str(tmp_path / "astronaut.png")))
    restored = cv2.imread(str(tmp_path / "default" / "astronaut-masked.png"))
    assert not np.array_equal(restored, cv2.imread(str(tmp_path / "astronaut-masked.png")))
    r = run(["remove", str(tmp_path / "astronaut.png"), "--model", "nonesuch", "--out", str(tmp_path / "x")],
            cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "nonesuch" in r.stderr, r.stderr[-2000:]


def masked_photo_folder(folder, n: int):
    """`folder` with n copies of the astronaut wearing a drawn mask, 256x256 JPEG (a face the runtime restores)."""
    import cv2
    from test_inpaint import astronaut_with_drawn_mask
    _, masked, _ = astronaut_with_drawn_mask()
    photo = cv2.cvtColor(cv2.resize(masked, (256, 256)), cv2.COLOR_RGB2BGR)
    folder.mkdir(parents=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"p{i:03d}.jpg"), photo)
    return folder


def signal_mid_batch(tmp_path, n: int, signum, after: int):
    """A real `mask2face remove --chunk 1` over `n` masked photos, sent `signum` once `after` outputs exist.
    Returns (finished process, its stderr, the command, the --out folder)."""
    import signal
    import time
    photos = masked_photo_folder(tmp_path / "photos", n)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mask2face.cli", "remove", str(photos), "--out", str(out), "--chunk", "1"]
    # A shell that starts a job in the background (`cmd &`, as CI may) passes SIGINT on as ignored, and Python then
    # installs no KeyboardInterrupt handler: give the child the default disposition, as a terminal would.
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    written = out / "photos"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if written.is_dir() and len(list(written.glob("p*.jpg"))) >= after:
            break
        time.sleep(0.02)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    return proc, stderr, cmd, out


def test_ctrl_c_mid_batch_keeps_finished_files_and_skip_existing_does_the_rest(tmp_path):
    """SIGINT to a real `mask2face remove` over a folder: exit 130 with one line that says how far it got and what
    to run, no traceback, only complete outputs (no temp files), a summary marked interrupted. The same command
    with --skip-existing then does only the rest: earlier outputs keep their bytes and the summary covers all."""
    import json
    import signal

    import cv2
    import numpy as np
    n = 300     # ~9 s of work at ~35 photos/s: the signal lands mid-batch even on a loaded machine
    proc, stderr, cmd, out = signal_mid_batch(tmp_path, n, signal.SIGINT, after=5)
    written = out / "photos"
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert "interrupted;" in last and f"of {n} file(s) done" in last and "--skip-existing" in last, last
    first = {p.name: p.read_bytes() for p in written.iterdir()}
    assert 5 <= len(first) < n and all(name.startswith("p") for name in first)   # no temp files left
    assert all(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) is not None for b in first.values())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["files_total"] == n and summary["files"] == len(first)

    r = subprocess.run(cmd + ["--skip-existing"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(list(written.iterdir())) == n
    assert all((written / name).read_bytes() == data for name, data in first.items())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == n and "interrupted" not in summary
    assert summary["status"] == {"ok": n}, summary["status"]
    assert sum(bool(rec.get("from_earlier_run")) for rec in summary["records"]) == len(first)


def test_full_disk_stops_the_batch_with_one_line_and_keeps_complete_files(tmp_path):
    """`mask2face remove` writing to a real 1 MB tmpfs: the batch stops at the first file that does not fit (not
    one error per remaining file), exit 2, one line saying what happened and what to run, no traceback; every file
    left is a complete image and no temp file remains."""
    import shutil

    import cv2
    import numpy as np
    import pytest
    small = tmp_path / "small"
    small.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): no real full disk to write to")
    try:
        n = 80
        photos = masked_photo_folder(tmp_path / "photos", n)
        out = small / "out"
        r = subprocess.run([sys.executable, "-m", "mask2face.cli", "remove", str(photos), "--out", str(out),
                            "--chunk", "4"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert "disk full while writing" in last and f"of {n} file(s) done" in last and "--skip-existing" in last, last
        assert r.stderr.count("disk full") == 1, r.stderr[-2000:]       # stopped, not one error per file
        left = sorted((out / "photos").iterdir())
        assert 0 < len(left) < n and all(p.name.startswith("p") for p in left), [p.name for p in left]
        assert all(cv2.imdecode(np.frombuffer(p.read_bytes(), np.uint8), cv2.IMREAD_COLOR) is not None for p in left)
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_an_output_path_that_cannot_be_written_is_one_line(tmp_path):
    """--out under a regular file (NotADirectoryError): exit 2 and one line naming the path, for a TF-side verb and
    for the edge runtime alike."""
    (tmp_path / "a-file").write_text("not a folder")
    target = tmp_path / "a-file" / "out"
    for args in (["demo", "--out", str(target)], ["remove", str(tmp_path / "a-file"), "--out", str(target)]):
        r = run(args, tmp_path, timeout=120)
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Traceback" not in r.stderr and "a-file" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]


def test_training_verbs_on_an_edge_only_install_name_the_extra_and_write_nothing(tmp_path):
    """An [edge] install has no TensorFlow or dlib: the verbs that need them say which extra to install, in one
    line, before they create a run directory (simulated by hiding the packages from importlib in a subprocess)."""
    code = ("import importlib.util, sys\n"
            "real = importlib.util.find_spec\n"
            "hidden = {'tensorflow', 'tf_keras', 'tensorflow_model_optimization', 'dlib', 'skimage'}\n"
            "importlib.util.find_spec = lambda name, *a: None if name in hidden else real(name, *a)\n"
            "from mask2face import cli\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    for verb in ("data", "train", "eval", "distill", "qat", "export", "pipeline", "demo"):
        r = subprocess.run([sys.executable, "-c", code, verb, "--preset", "smoke", "--run", str(tmp_path / "run"),
                            *(["--faces", str(tmp_path)] if verb in ("data", "pipeline") else [])],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
        assert r.returncode == 2, (verb, r.stderr)
        assert 'pip install "mask2face[train]"' in r.stderr and "Traceback" not in r.stderr, (verb, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (verb, r.stderr)
        assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists(), verb


def test_sigterm_mid_batch_ends_like_ctrl_c(tmp_path):
    """`timeout` and `docker stop` send SIGTERM: the same one line and exit 130 as Ctrl-C, complete outputs only."""
    import signal
    proc, stderr, _, out = signal_mid_batch(tmp_path, 40, signal.SIGTERM, after=3)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted;" in stderr.strip().splitlines()[-1]
    assert all(p.name.startswith("p") for p in (out / "photos").iterdir())   # no hidden temp files left


def test_remove_refuses_out_of_range_numbers_before_loading_anything(tmp_path):
    for flag, value, words in (("--chunk", "0", "between 1 and 256"), ("--threads", "100000", "between 1 and 256"),
                               ("--threads", "abc", "not a whole number"),
                               ("--min-change", "nan", "between 0.0 and 1.0")):
        r = run(["remove", "x.jpg", "--out", str(tmp_path / "o"), flag, value], tmp_path)
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, (flag, value, r.stderr)
        assert not (tmp_path / "o").exists()
