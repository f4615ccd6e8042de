"""The per-face mask decision: the shipped classifier on a bare and a masked astronaut, faces below the threshold
copied through byte for byte, the probability in every report and summary, and the classifier's own checks."""
import json
import subprocess

import cv2
import numpy as np
import pytest

from mask2face.edge_runtime import mask_decision
from mask2face.edge_runtime.errors import ModelFileError
from mask2face.edge_runtime.inpaint import BlendConfig, Inpainter, aligned_crop
from mask2face.edge_runtime.mask_decision import MaskClassifier
from test_inpaint import astronaut_with_drawn_mask


@pytest.fixture(scope="module")
def inpainter():
    return Inpainter.from_file(threads=1)


def generated_mask_astronaut(kind: str = "surgical", seed: int = 3) -> np.ndarray:
    """The astronaut wearing a mask drawn by the training data generator (dlib landmarks, as `mask2face data`)."""
    pytest.importorskip("dlib")
    from mask2face.demo import _astronaut_landmarks
    from mask2face.train import masks
    image, lm = _astronaut_landmarks()
    masked, _, _ = masks.render(image, lm, kind, seed)
    return masked


def test_the_decision_goes_the_right_way_on_a_bare_and_a_masked_astronaut(inpainter):
    bare, drawn, _ = astronaut_with_drawn_mask(inpainter.detector)
    threshold = inpainter.classifier.threshold
    p = {}
    for name, photo in (("bare", bare), ("drawn", drawn), ("surgical", generated_mask_astronaut("surgical")),
                        ("cloth", generated_mask_astronaut("cloth", 5))):
        res = inpainter.remove_detailed(photo)
        p[name] = res.faces[0].mask_probability
        assert res.faces[0].pasted == (name != "bare"), (name, res.faces[0].to_dict())
    assert p["bare"] < threshold <= min(p["drawn"], p["surgical"], p["cloth"]), p


def test_a_face_below_the_threshold_is_copied_through_and_the_model_never_runs(inpainter):
    _, masked, _ = astronaut_with_drawn_mask(inpainter.detector)
    strict = Inpainter(inpainter.model, inpainter.detector, BlendConfig(min_mask_probability=1.0),
                       inpainter.classifier)
    res = strict.remove_detailed(masked)
    assert res.image is masked and res.invokes == 0 and res.pasted == 0
    face = res.faces[0]
    assert face.reason.startswith("no mask (mask probability") and face.mask_probability < 1.0
    assert face.to_dict()["mask_probability"] == round(face.mask_probability, 4)
    # without a classifier every face goes to the model, as before the decision existed
    res = Inpainter(inpainter.model, inpainter.detector).remove_detailed(masked)
    assert res.invokes == 1 and res.faces[0].mask_probability is None


def test_a_face_scored_bare_on_its_first_eyes_skips_the_closer_look_and_keeps_its_decision(inpainter, monkeypatch):
    """refine_min_probability: the bare astronaut is decided on CenterFace's eyes (no BlazeFace closer look), with
    the probability of that crop; the masked one is still refined and restored; 0 refines both, as before."""
    bare, masked, _ = astronaut_with_drawn_mask(inpainter.detector)
    looks = []
    real = inpainter.detector.refined
    monkeypatch.setattr(inpainter.detector, "refined", lambda image, face: looks.append(face) or real(image, face))
    res = inpainter.remove_detailed(bare)
    assert not looks and res.image is bare and res.invokes == 0
    face = res.faces[0]
    assert face.mask_probability < inpainter.blend.refine_min_probability and face.reason.startswith("no mask")
    assert res.timings["mask_decision"] > 0 and res.timings["detection"] > 0
    res = inpainter.remove_detailed(masked)
    assert len(looks) == 1 and res.faces[0].pasted
    always = Inpainter(inpainter.model, inpainter.detector, BlendConfig(refine_min_probability=0.0),
                       inpainter.classifier)
    res = always.remove_detailed(bare)
    assert len(looks) == 2 and not res.faces[0].pasted and res.image is bare


def test_the_threshold_comes_from_the_classifier_unless_given(inpainter):
    assert inpainter.mask_threshold == inpainter.classifier.threshold
    assert 0.0 < inpainter.classifier.threshold < 1.0
    assert Inpainter(inpainter.model, inpainter.detector, BlendConfig(min_mask_probability=0.3),
                     inpainter.classifier).mask_threshold == 0.3
    assert inpainter.describe()["mask_classifier"]["threshold"] == inpainter.classifier.threshold


def test_the_classifier_takes_any_crop_size_and_refuses_other_models(inpainter):
    clf = inpainter.classifier
    crop = np.full((128, 128, 3), 120, np.uint8)
    assert clf.input_crop(crop).shape == (clf.size, clf.size, 3)
    assert 0.0 <= clf.probability(crop) <= 1.0
    with pytest.raises(ModelFileError, match="not a mask classifier"):
        MaskClassifier(inpainter.model)
    with pytest.raises(ModelFileError, match="not a mask classifier"):
        Inpainter.from_file(threads=1, classifier=mask_decision.ASSETS / "mask2face_default.tflite")


