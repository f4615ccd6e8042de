"""The student: builds at smoke/cpu sizes, converts to ONE XNNPACK partition, fp32 .tflite matches Keras."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest

from mask2face import config


def _student(size=32, **over):
    from dataclasses import replace

    from mask2face.train.student_arch import build_unet_mobile
    cfg = replace(config.load("smoke").distill.student, **over)
    return build_unet_mobile(cfg, size)


def test_shapes_widths_and_no_lambda():
    import tf_keras as keras
    from mask2face.train.student_arch import scaled_filters
    m = _student()
    assert m.input_shape == (None, 32, 32, 3) and m.output_shape == (None, 32, 32, 4)
    assert not any(isinstance(l, keras.layers.Lambda) for l in m.layers)
    # BatchNorm directly after every conv (so it folds)
    for l in m.layers:
        if isinstance(l, keras.layers.BatchNormalization):
            assert isinstance(l._inbound_nodes[0].inbound_layers, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))
    assert scaled_filters((8, 16, 32), 0.5) == [4, 8, 16]
    wide = _student(width_multiplier=2.0)
    assert wide.count_params() > 2.5 * m.count_params()
    y = m(np.random.rand(2, 32, 32, 3).astype(np.float32)).numpy()
    assert y.min() >= 0 and y.max() <= 1


def test_bad_size_is_an_error():
    with pytest.raises(ValueError, match="divisible"):
        _student(size=30)


def test_save_load_roundtrip(tmp_path):
    from mask2face.train.models import load_model
    m = _student()
    m.save(tmp_path / "s.keras")
    m2 = load_model(tmp_path / "s.keras")
    x = np.random.rand(1, 32, 32, 3).astype(np.float32)
    np.testing.assert_allclose(m(x).numpy(), m2(x).numpy(), atol=1e-6)


def test_fp32_tflite_matches_keras_and_is_one_xnnpack_partition():
    from mask2face.compress.delegates import xnnpack_partitions
    from mask2face.compress.export import convert, run_once
    m = _student()
    data = convert(m, "fp32")
    x = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    diff = np.abs(run_once(data, x) - m(x[None]).numpy()[0]).max()
    assert diff < 1e-4, diff
    xnn = xnnpack_partitions(data)
    assert xnn["partitions"] == 1 and xnn["undelegated_ops"] == []


def test_nearest_upsampling_splits_xnnpack():
    """Why depth_to_space: nearest resize leaves XNNPACK (upsample_choice.json) - the counter must see it."""
    from mask2face.compress.delegates import xnnpack_partitions
    from mask2face.compress.export import convert
    xnn = xnnpack_partitions(convert(_student(upsample="nearest"), "fp32"))
    assert xnn["partitions"] > 1 and "RESIZE_NEAREST_NEIGHBOR" in xnn["undelegated_ops"]


def test_saved_student_loads_in_a_fresh_process(tmp_path):
    """load_model must register DepthToSpace itself: a new process has never imported student_arch."""
    import subprocess
    import sys
    _student().save(tmp_path / "s.keras")
    code = ("import os; os.environ['TF_USE_LEGACY_KERAS'] = '1'\n"
            "from mask2face.train.models import load_model\n"
            "m = load_model('s.keras'); print('OUT', m.output_shape)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "OUT (None, 32, 32, 4)" in r.stdout, r.stderr[-2000:]


def test_half_resolution_student_has_no_full_size_feature_map():
    """stem_stride=2: every layer before the pixel-shuffle head is at most half the input side, the output is
    full size, and the .tflite still matches Keras and runs as one XNNPACK partition."""
    from mask2face.compress.delegates import xnnpack_partitions
    from mask2face.compress.export import convert, run_once
    m = _student(stem_stride=2)
    assert m.output_shape == (None, 32, 32, 4)
    head = m.get_layer("head_d2s")
    for layer in m.layers[1:]:
        if layer is head or layer.name == "restored":
            continue
        assert layer.output_shape[1] <= 16, (layer.name, layer.output_shape)
    data = convert(m, "fp32")
    x = np.random.default_rng(1).random((32, 32, 3), dtype=np.float32)
    assert np.abs(run_once(data, x) - m(x[None]).numpy()[0]).max() < 1e-4
    xnn = xnnpack_partitions(data)
    assert xnn["partitions"] == 1 and xnn["undelegated_ops"] == []


def test_half_resolution_needs_one_more_factor_of_two():
    with pytest.raises(ValueError, match="stem_stride 2"):
        _student(size=36, stem_stride=2)   # 36 / 4 = 9 is fine at stride 1, not at stride 2 (needs 8 | size)
    with pytest.raises(ValueError, match="stem_stride"):
        _student(stem_stride=3)


def test_shuffle_upsampling_has_no_expansion_weights():
    """upsample=shuffle: depth-to-space straight from the deeper level (no 1x1 expansion to 4*C), so the student
    is smaller; still one XNNPACK partition and the .tflite matches Keras."""
    from mask2face.compress.delegates import xnnpack_partitions
    from mask2face.compress.export import convert, run_once
    shuffle = _student(stem_stride=2, filters=(8, 8, 16), upsample="shuffle")
    expand = _student(stem_stride=2, filters=(8, 8, 16))
    assert not any("_expand" in l.name for l in shuffle.layers)
    assert shuffle.count_params() < expand.count_params()
    assert shuffle.output_shape == (None, 32, 32, 4)
    data = convert(shuffle, "fp32")
    x = np.random.default_rng(2).random((32, 32, 3), dtype=np.float32)
    assert np.abs(run_once(data, x) - shuffle(x[None]).numpy()[0]).max() < 1e-4
    assert xnnpack_partitions(data)["partitions"] == 1


def _set_mask_head(model, bias: float):
    layer = model.get_layer("head_mask_conv")
    kernel, b = layer.get_weights()
    layer.set_weights([np.zeros_like(kernel), np.full_like(b, bias)])


@pytest.mark.parametrize("stem_stride", [1, 2])
def test_blend_input_returns_unmasked_pixels_exactly_and_pastes_its_rgb_by_its_mask(stem_stride):
    """blend_input: out = x + m * (rgb - x). With the mask head forced to 'no mask' the model returns its input
    bit for bit; forced to 'mask' it returns its own RGB head; in between, the convex mix. At stem_stride 2 the
    blend runs on 2x2 pixel blocks (no elementwise op on a full-size tensor) with the same result. The .tflite
    matches Keras and stays one XNNPACK partition."""
    import tensorflow as tf
    import tf_keras as keras
    from mask2face.compress.delegates import xnnpack_partitions
    from mask2face.compress.export import convert, run_once
    m = _student(stem_stride=stem_stride, filters=(8, 8, 16), upsample="shuffle", blend_input=True)
    assert m.output_shape == (None, 32, 32, 4)
    if stem_stride == 2:
        for layer in m.layers[1:]:
            if layer.name != "restored":
                assert layer.output_shape[1] <= 16, (layer.name, layer.output_shape)
    x = np.random.default_rng(3).random((2, 32, 32, 3), dtype=np.float32)
    rgb_layer = keras.Model(m.input, m.get_layer("rgb").output)

    def rgb_head(images):
        y = rgb_layer(images)
        return (tf.nn.depth_to_space(y, 2) if stem_stride == 2 else y).numpy()

    _set_mask_head(m, -40.0)
    np.testing.assert_array_equal(m(x).numpy()[..., :3], x)
    _set_mask_head(m, 40.0)
    np.testing.assert_allclose(m(x).numpy()[..., :3], rgb_head(x), atol=1e-6)
    _set_mask_head(m, 0.0)                              # m = 0.5 everywhere
    y = m(x).numpy()
    np.testing.assert_allclose(y[..., 3], 0.5, atol=1e-6)
    np.testing.assert_allclose(y[..., :3], 0.5 * (x + rgb_head(x)), atol=1e-6)
    data = convert(m, "fp32")
    assert np.abs(run_once(data, x[0]) - m(x[:1]).numpy()[0]).max() < 1e-4
    assert xnnpack_partitions(data)["partitions"] == 1


def test_blend_input_needs_the_mask_channel():
    with pytest.raises(ValueError, match="predict_mask"):
        _student(blend_input=True, predict_mask=False)
