"""Training throughput: images/s of full training steps (forward + backward + Adam) of the presets' teachers.

    python -m mask2face.benchmarks.train_throughput benchmarks/results/train_throughput.json "cpu:16:5" "paper:2:2"

Each spec is PRESET:BATCH:STEPS[:OVERRIDES] (overrides comma-separated, `;` for a comma inside one); the default
is cpu:16:10 paper:2:3. Rows are appended to OUT.json (default benchmarks/results/train_throughput.json).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from tqdm import tqdm  # noqa: E402

from mask2face import config as config_mod, runs  # noqa: E402


def measure_throughput(model_cfg, train_cfg, image_size: int, batch_size: int, steps: int = 10,
                       warmup: int = 2) -> dict[str, Any]:
    """Images/s of full training steps (forward + backward + Adam) of a fresh model on random data."""
    from mask2face.train.losses import build_loss
    from mask2face.train.models import build_model, count_macs

    model = build_model(model_cfg, image_size)
    loss = build_loss(train_cfg, model_cfg.predict_mask)
    opt = keras.optimizers.Adam(1e-3)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch_size, image_size, image_size, 3), np.float32))
    y = tf.constant(np.concatenate([rng.random((batch_size, image_size, image_size, 3)),
                                    rng.random((batch_size, image_size, image_size, 1)) > 0.5], -1), tf.float32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss(y, model(x, training=True)))
        opt.apply_gradients(zip(tape.gradient(value, model.trainable_variables), model.trainable_variables))
        return value

    for _ in range(warmup):
        step().numpy()
    load_before = os.getloadavg()[0]
    times = []
    for _ in tqdm(range(steps), desc=f"throughput {image_size}px b{batch_size}", file=sys.stderr):
        t0 = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    return {"arch": model_cfg.arch, "filters": list(model_cfg.filters), "kernels": list(model_cfg.kernels),
            "image_size": image_size, "batch_size": batch_size, "steps": steps, "params": model.count_params(),
            "gmac_forward_per_image": round(count_macs(model) / 1e9, 3),
            "step_s_median": round(median, 4), "images_per_s": round(batch_size / median, 2),
            "loss": train_cfg.loss, "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            # The machine is shared: the 1-minute load average says how contended the figure is (2 cores).
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m mask2face.benchmarks.train_throughput",
                                description="Training images/s of the presets' teachers (random data).")
    p.add_argument("out", nargs="?", type=Path, default=Path("benchmarks/results/train_throughput.json"),
                   help="JSON file the rows are added to")
    p.add_argument("specs", nargs="*", default=["cpu:16:10", "paper:2:3"],
                   help="PRESET:BATCH:STEPS[:OVERRIDES] (default: cpu:16:10 paper:2:3)")
    args = p.parse_args(argv)
    out, specs = args.out, args.specs
    rows = []
    for spec in specs:
        parts = spec.split(":")
        name, batch, steps = parts[0], int(parts[1]), int(parts[2])
        overrides = parts[3].split(",") if len(parts) > 3 and parts[3] else []
        cfg = config_mod.load(name, [o.replace(";", ",") for o in overrides])
        row = measure_throughput(cfg.teacher, cfg.train, cfg.data.image_size, batch, steps,
                                 warmup=1 if steps <= 3 else 2)
        row.update({"preset": name, "overrides": overrides, "machine": runs.machine_info(),
                    "versions": runs.package_versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    existing = runs.read_json(out, {"rows": []}) or {"rows": []}
    existing["rows"] = existing.get("rows", []) + rows
    existing["note"] = ("training throughput (forward+backward+Adam, random data, median step) of teacher "
                        "configs; made by `python -m mask2face.benchmarks.train_throughput`")
    runs.write_json(out, existing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
