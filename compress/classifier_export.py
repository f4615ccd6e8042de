"""`mask2face classifier`: train the per-face mask classifier (train/mask_classifier.py), then export it as the
full-integer int8 .tflite the runtime loads (edge_runtime/mask_decision.py), with its metadata.

    mask2face classifier --preset cpu --data runs/cpu/data --data runs/celeba/data   # -> RUN/classifier/
    mask2face classifier --preset cpu --export-only classifier.threshold=0.6         # the same model, new threshold
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402

from mask2face import runs  # noqa: E402
from mask2face.compress import tflite_metadata  # noqa: E402
from mask2face.edge_runtime.mask_decision import TASK  # noqa: E402
from mask2face.edge_runtime.align import DEFAULT_FRAMING  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402
from mask2face.train import mask_classifier as mc  # noqa: E402
from mask2face.train import pairs  # noqa: E402

TFLITE_NAME = "mask_classifier-int8.tflite"


def pairs_crop_size(data_dir: Path) -> int:
    """The side of a pairs folder's crops: what the classifier was calibrated on before downscaling."""
    try:
        return int(pairs.dataset_info(data_dir)["image_size"])
    except (OSError, KeyError, ValueError):   # hand-made pairs without dataset.json: the shards say
        return int(pairs.read_shard(pairs.shard_paths(data_dir, "train")[0])["masked"].shape[1])


def export(model, rep_images: np.ndarray, out_path: Path, cfg, framing_from: Path | None = None, **extra) -> bytes:
    """Full-integer int8 .tflite (float32 in and out, like the inpainting exports) with `mask2face` metadata that
    the runtime reads: task, input size, threshold, and the framing of the crops it was trained on (that of the
    pairs folder `framing_from`; None: the default)."""
    import tensorflow as tf

    c = cfg.classifier
    concrete = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1, c.input_size, c.input_size, 3), tf.float32))
    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]

    def rep():
        for img in rep_images:
            yield [img[None].astype(np.float32) / 255.0]

    conv.representative_dataset = rep
    content = conv.convert()
    meta = tflite_metadata.build_metadata(
        name="mask_classifier", precision="int8", input_size=(c.input_size, c.input_size),
        output_channels=("mask_probability",), task=TASK, threshold=float(c.threshold),
        crop="an eye-aligned face crop in `framing`, area-downscaled to input_size",
        framing=pairs.data_framing(framing_from) if framing_from else DEFAULT_FRAMING.to_dict(),
        crop_size=pairs_crop_size(framing_from) if framing_from else 128,
        **extra)
    content = tflite_metadata.embed(content, meta)
    runs.write_bytes(out_path, content)
    return content


def cli_main(cfg, args) -> int:
    from mask2face import config as config_mod

    run_dir = Path(args.run)
    data_dirs = [Path(d) for d in (args.data or [run_dir / "data"])]
    out_dir = Path(args.out or run_dir / "classifier")
    if args.export_only:
        import tf_keras as keras
        model = keras.models.load_model(out_dir / "calibrated.keras")
        report = json.loads((out_dir / "train_report.json").read_text())
    else:
        report = mc.train(cfg, data_dirs, out_dir, limit=args.limit)
        import tf_keras as keras
        model = keras.models.load_model(out_dir / "calibrated.keras")
    rep, _ = mc.load_examples(data_dirs, "train", cfg.classifier, limit=200)
    rep = rep[np.random.default_rng(0).permutation(len(rep))[:200]]
    target = out_dir / TFLITE_NAME
    framings = {json.dumps(pairs.data_framing(d), sort_keys=True) for d in data_dirs}
    if len(framings) > 1:
        raise Mask2FaceError(f"the pairs folders {[str(d) for d in data_dirs]} frame their faces differently: "
                             "train a classifier on folders made with the same data.eye_line and data.eye_distance")
    export(model, rep, target, cfg, framing_from=data_dirs[0], config_hash=config_mod.config_hash(cfg.classifier),
           temperature=report["temperature"],
           trained_on=[str(d) for d in data_dirs])
    runs.write_manifest(out_dir, stage="classifier", config=config_mod.to_dict(cfg), inputs=[str(d) for d in data_dirs],
                        outputs=[target, out_dir / "calibrated.keras"], extra={"report": report})
    print(f"classifier: {target} ({target.stat().st_size} bytes), val AUC {report['val_auc']:.4f}, "
          f"temperature {report['temperature']:.2f}, threshold {cfg.classifier.threshold}")
    return 0
