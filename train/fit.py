"""`mask2face train`: RUN/data -> RUN/teacher, the teacher U-Net trained by the generic loop.

    mask2face train --preset cpu                       # RUN/data -> RUN/teacher; run it again to resume
    mask2face train --preset smoke --run /tmp/r train.epochs=1 --strategy mirrored

The loop it runs, and distill and qat with it, is train/loop.py (its guarantees: resumable, atomic, NaN-guarded,
tf.distribute); the input pipeline train/input_pipeline.py; what goes to disk train/checkpoints.py. The names
they had here (PairsInput, fit_model, ...) are still importable from this module.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import tf_keras as keras  # noqa: E402

from mask2face import config as config_mod, runs  # noqa: E402
from mask2face.train.checkpoints import (copy_weights, data_fingerprint, run_key, save_model,  # noqa: E402,F401
                                         save_on_every_worker, write_log_csv)
from mask2face.train.input_pipeline import DataError, PairsInput, degradation, degrade_image, grow_mask  # noqa: E402,F401
from mask2face.train.loop import (WARMUP_STEPS_EXCLUDED, FitResult, TrainingDivergedError, fit_model,  # noqa: E402,F401
                                  is_chief, make_optimizer, make_strategy)


def cli_main(cfg, args) -> int:
    """`mask2face train`: RUN/data -> RUN/teacher (best.keras, last.keras, state.json, logs, manifest)."""
    from mask2face.train.losses import build_loss
    from mask2face.train.models import build_model

    cfg = cfg or config_mod.load("cpu")
    run_dir = runs.run_dir(cfg, args)
    data_dir = Path(getattr(args, "data", None) or run_dir / "data")
    out_dir = Path(getattr(args, "out", None) or run_dir / "teacher")
    tc = cfg.train
    strategy = make_strategy(getattr(args, "strategy", None) or tc.strategy)  # before other TF work
    keras.utils.set_random_seed(tc.seed)

    print(f"train: loading pairs from {data_dir}", file=sys.stderr)
    train_in = PairsInput(data_dir, "train", tc.batch_size, flip=tc.flip, shuffle=True, seed=tc.seed,
                          bare_share=tc.bare_share, degrade=tc.degrade)
    try:
        val_in = PairsInput(data_dir, "val", tc.batch_size, shuffle=False)
    except DataError:
        val_in = None
        print(f"train: no validation pairs in {data_dir / 'val'}; best.keras follows the last epoch",
              file=sys.stderr)
    size = train_in.image_size
    if size != cfg.data.image_size:
        print(f"train: note: pairs are {size}x{size} but data.image_size={cfg.data.image_size}; "
              f"the model is built for {size}", file=sys.stderr)
    with strategy.scope():
        model = build_model(cfg.teacher, size)
        if tc.init_from:
            copy_weights(Path(tc.init_from), model)
            print(f"train: starting from the weights of {tc.init_from}", file=sys.stderr)
    loss = build_loss(tc, cfg.teacher.predict_mask)
    if is_chief(strategy):
        out_dir.mkdir(parents=True, exist_ok=True)
        if not (run_dir / "config.json").exists():
            runs.init_run(run_dir, config_mod.to_dict(cfg))
        runs.write_json(out_dir / "config.json", config_mod.to_dict(cfg))
    print(f"train: {train_in.size} training pairs, {val_in.size if val_in else 0} validation pairs, "
          f"{size}x{size}, {model.count_params():,} parameters, {strategy.num_replicas_in_sync} replica(s)",
          file=sys.stderr)
    settings = {"teacher": config_mod.to_dict(cfg.teacher), "train": config_mod.to_dict(tc), "image_size": size,
                "train_pairs": train_in.size, "data": data_fingerprint(data_dir),
                "init_from_sha256": runs.sha256_file(Path(tc.init_from)) if tc.init_from else None}
    settings["train"].pop("strategy", None)  # a resume may use another strategy
    result = fit_model(model, train_in, val_in, loss, out_dir, epochs=tc.epochs, learning_rate=tc.learning_rate,
                       schedule=tc.lr_schedule, steps_per_epoch=tc.steps_per_epoch, strategy=strategy,
                       checkpoint_minutes=float(getattr(args, "checkpoint_minutes", None) or 5.0),
                       checkpoint_steps=int(getattr(args, "checkpoint_steps", None) or 0), settings=settings,
                       name="train", adversarial=tc.adversarial)
    if is_chief(strategy):
        outputs = [out_dir / n for n in ("best.keras", "last.keras", "state.json", "train_report.json", "log.csv")]
        runs.write_manifest(out_dir, stage="teacher", config=config_mod.to_dict(cfg),
                            inputs=[data_dir / "dataset.json"] if (data_dir / "dataset.json").exists() else
                            [str(data_dir)], outputs=outputs,
                            parents=[str(data_dir)] + ([tc.init_from] if tc.init_from else []),
                            extra={"result": result.as_dict()})
    ips = f"{result.images_per_s:.1f} images/s" if result.images_per_s else "throughput n/a"
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    print(f"train: done {result.epochs_done}/{tc.epochs} epochs, best val loss {best}, {ips}; "
          f"model in {out_dir / 'best.keras'}")
    return 0
