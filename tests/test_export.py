"""Export: metadata round-trip (TF writer <-> edge reader), every variant runs, QAT-int8 close to the QAT model."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json

import numpy as np
import pytest


def test_metadata_roundtrip_with_the_edge_reader():
    import tensorflow as tf
    from mask2face.compress import tflite_metadata as tm
    from mask2face.edge_runtime import tflite_file

    @tf.function(input_signature=[tf.TensorSpec([1, 4, 4, 3], tf.float32)])
    def f(x):
        return tf.nn.relu(x)

    data = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    meta = tm.build_metadata(name="student", precision="fp32", input_size=(4, 4), config_hash="abc")
    out = tm.embed(tm.embed(data, {"old": 1}), meta)  # a second embed replaces, never duplicates
    written = tm.read(out)
    assert len(written.pop("weights_sha256")) == 64 and written == json.loads(json.dumps(meta))
    assert list(tm.read_all(out)).count("mask2face") == 1 and "min_runtime_version" in tm.read_all(out)
    assert tflite_file.parse(out, "t").mask2face_metadata() == tm.read(out)
    assert tflite_file.verify_digest(out, tflite_file.parse(out))     # every export is signed
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=out)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], -np.ones((1, 4, 4, 3), np.float32))
    it.invoke()
    assert it.get_tensor(it.get_output_details()[0]["index"]).max() == 0


@pytest.mark.slow
def test_every_variant_runs_with_metadata_and_reports():
    from test_distill import smoke_run
    from mask2face.compress import tflite_metadata as tm
    from mask2face.compress.export import run_once
    run = smoke_run()
    names = {f"{m}-{p}.tflite" for m in ("teacher", "student") for p in ("fp32", "fp16", "dynamic", "int8")}
    names.add("student-qat-int8.tflite")
    assert names <= {p.name for p in (run / "export").glob("*.tflite")}
    x = np.full((32, 32, 3), 0.5, np.float32)
    for name in names:
        data = (run / "export" / name).read_bytes()
        meta = tm.read(data)
        assert meta["precision"] in name and meta["input_size"] == [32, 32] and meta["color_order"] == "RGB"
        assert np.isfinite(run_once(data, x)).all()
        assert (run / "export" / name).with_suffix(".delegates.json").exists()
    rep = json.loads((run / "export" / "student-qat-int8.delegates.json").read_text())
    assert rep["gpu_compatible"] and rep["xnnpack_partitions"] == 1
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    assert {o["path"].split("/")[-1] for o in manifest["outputs"]} >= names


@pytest.mark.slow
def test_fp32_matches_keras_and_qat_int8_matches_qat_model():
    from test_distill import smoke_run
    from mask2face.train import metrics, pairs
    from mask2face.compress.export import run_once
    from mask2face.compress.qat import load_qat_model
    from mask2face.train.models import load_model
    run = smoke_run()
    test = pairs.load_split(run / "data", "test")["masked"].astype(np.float32) / 255
    student = load_model(run / "student" / "best.keras")
    qat = load_qat_model(run / "qat" / "best.keras")
    fp32 = (run / "export" / "student-fp32.tflite").read_bytes()
    q8 = (run / "export" / "student-qat-int8.tflite").read_bytes()
    for x in test[:4]:
        assert np.abs(run_once(fp32, x) - student(x[None]).numpy()[0]).max() < 1e-4
        # stated bound: the int8 file reproduces the fake-quant model within 30 dB PSNR (1 LSB of 8-bit ~ 48 dB)
        assert metrics.psnr(run_once(q8, x)[..., :3], qat(x[None]).numpy()[0][..., :3]) > 30


@pytest.mark.slow
def test_int8_io_export_runs_in_the_edge_runtime_like_the_float_io_file():
    """export.int8_io=true: int8 input/output tensors, quantisation recorded in the metadata; the edge Model
    quantises/dequantises and gives the float-I/O file's result within a few output steps."""
    from test_distill import cli, smoke_run
    from mask2face.compress import tflite_metadata as tm
    from mask2face.edge_runtime.model import Model
    run = smoke_run()
    out = run / "export-int8io"
    cli("export", "--preset", "smoke", "--run", str(run), "--out", str(out), "export.int8_io=true",
        "export.precisions=qat-int8")
    q_io = out / "student-qat-int8.tflite"
    meta = tm.read(q_io.read_bytes())
    assert meta["input_quantization"]["scale"] > 0 and meta["output_quantization"]["scale"] > 0
    m8, mf = Model.from_file(q_io, threads=1), Model.from_file(run / "export" / "student-qat-int8.tflite", threads=1)
    assert m8.input_detail["dtype"] == np.int8 and mf.input_detail["dtype"] == np.float32
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    y8, yf = m8.run(x), mf.run(x)
    assert y8.dtype == np.float32 and y8.shape == yf.shape
    # uint8 pixels go straight in (q = pixel - 128 for scale 1/255, zero point -128): same tensor, same result
    u8 = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(m8.to_input_u8(u8), m8.to_input(u8.astype(np.float32) / 255))
    np.testing.assert_array_equal(m8.run(u8), m8.run(u8.astype(np.float32) / 255))
    step = meta["output_quantization"]["scale"]
    # input rounding to 8 bits moves a few outputs by one or two quantisation steps, no more
    assert np.abs(y8 - yf).max() <= 3 * step + 1e-6, (np.abs(y8 - yf).max(), step)


