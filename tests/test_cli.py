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
    for verb in ("data", "train", "eval", "distill", "qat", "export", "remove", "bench", "pipeline", "demo"):
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


def test_remove_picks_a_shipped_model_by_name(tmp_path):
    """`--model NAME` loads the shipped file of that name: `mixed` leaves a bare face alone (the output is the input,
    bit for bit), `default` restores the same face wearing a drawn mask (benchmarks/results/gate.jsonl: the
    trade-off between the two)."""
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
        summary = json.loads((out / "summary.json").read_text())
        assert summary["model"]["source"].endswith(f"mask2face_{name}.tflite")
        assert summary["faces"] == 1 and summary["faces_pasted"] == pasted, summary["records"]
    same = cv2.imread(str(tmp_path / "mixed" / "astronaut.png"))
    assert np.array_equal(same, cv2.imread(str(tmp_path / "astronaut.png")))
    restored = cv2.imread(str(tmp_path / "default" / "astronaut-masked.png"))
    assert not np.array_equal(restored, cv2.imread(str(tmp_path / "astronaut-masked.png")))
    r = run(["remove", str(tmp_path / "astronaut.png"), "--model", "nonesuch", "--out", str(tmp_path / "x")],
            cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "nonesuch" in r.stderr, r.stderr[-2000:]
