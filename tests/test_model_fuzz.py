"""Hundreds of malformed .tflite files through the API and the CLI, each in a subprocess: none may kill the process
or print a traceback; each is refused with one line or runs as a model whose weights digest matches (or, from the
unsigned twin, one that says it is unverified).

Families (tests/model_mutations.py): every quantisation scale / zero-point edge, rewired operator inputs and
outputs, huge and negative shapes, random bit flips, truncations, wrong identifiers, metadata of the wrong types;
on a signed file, on its unsigned twin, and signed again after the damage (a hostile exporter).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import pytest

import model_mutations
from mask2face.edge_runtime import tflite_file

TESTS = Path(__file__).resolve().parent
DRIVER = TESTS / "model_load_driver.py"
ASSET = tflite_file.Path(tflite_file.__file__).resolve().parent / "assets" / "mask2face_default.tflite"
MIN_CASES = 300


def signed(data: bytes) -> bytes:
    """The shipped model with a weights digest (stamped here if the asset carries none)."""
    if tflite_file.digest_span(data, tflite_file.parse(data)):
        return data
    from mask2face.compress.tflite_metadata import stamp
    return stamp(data)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[tuple[str, Path]]:
    base = signed(ASSET.read_bytes())
    cases = model_mutations.corpus(base) + [(f"signed/{label}", blob)
                                            for label, blob in model_mutations.metadata_variants(base)]
    folder = tmp_path_factory.mktemp("bad_models")
    out = []
    for i, (label, blob) in enumerate(cases):
        path = folder / f"bad{i:04d}.tflite"
        path.write_bytes(blob)
        out.append((label, path))
    return out


def run_driver(paths: list[Path], *extra: str) -> tuple[dict[str, dict], list[str], str]:
    """Results by file; files that killed a driver (it is started again after each); all stderr."""
    results, deaths, stderr = {}, [], ""
    pending = [str(p) for p in paths]
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    while pending:
        proc = subprocess.run([sys.executable, str(DRIVER), *extra, *pending], capture_output=True, text=True,
                              timeout=600, env=env)
        stderr += proc.stderr
        last = None
        for line in proc.stdout.splitlines():
            row = json.loads(line)
            if "start" in row:
                last = row["start"]
            else:
                results[row["file"]] = row
        if proc.returncode == 0:
            break
        deaths.append(f"{last} (return code {proc.returncode})")
        pending = pending[pending.index(last) + 1:] if last in pending else []
    return results, deaths, stderr


def check_outcomes(corpus, results, deaths, stderr) -> Counter:
    assert not deaths, deaths
    assert "Traceback" not in stderr
    labels = {str(p): label for label, p in corpus}
    counts = Counter()
    for path, row in results.items():
        label = labels[path]
        assert row["outcome"] in ("rejected", "loaded"), (label, row)
        if row["outcome"] == "rejected":
            assert "\n" not in row["message"] and row["message"], (label, row)
            counts["rejected"] += 1
        else:
            # only the unsigned twin loads unverified; a damaged signed file is refused by its digest
            assert row["verified"] or label.startswith("unsigned/"), (label, row)
            counts["loaded verified" if row["verified"] else "loaded unverified"] += 1
    return counts


def test_every_malformed_model_is_refused_or_verified_through_the_api(corpus):
    assert len(corpus) >= MIN_CASES
    results, deaths, stderr = run_driver([p for _, p in corpus])
    assert len(results) == len(corpus)
    counts = check_outcomes(corpus, results, deaths, stderr)
    print(f"\n{len(corpus)} malformed models through Model.from_file: 0 deaths, 0 tracebacks, {dict(counts)}")
    by_family = Counter(label.split("/")[1].split("=")[0].split("-")[0] for label, p in corpus
                        if results[str(p)]["outcome"] == "rejected")
    # every family is represented among the refusals (a generator that made only one kind would pass vacuously)
    assert {"scale", "zp", "dim", "op", "bitflip", "truncated", "identifier", "meta"} <= set(by_family)
    for label, p in corpus:   # the edges the audit found: each one refused, even when signed again
        if label.split("/")[1].startswith(("scale=inf", "scale=nan", "zp=1000", "meta-output_channels=7")):
            assert results[str(p)]["outcome"] == "rejected", label


def sample(corpus, per_family: int = 1) -> list[tuple[str, Path]]:
    """The first case of each mutation family (signed, unsigned, re-signed)."""
    seen, out = Counter(), []
    for label, p in corpus:
        family = label.split("=")[0].split("@")[0].rstrip("0123456789-")
        if seen[family] < per_family:
            seen[family] += 1
            out.append((label, p))
    return out


def test_a_sample_through_inpainter_from_file(corpus):
    chosen = sample(corpus)[::3]
    results, deaths, stderr = run_driver([p for _, p in chosen], "--inpainter")
    check_outcomes(chosen, results, deaths, stderr)


def cli_remove(model: Path, photo: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mask2face.cli", "remove", str(photo), "--model", str(model),
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          cwd=out.parent)  # outside the clone: its mask2face/ folder would shadow the install


def check_cli(cases, photo: Path, out: Path) -> Counter:
    counts = Counter()
    for label, model in cases:
        proc = cli_remove(model, photo, out)
        assert proc.returncode >= 0, (label, proc.returncode, proc.stderr[-500:])
        assert "Traceback" not in proc.stderr, (label, proc.stderr[-2000:])
        if proc.returncode == 2:
            errors = [line for line in proc.stderr.splitlines() if line.startswith("mask2face")
                      and "warning" not in line]
            assert len(errors) == 1 and "error:" in errors[0], (label, proc.stderr)
            counts["rejected"] += 1
        else:
            assert proc.returncode in (0, 1), (label, proc.stderr)
            counts["ran"] += 1
    return counts


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    import skimage.data
    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def test_a_sample_through_the_cli(corpus, photo, tmp_path):
    chosen = [c for c in sample(corpus) if c[0].startswith(("signed/scale", "resigned/zp", "resigned/op-in",
                                                            "signed/truncated", "signed/meta-output_channels",
                                                            "unsigned/bitflip"))]
    assert len(chosen) >= 5
    check_cli(chosen, photo, tmp_path / "out")


@pytest.mark.slow
def test_every_malformed_model_through_the_cli(corpus, photo, tmp_path):
    counts = check_cli(corpus, photo, tmp_path / "out")
    print(f"\n{len(corpus)} malformed models through `mask2face remove`: 0 deaths, 0 tracebacks, {dict(counts)}")