@pytest.mark.slow
def test_half_resolution_student_exports_with_the_same_guarantees(tmp_path):
    """The cpu preset's student design (stem_stride=2, pixel-shuffle head, shuffle upsampling, blend_input with a
    composited teacher target) through distill -> qat -> export on the smoke data: fp32 file == Keras, QAT-int8
    file ~ QAT model, one XNNPACK partition, GPU-compatible, and the metadata says the RGB is blended."""
    import json

    from test_distill import cli, smoke_run
    from mask2face.train import metrics, pairs
    from mask2face.compress.export import run_once
    from mask2face.compress.qat import load_qat_model
    from mask2face.train.models import load_model
    base = smoke_run()
    run = tmp_path / "run"
    run.mkdir()
    for part in ("data", "teacher"):
        (run / part).symlink_to(base / part)
    over = ["distill.student.stem_stride=2", "distill.student.filters=8,8,16", "distill.student.upsample=shuffle",
            "distill.student.blend_input=true", "distill.composite_teacher=true"]
    cli("distill", "--preset", "smoke", "--run", str(run), "distill.epochs=2", *over)
    cli("qat", "--preset", "smoke", "--run", str(run), *over)
    cli("export", "--preset", "smoke", "--run", str(run), "--model", str(run / "student" / "best.keras"),
        "--model", str(run / "qat" / "best.keras"), "export.precisions=fp32,qat-int8", *over)
    student = load_model(run / "student" / "best.keras")
    assert student.get_layer("blend_input_s2d") is not None and student.get_layer("blend_add") is not None
    qat = load_qat_model(run / "qat" / "best.keras")
    fp32 = (run / "export" / "student-fp32.tflite").read_bytes()
    q8 = (run / "export" / "student-qat-int8.tflite").read_bytes()
    test = pairs.load_split(run / "data", "test")["masked"].astype(np.float32) / 255
    for x in test[:4]:
        assert np.abs(run_once(fp32, x) - student(x[None]).numpy()[0]).max() < 1e-4
        assert metrics.psnr(run_once(q8, x)[..., :3], qat(x[None]).numpy()[0][..., :3]) > 30
    for name in ("student-fp32", "student-qat-int8"):
        rep = json.loads((run / "export" / f"{name}.delegates.json").read_text())
        assert rep["gpu_compatible"] and rep["xnnpack_partitions"] == 1, (name, rep)
    from mask2face.edge_runtime import tflite_file
    assert tflite_file.parse(q8).mask2face_metadata()["rgb_blended_by_mask"] is True


def test_stamp_adds_a_digest_and_keeps_weights_and_outputs(tmp_path, capsys):
    """`python -m mask2face.compress.tflite_metadata --stamp` on an older export: the same weights byte for byte,
    the same output byte for byte on a real photo, and a digest the runtime verifies."""
    import cv2
    import skimage.data
    from mask2face.compress import tflite_metadata as tm
    from mask2face.edge_runtime import tflite_file
    from mask2face.edge_runtime.model import Model
    from test_model import make_tiny_tflite

    old = make_tiny_tflite(tmp_path)
    unsigned = old.read_bytes().replace(b'"weights_sha256"', b'"weights_sha2xx"')   # as exported before
    old.write_bytes(unsigned)
    stamped = tmp_path / "stamped.tflite"
    stamped.write_bytes(unsigned)
    assert tm.main(["--stamp", str(stamped)]) == 0     # `python -m mask2face.compress.tflite_metadata --stamp`
    assert "weights_sha256" in capsys.readouterr().out
    data = stamped.read_bytes()
    assert tm.weight_buffers(data) == tm.weight_buffers(unsigned)
    a, b = Model.from_file(old), Model.from_file(stamped)
    assert not a.verified and b.verified
    photo = cv2.resize(skimage.data.astronaut(), a.input_size)[None]
    assert a.invoke(a.to_input_u8(photo)).tobytes() == b.invoke(b.to_input_u8(photo)).tobytes()
    meta = tflite_file.parse(data).mask2face_metadata()
    assert {k: v for k, v in meta.items() if k not in ("weights_sha256", "weights_sha2xx")} == \
        {k: v for k, v in tflite_file.parse(unsigned).mask2face_metadata().items() if k != "weights_sha2xx"}
