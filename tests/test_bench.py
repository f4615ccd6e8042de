"""bench: rows with latency + quality + environment; report table/CSV/PNG; no TensorFlow imported."""
import json
import subprocess
import sys

import numpy as np
import pytest


def test_benchmarks_do_not_import_tensorflow(tmp_path):
    code = ("import sys; import mask2face.benchmarks.bench, mask2face.benchmarks.report; "
            "print(any(m.startswith(('tensorflow', 'tf_keras')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.stdout.strip() == "False", out.stderr


def test_report_pareto_and_table(tmp_path):
    from mask2face.benchmarks import report
    rows = []
    for model, prec, ms, q, b in [("teacher", "fp32", 50.0, 30.0, 6_000_000), ("student", "fp32", 1.2, 29.5, 200_000),
                                  ("student", "qat-int8", 1.0, 29.4, 100_000), ("student", "int8", 1.5, 28.0, 98_000)]:
        rows.append({"kind": "model", "file": f"{model}-{prec}.tflite", "model": model, "precision": prec, "bytes": b,
                     "latency": {"1": {"p50_ms": ms, "p90_ms": ms * 1.1}}, "quality": {"psnr_masked": q, "ssim": 0.9},
                     "machine": {"cpu": "x", "cores": 2}, "versions": {}})
    assert report.pareto_front([(np.log10(r["latency"]["1"]["p50_ms"]), r["quality"]["psnr_masked"])
                                for r in rows]) == [0, 1, 2]
    out = report.render(rows, tmp_path)
    md = out["md"].read_text()
    assert "| student | qat-int8 | 97.7 |" in md and "50.0" in md
    assert out["csv"].read_text().splitlines()[0].startswith("model,precision")
    import cv2
    img = cv2.imread(str(out["png"]))
    assert img is not None and img.shape == (600, 900, 3)


@pytest.mark.slow
def test_bench_cli_rows(tmp_path):
    from test_distill import cli, smoke_run
    run = smoke_run()
    cli("bench", "--preset", "smoke", "--run", str(run), "--out", str(tmp_path))
    rows = [json.loads(l) for l in (tmp_path / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 9
    for r in rows:
        assert r["latency"]["1"]["p50_ms"] > 0 and r["quality"]["samples"] == 8
        assert np.isfinite(r["quality"]["psnr_masked"]) and r["machine"]["cores"] and r["versions"]
        assert r["metadata"]["name"] == r["model"]
    assert (tmp_path / "pareto.png").exists() and (tmp_path / "table.md").exists()
    # composited SSIM (what the runtime pastes) against scikit-image on the model's own outputs
    from skimage.metrics import structural_similarity

    from mask2face.benchmarks import bench
    from mask2face.train import metrics, pairs
    row = next(r for r in rows if r["file"] == "student-fp32.tflite")
    test = pairs.load_split(run / "data", "test", limit=8)
    pred = bench.predict((run / "export" / "student-fp32.tflite").read_bytes(), test["masked"])
    ref = np.mean([structural_similarity(np.clip(metrics.composite(x / 255.0, p), 0, 1), c / 255.0,
                                         gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=1, channel_axis=-1)
                   for p, x, c in zip(pred, test["masked"], test["clean"])])
    assert abs(row["quality"]["ssim_composited"] - ref) < 1e-3
    # blended (the runtime's feathered paste), the same way
    ref = np.mean([structural_similarity(np.clip(metrics.blended(x / 255.0, p), 0, 1), c / 255.0,
                                         gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                         data_range=1, channel_axis=-1)
                   for p, x, c in zip(pred, test["masked"], test["clean"])])
    assert abs(row["quality"]["ssim_blended"] - ref) < 1e-3
    assert "SSIM blended" in (tmp_path / "table.md").read_text()


def test_runtime_bench_row_in_chunks(tmp_path, capsys, monkeypatch):
    """runtime_bench on real LFW photos in chunks: every photo timed, every face blended, invoke times split out."""
    from conftest import shared_data
    from mask2face.benchmarks import runtime_bench
    from test_model import make_tiny_tflite
    monkeypatch.setattr(runtime_bench, "DATA", shared_data("lfw").parent)
    model = make_tiny_tflite(tmp_path)
    assert runtime_bench.main(["--model", str(model), "--photos", "5", "--chunk", "2", "--accept-all",
                               "--no-save", "--scratch", str(tmp_path / "scratch")]) == 0
    out = capsys.readouterr().out
    row = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert row["chunk"] == 2 and row["faces_found"] >= 5 and row["faces_pasted"] == row["faces_found"]
    assert 0 < row["bare_invoke_ms_p50"] <= row["bare_invoke_ms_mean"] * 1.5
    assert row["model_ms_mean_in_pipeline"] > 0 and row["photos_per_s"] > 0
    assert row["model_overhead_mean"] == pytest.approx(row["model_ms_mean_in_pipeline"] / row["bare_invoke_ms_mean"] - 1)
    # the two other references: warm invokes between chunks (3 chunks x 4), and bare invokes right after detection
    assert row["warm_invoke_ms_p50_interleaved"] > 0 and len(row["invokes_after_detection_ms_p50"]) == 6
    assert row["after_detection_invoke_ms_p50"] == pytest.approx(row["invokes_after_detection_ms_p50"][0], abs=1e-4)
    assert row["model_overhead_vs_after_detection"] == pytest.approx(
        row["model_ms_p50_in_pipeline"] / row["after_detection_invoke_ms_p50"] - 1)


def test_a_damaged_model_is_skipped_by_name_and_the_others_are_benchmarked(tmp_path, capsys):
    from mask2face.benchmarks.bench import bench_models
    from mask2face.edge_runtime.errors import ModelFileError
    from test_model import make_tiny_tflite

    good = make_tiny_tflite(tmp_path)
    truncated = tmp_path / "student-int8.tflite"
    truncated.write_bytes(good.read_bytes()[:400])
    rows = bench_models([truncated, good], None, threads=(1,), warmup=1, runs=3)
    assert [r["file"] for r in rows] == [good.name] and rows[0]["latency"]["1"]["runs"] == 3
    assert f"bench: skipped {truncated}: {truncated} is not a valid .tflite file" in capsys.readouterr().err
    with pytest.raises(ModelFileError, match="no model could be benchmarked: .*student-int8.tflite"):
        bench_models([truncated], None, threads=(1,), warmup=1, runs=3)


def test_two_files_of_one_name_keep_two_rows_told_apart_by_folder():
    """A fine-tuned student benched beside the shipped one: both are student-qat-int8.tflite."""
    from mask2face.benchmarks import report
    rows = [{"kind": "model", "file": "student-qat-int8.tflite", "path": f"{folder}/student-qat-int8.tflite",
             "model": "student", "precision": "qat-int8", "bytes": 1000, "quality": {"psnr_masked": q}}
            for folder, q in (("runs/mine/export", 19.1), ("models/cpu/export", 19.2))]
    table = report.table_rows(rows + [dict(rows[0], quality={"psnr_masked": 19.3})])   # a re-run replaces its row
    assert [(t["model"], t["PSNR masked (dB)"]) for t in table] == [
        ("student (runs/mine/export)", 19.3), ("student (models/cpu/export)", 19.2)]


def test_first_invoke_bench_times_each_kind_of_prior_work(capsys):
    """The plain-LiteRT first-invoke bench: one p50 per invoke position after each kind of work, and first_vs_warm
    is the first over the mean of the 4th onwards."""
    from mask2face.benchmarks import first_invoke
    assert first_invoke.main(["--sequences", "4", "--length", "5", "--no-save"]) == 0
    out = capsys.readouterr().out
    row = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert set(row["after"]) == {"nothing", "centerface_invoke", "busy_25ms", "write_8mb", "sleep_25ms"}
    for kind in row["after"].values():
        ms = kind["invoke_ms_p50"]
        assert len(ms) == 5 and min(ms) > 0
        assert kind["first_vs_warm"] == pytest.approx(ms[0] / np.mean(ms[3:]) - 1, abs=2e-3)


def test_bench_on_a_copied_export_folder_without_a_run_gives_latency_rows(tmp_path):
    """docs/EDGE.md's board command: `mask2face bench --models export/` in a folder with no runs/ and no pairs."""
    import shutil
    import subprocess

    from test_model import make_tiny_tflite
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(make_tiny_tflite(tmp_path), export / "student-qat-int8.tflite")
    r = subprocess.run(["mask2face", "bench", "bench.runs=3", "bench.warmup=1", "--models", "export/"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no test pairs" in r.stderr and "Traceback" not in r.stderr
    rows = [json.loads(l) for l in (tmp_path / "runs" / "cpu" / "bench" / "rows.jsonl").read_text().splitlines()]
    assert [row["file"] for row in rows] == ["student-qat-int8.tflite"] and rows[0]["latency"]["2"]["p50_ms"] > 0


@pytest.mark.slow   # trains the smoke pipeline (~2 min), as the other tests of smoke_run do
def test_bench_json_gives_a_row_per_artifact_and_thread_count_with_baselines_and_failures(tmp_path):
    import subprocess

    from skimage.metrics import peak_signal_noise_ratio

    from mask2face.benchmarks.bench import TABLE_FIELDS
    from mask2face.train import pairs
    from test_distill import smoke_run
    run = smoke_run()
    broken = tmp_path / "broken-int8.tflite"
    broken.write_bytes((run / "export" / "student-fp32.tflite").read_bytes()[:400])
    base = ["mask2face", "bench", "--preset", "smoke", "--run", str(run), "bench.threads=1,2", "bench.runs=3",
            "--models", str(run / "export" / "student-fp32.tflite"), str(broken)]
    r = subprocess.run(base + ["--out", str(tmp_path / "a"), "--json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(r.stdout)            # stdout is the document alone
    assert doc["environment"]["machine"]["cores"] and doc["environment"]["versions"]
    rows = doc["rows"]
    assert all(tuple(row) == TABLE_FIELDS for row in rows)
    model = [row for row in rows if row["kind"] == "model"]
    assert [(row["artifact"], row["threads"]) for row in model] == [("student-fp32.tflite", 1), ("student-fp32.tflite", 2)]
    assert all(row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] and row["size_bytes"] > 0 for row in model)
    assert all(np.isfinite(row[k]) for row in model for k in ("masked_psnr", "masked_ssim", "psnr", "ssim"))
    failed = [row for row in rows if row["kind"] == "failed"]
    assert [row["artifact"] for row in failed] == [broken.name] and "not a valid .tflite" in failed[0]["error"]
    baselines = {row["artifact"]: row for row in rows if row["kind"] == "baseline"}
    assert set(baselines) == {"masked input", "cv2.inpaint TELEA", "cv2.inpaint NS"}
    assert baselines["cv2.inpaint TELEA"]["p50_ms"] > 0 and baselines["masked input"]["p50_ms"] is None
    test = pairs.load_split(run / "data", "test", limit=8)
    ref = np.mean([peak_signal_noise_ratio(c, x, data_range=255) for x, c in zip(test["masked"], test["clean"])])
    assert abs(baselines["masked input"]["psnr"] - ref) < 1e-3
    r = subprocess.run(base + ["--out", str(tmp_path / "b"), "--csv"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == ",".join(TABLE_FIELDS)
    assert len(r.stdout.splitlines()) == 1 + len(rows)
