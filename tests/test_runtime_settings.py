"""A model file carries the paste settings it was tuned with (metadata `runtime.blend`), and `Inpainter` uses them
unless told otherwise: another model brings its own (edge_runtime.inpaint.model_blend)."""
import dataclasses
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest

from mask2face.benchmarks.web_bench import astronaut_with_drawn_mask
from mask2face.edge_runtime import inpaint, tflite_file
from mask2face.edge_runtime.errors import ModelFileError
from mask2face.edge_runtime.inpaint import BlendConfig, Inpainter, runtime_settings

SHIPPED = inpaint.SHIPPED_MODELS["default"]


def _with_runtime(tmp_path, runtime) -> str:
    """The shipped model with its `runtime` metadata field set to `runtime` (None: the field removed)."""
    from mask2face.compress import tflite_metadata

    data = SHIPPED.read_bytes()
    meta = dict(tflite_file.parse(data).mask2face_metadata())
    meta.pop("runtime", None)
    if runtime is not None:
        meta["runtime"] = runtime
    path = tmp_path / "model.tflite"
    path.write_bytes(tflite_metadata.embed(data, meta))
    assert tflite_metadata.weight_buffers(path.read_bytes()) == tflite_metadata.weight_buffers(data)
    return str(path)


def test_the_shipped_model_carries_this_versions_paste_settings():
    """Every setting the file names holds this version's default; the fields added since it was made (which it
    does not name) take their defaults too."""
    meta = tflite_file.parse(SHIPPED.read_bytes()).mask2face_metadata()
    defaults = runtime_settings()["blend"]
    assert defaults == dataclasses.asdict(BlendConfig())
    assert meta["runtime"]["blend"] == {k: defaults[k] for k in meta["runtime"]["blend"]}
    assert set(defaults) - set(meta["runtime"]["blend"]) <= {"min_eye_spacing", "chroma_limit", "refine_min_probability",
                                                           "mirror_views"}
    assert Inpainter.from_file().blend == BlendConfig()


@pytest.fixture(scope="module")
def masked_astronaut():
    return astronaut_with_drawn_mask()[1]


def test_a_file_without_the_settings_pastes_as_the_shipped_one(tmp_path, masked_astronaut):
    plain = Inpainter.from_file(_with_runtime(tmp_path, None))
    assert plain.blend == BlendConfig()
    ours = Inpainter.from_file().remove_detailed(masked_astronaut)
    theirs = plain.remove_detailed(masked_astronaut)
    assert ours.pasted == theirs.pasted == 1 and np.array_equal(ours.image, theirs.image)


def test_a_model_brings_its_own_settings_and_the_caller_can_replace_fields(tmp_path, masked_astronaut):
    path = _with_runtime(tmp_path, {"blend": {"min_confidence": 1.01, "a_field_of_a_later_version": 3}})
    strict = Inpainter.from_file(path)
    assert strict.blend == dataclasses.replace(BlendConfig(), min_confidence=1.01)
    res = strict.remove_detailed(masked_astronaut)
    assert res.pasted == 0 and res.faces[0].reason.startswith("weak mask")
    assert np.array_equal(res.image, masked_astronaut)
    assert Inpainter.from_file(path, blend={"min_confidence": 0.7}).remove_detailed(masked_astronaut).pasted == 1
    assert Inpainter.from_file(path, blend=BlendConfig()).blend == BlendConfig()


def test_a_file_carries_the_decisions_switch_as_true_or_false(tmp_path):
    """Exports write every BlendConfig field, the switch mirror_views as a JSON boolean; it loads as such."""
    for value in (True, False):
        path = _with_runtime(tmp_path, {"blend": {**dataclasses.asdict(BlendConfig()), "mirror_views": value}})
        assert Inpainter.from_file(path, classifier=None).blend.mirror_views is value


@pytest.mark.parametrize("runtime, field", [({"blend": {"feather": "wide"}}, "runtime.blend.feather"),
                                            ({"blend": {"dilate": True}}, "runtime.blend.dilate"),
                                            ({"blend": {"mirror_views": 1}}, "runtime.blend.mirror_views"),
                                            ({"blend": [0.1]}, "runtime.blend is not an object"),
                                            ("fast", "runtime is not an object")])
def test_settings_that_are_not_numbers_are_refused_with_the_field_named(tmp_path, runtime, field):
    with pytest.raises(ModelFileError, match=field.replace(".", r"\.")):
        Inpainter.from_file(_with_runtime(tmp_path, runtime))
