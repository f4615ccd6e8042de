"""edge_runtime.native_log: the native libraries' start-up lines are dropped from stderr, everything else is kept.
Subprocesses run in tmp_path: `python -c` in the clone's root would import its mask2face/ folder, not the package."""

import subprocess
import sys

import cv2
import pytest

from mask2face.edge_runtime import native_log


def test_only_the_known_lines_are_dropped():
    data = (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
            b"ERROR: a real problem\n"
            b"E0000 00:00:17 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n"
            b"mask2face: warning: something")
    assert native_log.kept_lines(data) == b"ERROR: a real problem\nmask2face: warning: something"


def test_a_block_writing_to_fd2_keeps_its_own_lines_in_order(tmp_path):
    code = ("import os, sys\n"
            "from mask2face.edge_runtime.native_log import filtered_stderr\n"
            "with filtered_stderr():\n"
            "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
            "    os.write(2, b'native error\\n')\n"
            "    print('python line', file=sys.stderr)\n"
            "    with filtered_stderr():\n"
            "        os.write(2, b'nested\\n')\n"
            "print('after', file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0
    assert r.stderr == "native error\npython line\nnested\nafter\n"


def test_an_exception_in_the_block_still_restores_stderr_and_keeps_the_traceback(tmp_path):
    code = ("import os\n"
            "from mask2face.edge_runtime.native_log import filtered_stderr\n"
            "with filtered_stderr():\n"
            "    os.write(2, b'before the error\\n')\n"
            "    raise SystemExit('stopped')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr == "before the error\nstopped\n"


@pytest.mark.slow
def test_mask2face_remove_prints_no_litert_start_up_line(tmp_path):
    from skimage import data

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    r = subprocess.run(["mask2face", "remove", str(photo), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "XNNPACK delegate" not in r.stderr and (tmp_path / "out").is_dir()


def test_new_interpreter_keeps_litert_s_start_up_line_off_stderr(tmp_path):
    from mask2face.edge_runtime.centerface import ASSET
    plain = ("from ai_edge_litert.interpreter import Interpreter\n"
             f"Interpreter(model_path={str(ASSET)!r}, num_threads=1).allocate_tensors()\n")
    helper = ("from mask2face.edge_runtime.model import new_interpreter\n"
              f"new_interpreter({str(ASSET)!r}, 1)\n")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
            for code in (plain, helper)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert "XNNPACK delegate" in runs[0].stderr      # the line this is about (else the check below means nothing)
    assert runs[1].stderr == ""
