"""QAT: quantize wrappers present; the QAT checkpoint round-trips through load_qat_model (tfmot .keras bug)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest


@pytest.mark.slow
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_quantize_student_wraps_layers_and_roundtrips(tmp_path, stem_stride):
    from dataclasses import replace

    from mask2face import config
    from mask2face.compress.qat import SPEC_NAME, has_quantize_wrappers, load_qat_model, quantize_student
    from mask2face.train.student_arch import build_unet_mobile
    m = build_unet_mobile(replace(config.load("smoke").distill.student, stem_stride=stem_stride), 32)
    q = quantize_student(m)
    assert has_quantize_wrappers(q)
    assert any(l.name.startswith("quant_dec0_up_d2s") for l in q.layers)  # the custom QuantizeConfig applied
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
