"""The shipped files agree with each other: the default asset is models/cpu's QAT export, models/cpu is one run of
today's preset('cpu'), and its Keras checkpoints give its .tflite files' outputs; the mask classifier asset is
models/mask-classifier's export of today's preset('mask-classifier').classifier."""
import json
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest

from mask2face import config
from mask2face.edge_runtime import inpaint
from mask2face.runs import sha256_file

REPO = Path(__file__).resolve().parents[1]
CPU = REPO / "models" / "cpu"


FULL = REPO / "models" / "cpu-full"


def test_shipped_assets_are_the_models_folders_qat_int8_exports():
    # the default since 0.6.0 is the full-resolution student; models/cpu (its teacher, and 0.5.0's default) stays
    assert sha256_file(inpaint.SHIPPED_MODELS["default"]) == sha256_file(FULL / "export" / "student-qat-int8.tflite")
    assert set(inpaint.SHIPPED_MODELS) == {"default"}            # one model; "mixed" is an alias of it
    manifest = json.loads((CPU / "export" / "manifest.json").read_text())
    listed = {Path(o["path"]).name: o["sha256"] for o in manifest["outputs"]}
    for f in sorted((CPU / "export").glob("*.tflite")):
        assert listed[f.name] == sha256_file(f), f"{f.name} is not the file its manifest lists"


def test_models_cpu_is_one_run_of_the_cpu_preset():
    # fields added since (config.FIELDS_ADDED_LATER) count at their "as before" value
    shipped = config.without_later_defaults(json.loads((CPU / "config.json").read_text()))
    today = config.without_later_defaults(json.loads(json.dumps(config.to_dict(config.preset("cpu")))))
    assert shipped == today, \
        "models/cpu/config.json differs from preset('cpu'): retrain, or say in models/cpu/README.md why not"
    # every export of the run carries the hash of that config (fields added since, at their "as before" value,
    # leave the hash alone: config.FIELDS_ADDED_LATER)
    from mask2face.edge_runtime.model import Model
    for f in sorted((CPU / "export").glob("*.tflite")):
        assert Model.from_file(f).metadata["config_hash"] == config.config_hash(config.preset("cpu")), f.name


def test_the_shipped_mask_classifier_is_one_run_of_its_preset():
    from mask2face.edge_runtime import mask_decision
    from mask2face.edge_runtime.model import Model
    folder = REPO / "models" / "mask-classifier"
    assert sha256_file(mask_decision.DEFAULT_CLASSIFIER) == sha256_file(folder / "mask_classifier-int8.tflite")
    preset = config.preset("mask-classifier").classifier
    shipped = config.without_later_defaults(json.loads((folder / "config.json").read_text()))["classifier"]
    assert shipped == _recipe("mask-classifier")["classifier"], \
        "models/mask-classifier/config.json differs from preset('mask-classifier').classifier: retrain or export again"
    meta = Model.from_file(mask_decision.DEFAULT_CLASSIFIER).metadata
    assert meta["config_hash"] == config.config_hash(preset) and meta["threshold"] == preset.threshold
    assert "non-commercial" in (folder / "README.md").read_text()
    # the members a run of the preset joins ship beside it, so the recipe runs from a fresh clone
    assert preset.members and all((REPO / m).is_file() for m in preset.members), preset.members
    # the faster one-network file the docs offer (`--classifier`) loads with its own threshold
    faster = mask_decision.MaskClassifier.from_file(folder / "member-worn-int8.tflite", threads=1)
    assert faster.threshold == 0.2 and faster.size == preset.input_size
    assert (folder / "member-worn-int8.tflite").stat().st_size < mask_decision.DEFAULT_CLASSIFIER.stat().st_size


@pytest.mark.slow
def test_shipped_keras_checkpoints_match_their_tflite_files():
    from mask2face.train import metrics
    from mask2face.compress.export import run_once
    from mask2face.compress.qat import load_qat_model
    from mask2face.train.models import load_model
    skimage_data = pytest.importorskip("skimage.data")
    import cv2
    face = cv2.resize(skimage_data.astronaut()[30:250, 120:340], (128, 128), interpolation=cv2.INTER_AREA)
    x = face.astype(np.float32) / 255
    student = load_model(CPU / "student.keras")
    fp32 = (CPU / "export" / "student-fp32.tflite").read_bytes()
    assert np.abs(run_once(fp32, x) - student(x[None]).numpy()[0]).max() < 1e-4
    qat = load_qat_model(CPU / "student-qat.keras")
    q8 = (CPU / "export" / "student-qat-int8.tflite").read_bytes()
    # the bound of test_export: the int8 file reproduces the fake-quant model within 30 dB PSNR
    assert metrics.psnr(run_once(q8, x)[..., :3], qat(x[None]).numpy()[0][..., :3]) > 30


@pytest.mark.parametrize("name", ["cpu-adversarial", "cpu-full"])
def test_the_other_students_are_one_run_of_their_presets(name):
    """The students in models/ beside the default are what `--preset NAME` makes, and their files agree (the
    manifest lists every export; the folder keeps the ones its card names)."""
    from mask2face.edge_runtime.model import Model
    folder = REPO / "models" / name
    shipped = config.without_later_defaults(json.loads((folder / "config.json").read_text()))
    assert shipped == _recipe(name), f"models/{name}/config.json differs from preset({name!r})"
    manifest = json.loads((folder / "export" / "manifest.json").read_text())
    listed = {Path(o["path"]).name: o["sha256"] for o in manifest["outputs"]}
    assert (folder / "export" / "student-qat-int8.tflite").is_file()
    for f in sorted((folder / "export").glob("*.tflite")):
        assert listed[f.name] == sha256_file(f), f"{f.name} is not the file its manifest lists"
        model = Model.from_file(f)
        assert model.metadata["config_hash"] == config.config_hash(config.preset(name)), f.name
        assert inpaint.model_blend(model) == inpaint.BlendConfig(), f.name   # the default paste, fields since at theirs
    shipped_sha = sha256_file(inpaint.SHIPPED_MODELS["default"])
    assert (shipped_sha == sha256_file(folder / "export" / "student-qat-int8.tflite")) == (name == "cpu-full")


