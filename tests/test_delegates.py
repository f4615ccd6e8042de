"""Delegate report: flags a GPU-incompatible op, passes the student."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json

import pytest


def test_argmax_model_is_flagged_not_gpu_compatible(tmp_path):
    import tensorflow as tf
    from mask2face.compress import delegates

    @tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    def f(x):
        return tf.math.argmax(x, axis=-1)  # ARG_MAX: no GPU delegate parser

    data = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f).convert()
    path = tmp_path / "argmax.tflite"
    path.write_bytes(data)
    out, rep = delegates.write_report(path)
    assert rep["gpu_compatible"] is False and rep["gpu_unsupported_ops"] == ["ARG_MAX"]
    assert rep["nnapi_compatible"] and rep["nnapi_min_api"] == 29
    assert json.loads(out.read_text())["gpu_unsupported_ops"] == ["ARG_MAX"]
    assert "NOT compatible: ARG_MAX" in delegates.format_table(rep)


@pytest.mark.slow
@pytest.mark.parametrize("design", [{"stem_stride": 1}, {"stem_stride": 2},
                                    {"stem_stride": 2, "upsample": "shuffle", "blend_input": True}],
                         ids=["full", "half", "half-shuffle-blend"])
def test_student_is_gpu_compatible_in_fp32_fp16_int8(design):
    from dataclasses import replace

    import numpy as np
    from mask2face import config
    from mask2face.compress import delegates
    from mask2face.compress.export import convert
    from mask2face.train.student_arch import build_unet_mobile
    m = build_unet_mobile(replace(config.load("smoke").distill.student, **design), 32)
    rep_imgs = (np.random.default_rng(0).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    for precision in ("fp32", "fp16", "int8"):
        rep = delegates.report(convert(m, precision, rep_imgs), name=precision)
        assert rep["gpu_compatible"], (precision, rep["gpu_unsupported_ops"])
        assert rep["xnnpack_partitions"] == 1, precision
        assert {"DEPTH_TO_SPACE", "DEPTHWISE_CONV_2D", "CONCATENATION"} <= set(rep["op_counts"])
