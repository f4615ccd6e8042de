"""QAT: quantize wrappers present; the QAT checkpoint round-trips through load_qat_model (tfmot .keras bug)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest


@pytest.mark.slow
@pytest.mark.parametrize("design", [{"stem_stride": 1}, {"stem_stride": 2}, {"stem_stride": 2, "blend_input": True}],
                         ids=["full", "half", "half-blend"])
def test_quantize_student_wraps_layers_and_roundtrips(tmp_path, design):
    from dataclasses import replace

    from mask2face import config
    from mask2face.compress.qat import SPEC_NAME, has_quantize_wrappers, load_qat_model, quantize_student
    from mask2face.train.student_arch import build_unet_mobile
    m = build_unet_mobile(replace(config.load("smoke").distill.student, **design), 32)
    q = quantize_student(m)
    assert has_quantize_wrappers(q)
    assert any(l.name.startswith("quant_dec0_up_d2s") for l in q.layers)  # the custom QuantizeConfig applied
    if design.get("blend_input"):   # Subtract / Multiply are not in tfmot's registry: OutputQuantizeConfig
        assert {"quant_blend_delta", "quant_blend_mul"} <= {l.name for l in q.layers}
    x = np.random.default_rng(0).random((1, 32, 32, 3), dtype=np.float32)
    q(x)
    q.compile(optimizer="adam")
    q.save(tmp_path / "best.keras")
    (tmp_path / SPEC_NAME).write_text(m.to_json())
    q2 = load_qat_model(tmp_path / "best.keras")
    np.testing.assert_allclose(q2(x).numpy(), q(x).numpy(), atol=1e-6)


def test_missing_spec_is_a_clear_error(tmp_path):
    from mask2face.compress.qat import load_qat_model
    from mask2face.edge_runtime.errors import Mask2FaceError
    (tmp_path / "best.keras").write_bytes(b"x")
    with pytest.raises(Mask2FaceError, match="qat_spec.json"):
        load_qat_model(tmp_path / "best.keras")


@pytest.mark.slow
def test_calibrate_ranges_starts_activation_ranges_at_the_float_models():
    """tfmot starts every activation range at [-6, 6]; calibrate_ranges sets each to the float layer's mean batch
    min/max (0 included), and leaves the weight ranges alone."""
    import tf_keras as keras
    from dataclasses import replace

    from mask2face import config
    from mask2face.compress.qat import calibrate_ranges, quantize_student
    from mask2face.train.student_arch import build_unet_mobile
    m = build_unet_mobile(replace(config.load("smoke").distill.student, stem_stride=2, blend_input=True), 32)
    q = quantize_student(m)
    kernels_before = {v.name: v.numpy().copy() for v in q.non_trainable_weights if "kernel_m" in v.name}
    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32)
    changed = calibrate_ranges(q, m, x, batch_size=4)
    assert changed and all(old in (-6.0, 6.0) for old, _ in changed.values())
    vars_ = {v.name: float(v.numpy()) for v in q.non_trainable_weights if v.shape.rank == 0}
    # the blend's output is the convex mix of two [0, 1] images: its range starts at [0, ~1]
    assert vars_["quant_blend_add/output_min:0"] == 0.0 and 0.5 < vars_["quant_blend_add/output_max:0"] <= 1.0
    probe = keras.Model(m.input, m.get_layer("stem_relu6").output)
    highs = [float(probe(x[i:i + 4]).numpy().max()) for i in (0, 4)]
    assert vars_["quant_stem_relu6/output_max:0"] == pytest.approx(np.mean(highs), rel=1e-5)
    for name, before in kernels_before.items():
        np.testing.assert_array_equal(before, [v for v in q.non_trainable_weights if v.name == name][0].numpy())
