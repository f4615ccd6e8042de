"""train.models: registry, output shapes, no Lambda layers, save/load round trip."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tf_keras as keras  # noqa: E402

from mask2face.config import ModelConfig, preset  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402
from mask2face.train import models  # noqa: E402


def _no_lambda(model):
    names = {type(layer).__name__ for layer in model.layers}
    assert not names & {"Lambda", "TFOpLambda", "SlicingOpLambda"}, names


@pytest.mark.parametrize("arch", ["unet_resnet", "unet"])
@pytest.mark.parametrize("predict_mask", [True, False])
def test_shapes_and_sigmoid_range(arch, predict_mask):
    cfg = ModelConfig(arch=arch, filters=(8, 12, 16), kernels=(5, 3, 3), predict_mask=predict_mask)
    model = models.build_model(cfg, 32)
    assert isinstance(model, keras.Model) and model.__class__.__name__ == "Functional"
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 32, 32, 4 if predict_mask else 3)
    _no_lambda(model)
    out = model(np.random.default_rng(0).random((2, 32, 32, 3), np.float32), training=False).numpy()
    assert out.min() >= 0 and out.max() <= 1


def test_resnet_blocks_have_projection_shortcuts_and_skips():
    model = models.build_model(ModelConfig(filters=(8, 16, 16), kernels=(3, 3, 3)), 32)
    names = [layer.name for layer in model.layers]
    assert "enc0_proj_conv" in names          # 3 -> 8 channels needs a 1x1 projection
    assert "enc2_proj_conv" not in names      # 16 -> 16 keeps the identity shortcut
    assert sum(isinstance(layer, keras.layers.Concatenate) for layer in model.layers) == 2
    assert sum(isinstance(layer, keras.layers.UpSampling2D) for layer in model.layers) == 2


def test_paper_and_cpu_presets_build():
    for name, size in (("cpu", 128),):
        cfg = preset(name).teacher
        model = models.build_model(cfg, size)
        assert model.output_shape == (None, size, size, 4)
        assert len([layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]) == \
            len(cfg.filters) - 1


def test_save_load_round_trip_identical(tmp_path):
    model = models.build_model(ModelConfig(filters=(8, 16, 16), kernels=(3, 3, 3)), 32)
    x = np.random.default_rng(1).random((2, 32, 32, 3), np.float32)
    # Make BatchNorm statistics non-trivial so a lost variable would show.
    for _ in range(3):
        model(x, training=True)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = models.load_model(path)  # no custom objects
    assert not np.allclose(model.get_layer("enc0_a_bn").moving_mean.numpy(), 0)
    np.testing.assert_array_equal(model(x, training=False).numpy(), loaded(x, training=False).numpy())


def test_errors_are_clear(tmp_path):
    with pytest.raises(Mask2FaceError, match="unknown architecture"):
        models.build_model(ModelConfig(arch="vit"), 32)
    with pytest.raises(Mask2FaceError, match="divisible"):
        models.build_model(ModelConfig(filters=(8, 8, 8, 8), kernels=(3, 3, 3, 3)), 36)
    with pytest.raises(Mask2FaceError, match="same length"):
        models.build_model(ModelConfig(filters=(8, 8), kernels=(3,)), 32)
    with pytest.raises(Mask2FaceError, match="not found"):
        models.load_model(tmp_path / "missing.keras")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(Mask2FaceError, match="cannot load"):
        models.load_model(bad)


def test_unet_mobile_is_in_the_registry():
    try:
        import mask2face.train.student_arch  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"train/student_arch.py not importable yet: {exc}")
    model = models.build_model(ModelConfig(arch="unet_mobile", filters=(4, 8, 8), kernels=(3, 3, 3)), 32)
    assert model.output_shape == (None, 32, 32, 4)


def test_repeat_upsampling_is_nearest_in_one_xnnpack_partition():
    """`repeat` (channel copies + DepthToSpace) computes UpSampling2D(nearest) exactly, takes a nearest model's weights
    unchanged, and converts to a graph XNNPACK runs whole (the nearest one it splits)."""
    from mask2face.compress.delegates import xnnpack_partitions
    from mask2face.compress.export import convert, run_once
    cfg = ModelConfig(filters=(8, 16, 16), kernels=(3, 3, 3))
    nearest = models.build_model(cfg, 32)
    x = np.random.default_rng(2).random((2, 32, 32, 3), np.float32)
    for _ in range(2):   # non-trivial BatchNorm statistics
        nearest(x, training=True)
    repeat = models.build_model(ModelConfig(filters=(8, 16, 16), kernels=(3, 3, 3), upsample="repeat"), 32)
    repeat.set_weights(nearest.get_weights())
    np.testing.assert_array_equal(nearest(x, training=False).numpy(), repeat(x, training=False).numpy())
    data = convert(repeat, "fp32")
    assert np.abs(run_once(data, x[0]) - repeat(x[:1]).numpy()[0]).max() < 1e-4
    assert xnnpack_partitions(data) == {"partitions": 1, "undelegated_ops": []}
    assert xnnpack_partitions(convert(nearest, "fp32"))["partitions"] > 1
    with pytest.raises(Mask2FaceError, match="not a teacher upsampling"):
        models.build_model(ModelConfig(filters=(8, 16), kernels=(3, 3), upsample="shuffle"), 32)
