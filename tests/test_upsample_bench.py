"""benchmarks/upsample_bench.py: the choice rule on fixed numbers (fast) and a real tiny run as a subprocess (slow)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mask2face.benchmarks import upsample_bench as ub
from mask2face.compress.export import ExportError

MODES = ("depth_to_space", "bilinear", "nearest", "transpose")


def _results(lat8: dict, parts: dict) -> dict:
    out = {}
    for m in MODES:
        for p in ("fp32", "int8"):
            out[f"{m}_{p}"] = {"p50_ms_1thr": lat8[m] * (1.3 if p == "fp32" else 1.0), "bytes": 1000, "params": 10,
                               "xnnpack_partitions": parts.get(m, 1),
                               "undelegated_ops": ["RESIZE_NEAREST_NEIGHBOR"] if parts.get(m, 1) > 1 else [],
                               "unfolded_bn_ops": 0}
    return out


def test_choice_skips_multi_partition_and_transpose_even_when_faster():
    # nearest and transpose are the two fastest, but one splits the graph and the other has the BN-fold rule.
    res = _results({"depth_to_space": 1.2, "bilinear": 1.0, "nearest": 0.5, "transpose": 0.4}, {"nearest": 5})
    choice, why = ub.choose(res, MODES)
    assert choice == "bilinear"
    assert "nearest splits into 5 XNNPACK partitions" in why and "RESIZE_NEAREST_NEIGHBOR" in why
    assert "transpose conv: BN does not fold" in why


def test_choice_fails_with_a_message_when_nothing_is_eligible():
    res = _results({m: 1.0 for m in MODES}, {m: 2 for m in MODES})
    with pytest.raises(ExportError, match="no upsampling mode"):
        ub.choose(res, MODES)


@pytest.mark.slow  # ~25 s: TF import plus 8 TFLite conversions even at 32x32
def test_tiny_real_run_writes_all_modes(tmp_path):
    out = tmp_path / "choice.json"
    proc = subprocess.run([sys.executable, "-m", "mask2face.benchmarks.upsample_bench", "--size", "32",
                           "--filters", "4,8", "--runs", "3", "--out", str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert {"choice", "machine", "results", "versions", "what", "why", "command", "load"} <= set(doc)
    assert set(doc["results"]) == {f"{m}_{p}" for m in MODES for p in ("fp32", "int8")}
    assert doc["choice"] in MODES and doc["choice"] != "transpose"
    chosen = doc["results"][f"{doc['choice']}_int8"]
    assert chosen["xnnpack_partitions"] == 1
    # nearest resize is refused by XNNPACK in this LiteRT: the graph splits (5 partitions in upsample_choice.json).
    assert doc["results"]["nearest_int8"]["xnnpack_partitions"] > 1
    for r in doc["results"].values():
        assert r["bytes"] > 0 and r["params"] > 0 and r["p50_ms_1thr"] > 0
    # Same Keras model behind both precisions. (No int8 < fp32 bytes check: at 4,8 filters the per-tensor
    # quantisation parameters outweigh the weights.)
    for m in MODES:
        assert doc["results"][f"{m}_int8"]["params"] == doc["results"][f"{m}_fp32"]["params"]
    assert "--size 32" in doc["command"] and "--filters 4,8" in doc["command"]
    assert "choice" in proc.stdout and doc["choice"] in proc.stdout
