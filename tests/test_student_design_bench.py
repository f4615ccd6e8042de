"""student_design_bench: a real (tiny) run in a subprocess; the half-resolution design is the faster one."""
import json
import subprocess
import sys

import pytest

from mask2face.benchmarks.student_design_bench import parse_design


def test_design_spec_parses_and_refuses_garbage():
    d = parse_design("half:8,16:2:shuffle")
    assert d == {"name": "half", "filters": (8, 16), "stem_stride": 2, "upsample": "shuffle"}
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match="NAME:WIDTHS"):
        parse_design("half:8,16")


@pytest.mark.slow
def test_tiny_real_run_writes_rows(tmp_path):
    out = tmp_path / "rows.jsonl"
    proc = subprocess.run([sys.executable, "-m", "mask2face.benchmarks.student_design_bench", "--size", "64",
                           "--design", "full:8,16,16:1:depth_to_space", "--design", "half:8,16,16:2:depth_to_space",
                           "--design", "bad:8,16,16:2:nope", "--runs", "20", "--repeats", "1", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "bad" in proc.stderr and "Traceback" not in proc.stderr
    rows = {r["name"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert set(rows) == {"full", "half"}
    for r in rows.values():
        assert r["xnnpack_partitions"] == 1 and r["int8_bytes"] > 0 and r["machine"]["cores"]
    assert rows["half"]["mmac"] < rows["full"]["mmac"]