def test_remove_writes_the_probability_into_the_summary_and_keeps_bare_photos_byte_for_byte(tmp_path):
    bare, masked, _ = astronaut_with_drawn_mask()
    (tmp_path / "in").mkdir()
    for name, img in (("bare.png", bare), ("masked.png", masked)):
        cv2.imwrite(str(tmp_path / "in" / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    r = subprocess.run(["mask2face", "remove", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--threads", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    records = {r["file"].rsplit("/", 1)[-1]: r for r in summary["records"]}
    threshold = summary["model"]["mask_threshold"]
    assert records["bare.png"]["status"] == "no-mask"
    assert records["bare.png"]["faces"][0]["mask_probability"] < threshold
    assert records["masked.png"]["status"] == "ok"
    assert records["masked.png"]["faces"][0]["mask_probability"] >= threshold
    assert (tmp_path / "out" / "in" / "bare.png").read_bytes() == (tmp_path / "in" / "bare.png").read_bytes()
    # --mask-threshold 1 leaves the masked photo alone too; --classifier none restores it by the model's mask alone
    for flags, status in ((["--mask-threshold", "1"], "no-mask"), (["--classifier", "none"], "ok")):
        out = tmp_path / f"out-{flags[1]}"
        r = subprocess.run(["mask2face", "remove", str(tmp_path / "in" / "masked.png"), "--out", str(out),
                            "--threads", "1", *flags], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads((out / "summary.json").read_text())["records"][0]["status"] == status


def test_mixed_is_an_alias_of_the_default_with_a_note(capsys):
    from mask2face.edge_runtime import inpaint
    assert inpaint.shipped_model("mixed") == inpaint.DEFAULT_MODEL
    assert "'mixed' is now the default model" in capsys.readouterr().err


def test_combined_is_the_geometric_mean_of_the_views_and_nan_or_zero_wins():
    from scipy.stats import gmean
    views = [0.9, 0.4, 0.75, 0.05]
    assert mask_decision.combined(views) == pytest.approx(float(gmean(views)), rel=1e-12)
    assert mask_decision.combined([0.3]) == pytest.approx(0.3)
    assert mask_decision.combined([0.9, 0.0]) == 0.0
    assert np.isnan(mask_decision.combined([0.9, float("nan")])) and np.isnan(mask_decision.combined([]))


def test_the_mirrored_probability_is_the_classifier_on_the_mirrored_crop(inpainter):
    clf = inpainter.classifier
    _, masked, _ = astronaut_with_drawn_mask(inpainter.detector)
    face = inpainter.detector.detect(masked)[0]
    _, crop = aligned_crop(masked, face, inpainter.size)
    assert clf.probability(crop, mirrored=True) == clf.probability(np.ascontiguousarray(crop[:, ::-1]))


def test_the_decision_is_the_geometric_mean_of_the_crop_its_mirror_and_its_first_eyes_views(inpainter, monkeypatch):
    """mirror_views: every probability the classifier gave for the face (the screening's crop on the first eyes and
    its mirror, the refined crop and its mirror) enters the face's probability; False: the refined crop alone."""
    _, masked, _ = astronaut_with_drawn_mask(inpainter.detector)
    seen = []
    real = inpainter.classifier.probability
    monkeypatch.setattr(inpainter.classifier, "probability",
                        lambda crop, mirrored=False: seen.append(real(crop, mirrored)) or seen[-1])
    p = inpainter.remove_detailed(masked).faces[0].mask_probability
    assert len(seen) == 4 and p == pytest.approx(mask_decision.combined(seen), abs=1e-12)
    seen.clear()
    single = Inpainter(inpainter.model, inpainter.detector, BlendConfig(mirror_views=False), inpainter.classifier)
    p = single.remove_detailed(masked).faces[0].mask_probability
    assert len(seen) == 2 and p == seen[-1]   # the screening's crop, then the refined one decides alone
    seen.clear()
    unscreened = Inpainter(inpainter.model, inpainter.detector, BlendConfig(refine_min_probability=0.0),
                           inpainter.classifier)
    p = unscreened.remove_detailed(masked).faces[0].mask_probability
    assert len(seen) == 2 and p == pytest.approx(mask_decision.combined(seen), abs=1e-12)


def test_with_the_gate_open_the_screening_still_runs_at_its_own_threshold(inpainter, monkeypatch):
    """gate_bench records every face with the threshold at 0 and sets `screening_threshold` to the classifier's:
    the faces then get the same four views as in the shipped runtime; without it the screening is off (two)."""
    _, masked, _ = astronaut_with_drawn_mask(inpainter.detector)
    seen = []
    real = inpainter.classifier.probability
    monkeypatch.setattr(inpainter.classifier, "probability",
                        lambda crop, mirrored=False: seen.append(real(crop, mirrored)) or seen[-1])
    opened = Inpainter(inpainter.model, inpainter.detector, BlendConfig(min_mask_probability=0.0),
                       inpainter.classifier)
    assert opened.remove_detailed(masked).faces[0].pasted and len(seen) == 2
    seen.clear()
    opened.screening_threshold = inpainter.classifier.threshold
    p = opened.remove_detailed(masked).faces[0].mask_probability
    assert len(seen) == 4 and p == pytest.approx(mask_decision.combined(seen), abs=1e-12)
    assert p == pytest.approx(inpainter.remove_detailed(masked).faces[0].mask_probability, abs=1e-12)
