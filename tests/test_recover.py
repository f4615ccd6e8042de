"""compress.recover: the Keras model back from its int8 and float16 .tflite files, computing what the file computes,
and training-mode BatchNormalization close to its inference (so it fine-tunes from where the file is)."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import dataclasses

import numpy as np
import pytest

from mask2face import config


def _tiny_model(seed: int = 0):
    """A two-stage unet_resnet of the shipped design (upsample "repeat"), with BatchNormalization statistics
    that are not the identity, so that folding them into the convs matters."""
    from mask2face.train.models import build_model
    import tf_keras as keras
    cfg = dataclasses.replace(config.preset("cpu-full").distill.student, filters=(8, 16), kernels=(3, 3))
    keras.utils.set_random_seed(seed)
    model = build_model(cfg, 32)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.2, n),
                               rng.uniform(0.5, 2.0, n)])
    return cfg, model


@pytest.fixture(scope="module")
def tiny():
    cfg, model = _tiny_model()
    images = np.random.default_rng(1).random((16, 32, 32, 3), dtype=np.float32)
    return cfg, model, images


@pytest.mark.slow
@pytest.mark.parametrize("precision, bound", [("fp16", 2e-3), ("int8", 0.03)])
def test_the_recovered_model_computes_what_its_file_computes(tiny, precision, bound):
    from mask2face.compress.export import convert, run_once
    from mask2face.compress.recover import recovered_model
    cfg, model, images = tiny
    data = convert(model, precision, (images * 255).astype(np.uint8))
    recovered = recovered_model(data, cfg, 32, images)
    x = images[:4]
    ours = recovered(x, training=False).numpy()
    theirs = np.stack([run_once(data, xi) for xi in x])
    assert np.abs(ours - theirs).max() < bound
    assert np.abs(ours - model(x, training=False).numpy()).max() < bound   # and what the model did
    # training mode normalises by the batch's own statistics, which the moving ones were set to
    assert np.abs(recovered(images, training=True).numpy() - recovered(images, training=False).numpy()).mean() < 0.01


def test_a_file_of_another_design_is_refused(tiny):
    from mask2face.compress.export import convert
    from mask2face.compress.recover import RecoverError, recovered_model
    cfg, model, images = tiny
    data = convert(model, "fp16")
    with pytest.raises(RecoverError, match="differ in conv layers|kernel"):
        recovered_model(data, dataclasses.replace(cfg, filters=(8, 16, 16), kernels=(3, 3, 3)), 32, images)
    with pytest.raises(RecoverError, match="kernel"):
        recovered_model(data, dataclasses.replace(cfg, filters=(8, 24)), 32, images)
