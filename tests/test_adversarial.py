"""train.adversarial: the discriminator sees only the mask, its terms are logged, it resumes and hashes stay."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import json  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mask2face.config import AdversarialConfig, ModelConfig, TrainConfig  # noqa: E402

from test_fit import make_fake_pairs  # noqa: E402

ADV = AdversarialConfig(weight=0.1, feature_matching=1.0, r1_gamma=1.0, filters=(8, 16))


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return make_fake_pairs(tmp_path_factory.mktemp("adv_pairs"))


def _fit(pairs_dir, out, adversarial=ADV, **kw):
    from mask2face.train.fit import PairsInput, fit_model
    from mask2face.train.losses import build_loss
    from mask2face.train.models import build_model
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    model = build_model(ModelConfig(filters=(8, 16), kernels=(3, 3)), 32)
    train = PairsInput(pairs_dir, "train", 4, flip=True, seed=0)
    val = PairsInput(pairs_dir, "val", 4, shuffle=False)
    return fit_model(model, train, val, build_loss(TrainConfig(batch_size=4)), out, epochs=2, learning_rate=1e-3,
                     schedule="constant", verbose=False, adversarial=adversarial, **kw)


def test_discriminator_judges_only_the_masked_region():
    import tensorflow as tf
    from mask2face.train.adversarial import Adversary
    adv = Adversary.from_config(ADV, 32)
    rng = np.random.default_rng(0)
    truth = rng.random((2, 32, 32, 3)).astype(np.float32)
    mask = np.zeros((2, 32, 32, 1), np.float32)
    mask[:, 16:, 8:24] = 1.0
    y = tf.constant(np.concatenate([truth, mask], -1))
    # A prediction that differs from the truth only outside the mask is, to the discriminator, the real crop.
    outside_only = truth + (1 - mask) * 0.5
    real = adv.generator_terms(y, tf.constant(np.concatenate([truth, mask], -1)))
    moved = adv.generator_terms(y, tf.constant(np.concatenate([outside_only, mask], -1)))
    assert float(moved["g_adv"]) == pytest.approx(float(real["g_adv"]), abs=1e-6)
    assert float(moved["fm"]) == pytest.approx(0.0, abs=1e-6)
    # A bare example (no mask) carries no weight at all.
    bare = tf.constant(np.concatenate([truth, np.zeros_like(mask)], -1))
    assert float(adv.generator_terms(bare, tf.constant(np.concatenate([truth * 0, mask], -1)))["g_adv"]) == 0.0


def test_adversarial_fit_logs_every_term_saves_the_discriminator_and_resumes(pairs_dir, tmp_path):
    out = tmp_path / "adv"
    first = _fit(pairs_dir, out, max_steps=3)
    assert not first.finished and (out / "discriminator.keras").is_file()
    result = _fit(pairs_dir, out)
    assert result.finished and result.resumed_from_step == 3
    history = json.loads((out / "state.json").read_text())["history"]
    terms = history["2"]["terms"]
    assert set(terms) == {"reconstruction", "g_adv", "fm", "d_real", "d_fake", "r1"}
    assert all(np.isfinite(v) for v in terms.values())
    assert terms["d_real"] > 0 and terms["d_fake"] > 0 and terms["r1"] >= 0
    # A run with another adversarial weight is not the same run.
    from mask2face.edge_runtime.errors import Mask2FaceError
    with pytest.raises(Mask2FaceError, match="other settings"):
        _fit(pairs_dir, out, adversarial=AdversarialConfig(weight=0.2, filters=(8, 16)))


def test_adversarial_off_keeps_run_keys_and_config_hashes():
    from mask2face import config
    from mask2face.train.fit import run_key
    cfg = config.preset("cpu")
    off = config.to_dict(cfg.distill)
    legacy = {k: v for k, v in off.items() if k != "adversarial"}
    assert run_key({"student": off}) == run_key({"student": legacy})
    on = config.apply_overrides(cfg, ["distill.adversarial.weight=0.05"])
    assert config.config_hash(on) != config.config_hash(cfg)
    with pytest.raises(config.ConfigError, match="0 or more"):
        config.load("cpu", ["distill.adversarial.weight=-1"])


def test_unknown_adversarial_loss_is_one_clear_error():
    from mask2face.edge_runtime.errors import Mask2FaceError
    from mask2face.train.adversarial import Adversary
    with pytest.raises(Mask2FaceError, match="hinge"):
        Adversary.from_config(AdversarialConfig(weight=1.0, loss="wasserstein", filters=(8,)), 32)
