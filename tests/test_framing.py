"""The crop framing: each model file says where the eyes sit in its crop (metadata `framing`); the runtime cuts that
model's crop so, the classifier's in its own framing; pairs folders record theirs and a merge keeps them apart."""
import json

import numpy as np
import pytest

from mask2face.edge_runtime import align
from mask2face.edge_runtime.errors import Mask2FaceError, ModelFileError
from mask2face.edge_runtime.inpaint import Inpainter, aligned_crop
from mask2face.edge_runtime.tflite_file import check_metadata


def test_framings_put_the_eyes_where_they_say():
    for framing in (align.DEFAULT_FRAMING, align.WIDE_FRAMING):
        m = align.similarity_from_eyes((210.0, 180.0), (262.0, 186.0), 128, framing)
        eyes = align.transform_points(m, [(210.0, 180.0), (262.0, 186.0)])
        np.testing.assert_allclose(eyes, np.array(framing.eyes) * 128, atol=1e-9)
    assert align.DEFAULT_FRAMING.eyes == (align.CANONICAL_LEFT_EYE, align.CANONICAL_RIGHT_EYE)
    assert align.WIDE_FRAMING.eyes == ((0.375, 0.30), (0.625, 0.30))


def test_heights_given_for_the_default_framing_move_with_the_face():
    wide = align.WIDE_FRAMING
    assert align.DEFAULT_FRAMING.from_default_y(0.45) == 0.45                     # exactly: old recipes keep bytes
    assert wide.from_default_y(0.37) == pytest.approx(0.30)                      # the eye line
    # the chin, 1.9 eye distances below the eye line: at 0.94 of the default crop, 0.775 of the wide one
    assert wide.from_default_y(0.37 + 1.9 * 0.30) == pytest.approx(0.30 + 1.9 * 0.25)


def test_framing_of_metadata_reads_the_field_and_refuses_nonsense():
    assert align.framing_of({}) == align.DEFAULT_FRAMING
    assert align.framing_of({"framing": {"eye_line": 0.3, "eye_distance": 0.25}}) == align.WIDE_FRAMING
    for bad in ({"eye_line": 0.3}, {"eye_line": "high", "eye_distance": 0.25}, {"eye_line": 0.95, "eye_distance": 0.25}):
        with pytest.raises(ValueError):
            align.framing_of({"framing": bad})
        with pytest.raises(ModelFileError, match="framing"):
            check_metadata({"framing": bad})
    check_metadata({"framing": {"eye_line": 0.3, "eye_distance": 0.25}})


@pytest.fixture(scope="module")
def shipped():
    return Inpainter.from_file(threads=1)


def test_the_shipped_files_are_read_in_their_framing(shipped):
    # files made before the field existed carry none: the default framing they were trained on
    assert shipped.classifier.framing == align.framing_of(shipped.classifier.model.metadata)
    assert shipped.framing == align.framing_of(shipped.model.metadata)
    assert shipped.describe()["framing"] == shipped.framing.to_dict()
    assert shipped.classifier.crop_size == 128       # the shipped classifier's pairs were 128² (files without the field)


def test_each_model_sees_the_face_in_its_own_framing(shipped):
    """The inpainter gets its crop in its framing; the classifier the face cut in its own, whatever the model's."""
    from skimage import data
    image = data.astronaut()
    face = shipped.detector.detect(image)[0]
    _, model_crop = aligned_crop(image, face, shipped.size, shipped.framing)
    seen = shipped._decision_crop(image, face, model_crop)
    classifier = shipped.classifier
    _, classifier_crop = aligned_crop(image, face, classifier.crop_size, classifier.framing)
    assert np.array_equal(seen, classifier_crop)
    if (shipped.framing, shipped.size) == (classifier.framing, classifier.crop_size):
        assert seen is model_crop                    # one cut serves both
    # a model framed wider, at another size: the classifier still sees the face as it was calibrated
    wide = Inpainter.__new__(Inpainter)
    wide.classifier, wide.framing, wide.size = classifier, align.WIDE_FRAMING, 192
    _, wide_crop = aligned_crop(image, face, 192, align.WIDE_FRAMING)
    assert np.array_equal(wide._decision_crop(image, face, wide_crop), classifier_crop)


def _pairs_folder(path, framing=None):
    from mask2face.train import pairs
    rng = np.random.default_rng(0)
    for split in pairs.SPLITS:
        (path / split).mkdir(parents=True)
        n = 3
        pairs.write_shard(path / split / pairs.shard_name(0), rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8),
                          rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8),
                          np.zeros((n, 16, 16), np.uint8), [{"source": f"{split}{i}"} for i in range(n)])
    config = {"image_size": 16, **(framing or {})}
    (path / "dataset.json").write_text(json.dumps({"config": config, "image_size": 16}))
    return path


def test_pairs_folders_record_their_framing_and_merge_keeps_framings_apart(tmp_path):
    from mask2face.train import pairs
    old = _pairs_folder(tmp_path / "old")
    wide = _pairs_folder(tmp_path / "wide", {"eye_line": 0.3, "eye_distance": 0.25})
    wide2 = _pairs_folder(tmp_path / "wide2", {"eye_line": 0.3, "eye_distance": 0.25})
    assert pairs.data_framing(old) == {"eye_line": 0.37, "eye_distance": 0.30}   # made before the fields existed
    assert pairs.data_framing(tmp_path / "nowhere") == {"eye_line": 0.37, "eye_distance": 0.30}
    with pytest.raises(Mask2FaceError, match="frame their faces differently"):
        pairs.merge(tmp_path / "mixed", [old, wide], wide)
    assert not (tmp_path / "mixed").exists()
    info = pairs.merge(tmp_path / "merged", [wide, wide2], wide)
    assert info["crop"] == pairs.data_framing(tmp_path / "merged") == {"eye_line": 0.3, "eye_distance": 0.25}


def test_worn_masks_are_drawn_where_the_framing_puts_the_lower_face():
    from mask2face.train.mask_styles import worn_region
    s = 128
    inside = np.zeros((s, s), np.uint8)
    inside[80:120, 30:98] = 1
    for framing in (align.DEFAULT_FRAMING, align.WIDE_FRAMING):
        top = min(np.nonzero(worn_region(inside, np.random.default_rng(seed), framing))[0].min() for seed in range(40))
        # raised toward the eyes, never above a band just under them
        assert top >= int(framing.from_default_y(0.42) * s) - 6 * s // 128
