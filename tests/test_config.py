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
