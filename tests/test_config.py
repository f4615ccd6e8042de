import dataclasses
import json

import pytest

from mask2face import config


def test_presets_exist_and_paper_matches_reference():
    paper = config.preset("paper")
    assert paper.data.image_size == 256
    assert paper.teacher.arch == "unet_resnet"
    assert paper.teacher.filters == (64, 128, 128, 256, 256, 512)
    assert paper.teacher.kernels == (7, 7, 7, 3, 3, 3)
    assert paper.train.loss == "ssim_l1" and paper.train.epochs == 20 and paper.train.batch_size == 12
    assert paper.data.test_size == 1000
    assert config.preset("smoke").data.image_size < config.preset("cpu").data.image_size


def test_configs_are_frozen():
    cfg = config.preset("cpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.epochs = 3  # type: ignore[misc]


def test_overrides_parse_types_and_nested_keys():
    cfg = config.load("smoke", ["train.epochs=7", "teacher.filters=4,8,16", "train.flip=false",
                                "train.learning_rate=0.5", "distill.student.width_multiplier=0.75"])
    assert cfg.train.epochs == 7
    assert cfg.teacher.filters == (4, 8, 16)
    assert cfg.train.flip is False
    assert cfg.train.learning_rate == 0.5
    assert cfg.distill.student.width_multiplier == 0.75


def test_unique_bare_key_is_accepted():
    assert config.load("smoke", ["ssim_weight=0.5"]).train.ssim_weight == 0.5


def test_unknown_key_suggests_closest():
    with pytest.raises(config.ConfigError, match="did you mean 'train.epochs'"):
        config.load("cpu", ["trian.epochs=3"])


def test_ambiguous_bare_key_names_candidates():
    with pytest.raises(config.ConfigError, match="ambiguous"):
        config.load("cpu", ["epochs=3"])


def test_bad_value_and_bad_preset_are_clear():
    with pytest.raises(config.ConfigError, match="expected int"):
        config.load("cpu", ["train.epochs=many"])
    with pytest.raises(config.ConfigError, match="unknown preset"):
        config.preset("gpu")
    with pytest.raises(config.ConfigError, match="key=value"):
        config.load("cpu", ["train.epochs"])


def test_json_round_trip_and_hash_stability():
    cfg = config.load("cpu", ["train.epochs=3"])
    again = config.from_dict(json.loads(json.dumps(config.to_dict(cfg))))
    assert again == cfg
    assert config.config_hash(cfg) == config.config_hash(again)
    assert config.config_hash(cfg) != config.config_hash(config.preset("cpu"))


def test_values_outside_their_meaning_are_refused():
    """A zero batch divided by zero deep in TensorFlow, zero epochs 'finished' a run that trained nothing, and nan
    reached the optimizer: each is now one ConfigError naming the key."""
    for override, words in (("train.batch_size=0", "1 or more"), ("distill.batch_size=-3", "1 or more"),
                            ("train.epochs=0", "1 or more"), ("qat.epochs=-1", "1 or more"),
                            ("train.learning_rate=nan", "finite"), ("train.learning_rate=0", "above 0"),
                            ("train.bare_share=1.5", "between 0 and 1"), ("train.steps_per_epoch=-2", "0 or more"),
                            ("train.epochs=99999999999999", "at most")):
        with pytest.raises(config.ConfigError, match=words) as info:
            config.load("smoke", [override])
        assert override.split("=")[0] in str(info.value)
    for name in config.PRESETS:
        config.load(name)                                      # every preset is within range