@pytest.mark.slow
def test_the_shipped_models_keras_weights_are_its_int8_files_and_its_fp16_file_their_export():
    """models/cpu-full/student.keras is the QAT int8 file's weights back in float (compress/recover.py), and
    student-fp16.tflite is that model's float16 export."""
    from mask2face.compress.export import run_once
    from mask2face.train import metrics
    from mask2face.train.models import load_model
    skimage_data = pytest.importorskip("skimage.data")
    import cv2
    face = cv2.resize(skimage_data.astronaut()[30:250, 120:340], (128, 128), interpolation=cv2.INTER_AREA)
    x = face.astype(np.float32) / 255
    keras_out = load_model(FULL / "student.keras")(x[None]).numpy()[0]
    q8 = run_once((FULL / "export" / "student-qat-int8.tflite").read_bytes(), x)
    fp16 = run_once((FULL / "export" / "student-fp16.tflite").read_bytes(), x)
    assert metrics.psnr(keras_out[..., :3], q8[..., :3]) > 35
    assert metrics.psnr(fp16[..., :3], keras_out[..., :3]) > 50   # float16 weights: rounding only
    manifest = json.loads((FULL / "export" / "manifest.json").read_text())
    inputs = {Path(i["path"]).name: i["sha256"] for i in manifest["inputs"]}
    assert inputs["student.keras"] == sha256_file(FULL / "student.keras")
    assert {a["file"]: Path(a["parent"]).name for a in manifest["artifacts"]}["student-fp16.tflite"] == "student.keras"


@pytest.mark.slow
def test_the_adversarial_students_keras_checkpoint_matches_its_fp32_file():
    from mask2face.compress.export import run_once
    from mask2face.train.models import load_model
    skimage_data = pytest.importorskip("skimage.data")
    import cv2
    folder = REPO / "models" / "cpu-adversarial"
    face = cv2.resize(skimage_data.astronaut()[30:250, 120:340], (128, 128), interpolation=cv2.INTER_AREA)
    x = face.astype(np.float32) / 255
    student = load_model(folder / "student.keras")
    fp32 = (folder / "export" / "student-fp32.tflite").read_bytes()
    assert np.abs(run_once(fp32, x) - student(x[None]).numpy()[0]).max() < 1e-4


# Fields added after the 5-epoch teacher's students were made, with what each meant before it existed: their
# config.json files and stage manifests lack them.
BEFORE_THEY_EXISTED = {"composite_teacher": False, "blend_input": False, "stem_stride": 1, "calibrate_samples": 0,
                       "bare_share": 0.0, "degrade": 0.0, "init_from": ""}
# The sections each stage reads, by the `stage` its manifest names (distill and qat also serve bare and
# low-quality pairs by the train section's shares).
STAGE_SECTIONS = {"teacher": ("data", "teacher", "train"), "student": ("distill", "train.bare_share", "train.degrade"),
                  "qat": ("qat", "distill.student", "train.bare_share", "train.degrade"), "export": ("export",)}


def _as_recorded(tree: dict, like: dict) -> dict:
    """`tree` with the keys it lacks and `like` has filled in with what they meant before they existed."""
    out = dict(tree)
    for key, value in like.items():
        if key not in out and key in BEFORE_THEY_EXISTED:
            out[key] = BEFORE_THEY_EXISTED[key]
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _as_recorded(out[key], value)
    return out


def _recipe(name: str) -> dict:
    return config.without_later_defaults(json.loads(json.dumps(config.to_dict(config.preset(name)))))


def _starting_weights_aside(section):
    """The section with a non-empty train.init_from left out: it is a path, and the file it named then has moved
    (cpu-bare's teacher started from the 5-epoch teacher, which reports/teacher-state.json names by sha256)."""
    if isinstance(section, dict) and section.get("init_from"):
        return {k: v for k, v in section.items() if k != "init_from"}
    return section


def _section(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree[part]
    return tree


@pytest.mark.parametrize("name", ["cpu-m", "cpu-bare", "cpu-mixed"])
def test_each_comparison_model_is_its_preset(name):
    """models/cpu-m, cpu-bare and cpu-mixed (not shipped in the package) are what their presets make: config.json is
    the recipe, and each stage ran with its preset's sections (the manifests in reports/ and export/)."""
    folder = REPO / "models" / name
    recipe = _recipe(name)
    recipe.pop("preset")                     # the name: older runs were made as `--preset cpu` with overrides
    shipped = json.loads((folder / "config.json").read_text())
    shipped.pop("preset")
    assert config.without_later_defaults(_as_recorded(shipped, recipe)) == recipe, \
        f"models/{name}/config.json differs from preset({name!r}): change the preset or say why in its README"
    manifests = sorted(folder.glob("reports/*manifest.json")) + [folder / "export" / "manifest.json"]
    for path in manifests:
        manifest = json.loads(path.read_text())
        ran = config.without_later_defaults(_as_recorded(manifest["config"], recipe))
        for section in STAGE_SECTIONS[manifest["stage"]]:
            assert _starting_weights_aside(_section(ran, section)) == \
                _starting_weights_aside(_section(recipe, section)), f"{path.name}: {section}"
