"""Training the mask classifier: its examples, calibration and AUC against references, and a smoke run that exports
a .tflite the runtime loads and that agrees with its Keras model."""
import json
import subprocess

import numpy as np
import pytest

from mask2face import config
from mask2face.edge_runtime import align
from mask2face.train import pairs
from mask2face.compress import classifier_export
from mask2face.train import mask_classifier as mc
from mask2face.train import mask_styles as ms


def _pairs(n=6, s=32, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.integers(90, 200, (n, s, s, 3), dtype=np.uint8)
    mask = np.zeros((n, s, s), np.uint8)
    mask[:, s // 2:s - 2, 4:s - 4] = 255
    masked = clean.copy()
    masked[mask > 127] = (40, 90, 200)
    return {"masked": masked, "clean": clean, "mask": mask}


def test_a_shifted_mask_moves_down_over_the_bare_face():
    p = _pairs(1)
    out = mc.shifted_mask(p["masked"][0], p["clean"][0], p["mask"][0], 5)
    moved, moved_masked = np.zeros_like(p["mask"][0]), np.zeros_like(p["masked"][0])
    moved[5:], moved_masked[5:] = p["mask"][0][:-5], p["masked"][0][:-5]
    assert np.array_equal(out[moved > 127], moved_masked[moved > 127])
    assert np.array_equal(out[moved == 0], p["clean"][0][moved == 0])
    assert np.array_equal(mc.shifted_mask(p["masked"][0], p["clean"][0], p["mask"][0], 0), p["masked"][0])


def test_examples_are_one_masked_and_one_bare_face_per_pair():
    cfg = config.preset("smoke").classifier
    x, y = mc.examples_from_pairs(_pairs(6), cfg, np.random.default_rng(0))
    assert x.shape == (12, cfg.input_size, cfg.input_size, 3) and x.dtype == np.uint8
    assert y.tolist() == [1.0] * 6 + [0.0] * 6
    aug = mc.augment(x, np.random.default_rng(1), degrade=1.0)
    assert aug.shape == x.shape and aug.dtype == np.uint8 and not np.array_equal(aug, x)


def test_a_worn_mask_rides_higher_and_wider_but_never_over_the_eyes():
    s = 128
    inside = np.zeros((s, s), np.uint8)
    inside[70:120, 30:98] = 1                                   # the generator's mask: nose to chin
    grew_up = grew_wide = 0
    for seed in range(40):
        out = ms.worn_region(inside, np.random.default_rng(seed))
        rows, cols = np.nonzero(out)
        assert rows.min() >= int(0.42 * s) - 5, "a worn mask must not cover the eyes (0.37 of the crop)"
        grew_up += rows.min() < 68
        grew_wide += cols.min() < 28 and cols.max() > 99
    assert grew_up > 20 and grew_wide > 20


def test_a_fitted_mask_leaves_the_cheeks_edges_and_the_neck_in_view():
    s = 128
    inside = np.zeros((s, s), np.uint8)
    inside[60:, 5:123] = 1                                      # a generated mask to the crop's sides and bottom
    for seed in range(20):
        out = ms.fitted_region(inside, np.random.default_rng(seed))
        rows, cols = np.nonzero(out)
        assert np.all(out <= inside) and rows.min() >= 60           # only ever cuts
        assert cols.min() > 0.13 * s and cols.max() < 0.87 * s and rows.max() < 0.96 * s
        assert out.sum() > 0.25 * s * s * 0.3                       # still a mask's size, not a speck
    tiny = np.zeros((s, s), np.uint8)
    tiny[2:6, 2:6] = 1                                          # outside every ellipse: kept rather than emptied
    assert np.array_equal(ms.fitted_region(tiny, np.random.default_rng(0)), tiny)


def test_restyled_masks_with_reshape_off_are_the_recipe_without_it():
    p = _pairs(4, s=64)
    for i in range(4):
        a = ms.restyle_mask(p["masked"][i], p["clean"][i], p["mask"][i], np.random.default_rng(i))
        b = ms.restyle_mask(p["masked"][i], p["clean"][i], p["mask"][i], np.random.default_rng(i), reshape=0.0)
        c = ms.restyle_mask(p["masked"][i], p["clean"][i], p["mask"][i], np.random.default_rng(i), fit=0.0)
        d = ms.restyle_mask(p["masked"][i], p["clean"][i], p["mask"][i], np.random.default_rng(i), relief=0.0)
        assert np.array_equal(a, b) and np.array_equal(a, c) and np.array_equal(a, d)
        worn = ms.restyle_mask(p["masked"][i], p["clean"][i], p["mask"][i], np.random.default_rng(i), reshape=1.0)
        assert worn.shape == a.shape and worn.dtype == np.uint8
        outside = np.ones((64, 64), bool)
        outside[int(0.42 * 64) - 3:, :] = False                    # above the highest a worn mask may reach
        assert np.array_equal(worn[outside], p["clean"][i][outside])


def test_pleats_and_prints_stay_in_range():
    rng = np.random.default_rng(3)
    folds = ms.pleats(128, rng)
    assert folds.shape == (128, 128) and 0.65 <= folds.min() < 0.95 and folds.max() <= 1.0
    cover, ink = ms.graphic_print(128, rng)
    assert cover.shape == (128, 128) and 0.0 <= cover.min() and cover.max() <= 1.0 and cover.max() > 0
    assert ink.shape == (3,) and 0 <= ink.min() and ink.max() <= 255


def test_a_masks_relief_shades_and_creases_it_within_bounds():
    for seed in range(6):
        relief = ms.worn_relief(128, np.random.default_rng(seed))
        assert relief.shape == (128, 128) and relief.dtype == np.float32
        assert 0.2 <= relief.min() < 0.97 and 1.03 < relief.max() <= 1.6      # never flat, never black or blown out
    p = _pairs(2, s=64)
    lit = ms.restyle_mask(p["masked"][0], p["clean"][0], p["mask"][0], np.random.default_rng(0), relief=1.0)
    outside = p["mask"][0] == 0
    outside[22:, :] = False                                   # the restyle grows and feathers the region
    assert np.array_equal(lit[outside], p["clean"][0][outside])


def test_an_ensemble_averages_its_members_calibrated_logits():
    import tf_keras as keras
    cfg = config.preset("smoke").classifier
    members = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        m = mc.build_classifier(cfg)
        mc.apply_temperature(m, 0.5 + seed)
        members.append(m)
    both = mc.ensemble(members)
    x = np.random.default_rng(0).random((5, cfg.input_size, cfg.input_size, 3)).astype(np.float32)
    logits = [keras.Model(m.input, m.get_layer("logit").output).predict(x, verbose=0)[:, 0] for m in members]
    expected = 1 / (1 + np.exp(-(logits[0] + logits[1]) / 2))
    assert np.allclose(both.predict(x, verbose=0)[:, 0], expected, atol=1e-5)
    mc.apply_temperature(both, 2.0)                            # recalibrated like a single model
    assert np.allclose(both.predict(x, verbose=0)[:, 0], 1 / (1 + np.exp(-(logits[0] + logits[1]) / 4)), atol=1e-5)


def test_a_missing_member_is_reported_before_any_training(tmp_path):
    cfg = config.load("smoke", [f"classifier.members={tmp_path / 'gone.keras'}"])
    with pytest.raises(mc.ClassifierError, match="gone.keras not found"):
        mc.train(cfg, [tmp_path / "no-pairs"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_temperature_fit_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 6, 20000)
    labels = (rng.random(len(z)) < 1 / (1 + np.exp(-z / 3.0))).astype(np.float64)
    assert abs(mc.fit_temperature(z, labels) - 3.0) < 0.25


def test_roc_auc_is_the_share_of_correctly_ordered_pairs():
    rng = np.random.default_rng(1)
    scores = np.round(rng.random(300), 2)          # ties on purpose
    labels = (rng.random(300) < 0.4).astype(float)
    pos, neg = scores[labels > 0.5], scores[labels < 0.5]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert abs(mc.roc_auc(scores, labels) - brute) < 1e-12


@pytest.mark.slow
def test_a_smoke_classifier_trains_exports_and_matches_its_keras_model(tmp_path):
    data = tmp_path / "data"
    for split, seed in (("train", 0), ("val", 1)):
        p = _pairs(16, 32, seed)
        pairs.write_shard(data / split / pairs.shard_name(0), p["masked"], p["clean"], p["mask"],
                          [{"source": f"x/{i}.jpg"} for i in range(16)])
    r = subprocess.run(["mask2face", "classifier", "--preset", "smoke", "--run", str(tmp_path / "run"), "--data",
                        str(data), "classifier.threshold=0.4"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "run" / "classifier"
    report = json.loads((out / "train_report.json").read_text())
    assert report["examples"] == {"train": 32, "val": 32} and report["temperature"] > 0
    from mask2face.edge_runtime.mask_decision import MaskClassifier
    clf = MaskClassifier.from_file(out / classifier_export.TFLITE_NAME, threads=1)
    assert clf.threshold == 0.4 and clf.size == 16
    # hand-made pairs without dataset.json: the default framing, the shards' crop size
    assert clf.framing == align.DEFAULT_FRAMING and clf.crop_size == 32
    assert clf.model.metadata["config_hash"] == config.config_hash(
        config.load("smoke", ["classifier.threshold=0.4"]).classifier)
    import tf_keras as keras
    model = keras.models.load_model(out / "calibrated.keras")
    x, _ = mc.examples_from_pairs(_pairs(8, 32, 2), config.preset("smoke").classifier, np.random.default_rng(0))
    keras_p = model.predict(x.astype(np.float32) / 255, verbose=0)[:, 0]
    tflite_p = np.array([clf.probability(img) for img in x])
    assert np.abs(keras_p - tflite_p).max() < 0.06, (keras_p, tflite_p)
    # resume: a second run with the same settings trains no more epochs
    r = subprocess.run(["mask2face", "classifier", "--preset", "smoke", "--run", str(tmp_path / "run"), "--data",
                        str(data)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "epoch 1/1" not in r.stderr, r.stderr[-3000:]
    # a second classifier joins the first: one .tflite whose logit is the mean of both, recalibrated
    r = subprocess.run(["mask2face", "classifier", "--preset", "smoke", "--run", str(tmp_path / "joined"), "--data",
                        str(data), "classifier.relief_share=1.0", f"classifier.members={out / 'calibrated.keras'}"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    joined = tmp_path / "joined" / "classifier"
    report = json.loads((joined / "train_report.json").read_text())
    assert report["members"] == [str(out / "calibrated.keras")] and report["trained_member"]["temperature"] > 0
    assert (joined / "member.keras").is_file()
    ensemble = keras.models.load_model(joined / "calibrated.keras")
    assert {"member_0", "member_1"} <= {layer.name for layer in ensemble.layers}
    clf = MaskClassifier.from_file(joined / classifier_export.TFLITE_NAME, threads=1)
    keras_p = ensemble.predict(x.astype(np.float32) / 255, verbose=0)[:, 0]
    assert np.abs(keras_p - np.array([clf.probability(img) for img in x])).max() < 0.06
