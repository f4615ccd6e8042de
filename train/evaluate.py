"""`mask2face eval`: how well a model restores faces, next to the baselines, on the test split.

    mask2face eval --preset cpu                                   # RUN/teacher/best.keras on RUN/data test
    mask2face eval --preset cpu --model runs/cpu/export/student-int8.tflite

For every test pair it measures (with `mask2face.train.metrics`, the one definition everyone uses)
PSNR / SSIM / L1 over the whole image and over the true mask region, for
- `raw`: the model's RGB output as is,
- `composited`: model RGB where its predicted mask > 0.5, the input elsewhere,
- `blended`: what the runtime pastes: model RGB over the input with the runtime's feathered weight
  (edge_runtime.inpaint.feathered_alpha: the mask > 0.5, dilated and blurred; without the runtime's confidence gates),
- `masked_input`: the input itself (doing nothing), `telea` / `ns`: cv2.inpaint given the TRUE mask.
Identity preservation: dlib's face-recognition ResNet (face_recognition_models) embeds each result and the
truth; the report gives the mean embedding distance and the share of pairs below 0.6 (dlib's same-person
threshold). The 5 landmarks that align dlib's 150x150 chip are found once per pair on the truth image and reused
for every variant, so only appearance differs. Writes OUT/<model>.json and OUT/<model>_grid.png
(input | output | truth | TELEA | NS) of fixed samples, plus manifest.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from mask2face import runs
from mask2face.train import metrics, pairs
from mask2face.edge_runtime.align import DEFAULT_FRAMING, Framing
from mask2face.edge_runtime.errors import Mask2FaceError, ModelFileError

SAME_PERSON = 0.6           # dlib's documented threshold for the face-recognition ResNet
GRID_SAMPLES = 8
VARIANTS = ("raw", "composited", "blended", "masked_input", "telea", "ns")


# ----------------------------------------------------------------------------------------------------------------
# Predictors: Keras or .tflite -> fn(batch float32 [0,1] (B,S,S,3)) -> (B,S,S,C)
# ----------------------------------------------------------------------------------------------------------------

def keras_predictor(path: Path, batch_size: int = 16) -> tuple[Callable, dict]:
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow as tf

    from mask2face.train.models import load_model

    model = load_model(path)
    infer = tf.function(lambda x: model(x, training=False))

    def run(batch: np.ndarray) -> np.ndarray:
        outs = [infer(tf.constant(batch[i:i + batch_size])).numpy() for i in range(0, len(batch), batch_size)]
        return np.concatenate(outs)
    return run, {"kind": "keras", "input_size": list(model.input_shape[1:3]), "params": model.count_params()}


def tflite_predictor(path: Path, threads: int = 2) -> tuple[Callable, dict]:
    from mask2face.edge_runtime.model import Model

    m = Model.from_file(path, threads=threads)
    return m.run, {"kind": "tflite", "input_size": list(m.input_size), **m.describe()}


def load_predictor(path: Path) -> tuple[Callable, dict]:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model {path} not found: train one first (mask2face train) or pass --model PATH")
    if path.suffix == ".tflite":
        return tflite_predictor(path)
    if path.suffix in (".keras", ".h5"):
        return keras_predictor(path)
    raise ModelFileError(f"{path}: expected a .keras or .tflite file")


# ----------------------------------------------------------------------------------------------------------------
# Baselines, compositing, identity
# ----------------------------------------------------------------------------------------------------------------

def inpaint(masked_u8: np.ndarray, mask_u8: np.ndarray, method: str, radius: int = 3) -> np.ndarray:
    import cv2

    flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
    m = (mask_u8 > 127).astype(np.uint8) * 255
    return cv2.inpaint(np.ascontiguousarray(masked_u8), m, radius, flag)


class IdentityEmbedder:
    """dlib face-recognition ResNet on aligned crops (eyes at the canonical positions of edge_runtime.align)."""

    def __init__(self):
        import warnings

        import dlib
        with warnings.catch_warnings():  # face_recognition_models imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import face_recognition_models as frm

        self.dlib = dlib
        self.shape = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def landmarks(self, img_u8: np.ndarray, framing: Framing = DEFAULT_FRAMING):
        s = img_u8.shape[0]
        # A box like dlib's HOG detector gives for a face whose eyes sit at (0.35, 0.37) and (0.65, 0.37):
        # about 2.2 eye distances wide, its top a little above the eyebrows; the same box on the face in `framing`.
        if framing == DEFAULT_FRAMING:
            lo, hi = int(round(0.175 * s)), int(round(0.825 * s))
            return self.shape(img_u8, self.dlib.rectangle(lo, lo + int(0.03 * s), hi, hi + int(0.03 * s)))
        x0, x1 = (int(round(framing.from_default_x(x) * s)) for x in (0.175, 0.825))
        y0, y1 = (int(round(framing.from_default_y(y) * s)) for y in (0.205, 0.855))
        return self.shape(img_u8, self.dlib.rectangle(x0, y0, x1, y1))

    def embed(self, img_u8: np.ndarray, shape) -> np.ndarray:
        return np.asarray(self.net.compute_face_descriptor(np.ascontiguousarray(img_u8), shape, 0))


def _u8(img01: np.ndarray) -> np.ndarray:
    return (np.clip(img01, 0, 1) * 255 + 0.5).astype(np.uint8)


def make_grid(rows: list[list[np.ndarray]], labels: list[str]) -> np.ndarray:
    """uint8 RGB grid with a label strip on top."""
    import cv2

    s = rows[0][0].shape[0]
    pad = 2
    header = 18
    h = header + len(rows) * (s + pad) + pad
    w = len(labels) * (s + pad) + pad
    grid = np.full((h, w, 3), 255, np.uint8)
    for c, label in enumerate(labels):
        cv2.putText(grid, label, (pad + c * (s + pad) + 2, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            y, x = header + pad + r * (s + pad), pad + c * (s + pad)
            grid[y:y + s, x:x + s] = img
    return grid


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------

def evaluate(model_path: Path, data_dir: Path, split: str = "test", limit: int | None = None,
             identity: bool = True, batch: int = 32, grid_samples: int = GRID_SAMPLES) -> tuple[dict, np.ndarray]:
    """The report dict and the grid picture (uint8 RGB) for one model."""
    from tqdm import tqdm

    predict, info = load_predictor(model_path)
    try:
        data = pairs.load_split(data_dir, split, limit=limit or None)
    except FileNotFoundError as exc:
        raise Mask2FaceError(str(exc)) from None
    n, size = len(data["masked"]), data["masked"].shape[1]
    if list(info["input_size"]) != [size, size]:
        raise Mask2FaceError(f"model {model_path} takes {info['input_size']} inputs but the pairs in {data_dir} are "
                             f"{size}x{size}: evaluate on pairs of the model's size (mask2face data "
                             f"data.image_size={info['input_size'][0]})")
    embedder = IdentityEmbedder() if identity else None
    framing = Framing(**pairs.data_framing(data_dir))
    rows = {v: [] for v in VARIANTS}
    dists = {v: [] for v in VARIANTS}
    embeddings = {v: [] for v in ("truth",) + tuple(VARIANTS)}
    mask_iou = []
    grid_idx = set(np.linspace(0, n - 1, min(grid_samples, n)).round().astype(int).tolist())
    grid_rows = []
    t_model = 0.0
    t0 = time.perf_counter()
    for start in tqdm(range(0, n, batch), desc=f"eval {Path(model_path).name}", unit="batch", file=sys.stderr):
        sl = slice(start, min(start + batch, n))
        masked_u8, clean_u8, mask_u8 = data["masked"][sl], data["clean"][sl], data["mask"][sl]
        x = masked_u8.astype(np.float32) / 255
        tm = time.perf_counter()
        out = np.asarray(predict(x), np.float32)
        t_model += time.perf_counter() - tm
        for j in range(len(x)):
            truth = clean_u8[j]
            variants = {
                "raw": np.clip(out[j, ..., :3], 0, 1),
                "composited": np.clip(metrics.composite(x[j], out[j]), 0, 1),
                "blended": np.clip(metrics.blended(x[j], out[j]), 0, 1),
                "masked_input": x[j],
                "telea": inpaint(masked_u8[j], mask_u8[j], "telea").astype(np.float32) / 255,
                "ns": inpaint(masked_u8[j], mask_u8[j], "ns").astype(np.float32) / 255,
            }
            for name, img in variants.items():
                rows[name].append({**metrics.all_metrics(img, truth, mask_u8[j]),
                                   **metrics.look_metrics(img, truth, mask_u8[j])})
            if out.shape[-1] >= 4:
                pm, tmask = out[j, ..., 3] > 0.5, mask_u8[j] > 127
                union = np.logical_or(pm, tmask).sum()
                mask_iou.append(float(np.logical_and(pm, tmask).sum() / union) if union else 1.0)
            if embedder is not None:
                shape = embedder.landmarks(truth, framing)
                ref = embedder.embed(truth, shape)
                embeddings["truth"].append(ref)
                for name, img in variants.items():
                    emb = embedder.embed(_u8(img), shape)
                    embeddings[name].append(emb)
                    dists[name].append(float(np.linalg.norm(emb - ref)))
            if start + j in grid_idx:
                grid_rows.append([masked_u8[j], _u8(variants["raw"]), truth, _u8(variants["telea"]),
                                  _u8(variants["ns"])])
    report = {
        "model": str(model_path), "model_info": {k: v for k, v in info.items() if k != "source"},
        "data": str(data_dir), "split": split, "pairs": n, "image_size": size,
        "metrics": {v: metrics.summarize(rows[v]) for v in VARIANTS},
        "metric_definitions": "mask2face.train.metrics: PSNR/L1 over all pixels or mask pixels; SSIM 11x11 "
                              "Gaussian sigma 1.5 (valid region), masked SSIM = mean SSIM map over mask pixels",
        "look_metrics": "sharpness = mean |Laplacian| inside the mask over the truth's (1 = as sharp; noise counts as "
                        "detail); structure = mean |difference of Gaussians, sigma 1 and 2| there over the truth's "
                        "(lips, nostrils, creases; noise barely counts); blockiness = "
                        "share of pixel steps on a 2 px grid (1 = none, 2 = nearest-upsampled 2x); seam = gradient "
                        "across the mask border over the truth's (1 = as smooth)",
        "baselines": "masked_input = the input itself; telea/ns = cv2.inpaint radius 3 given the TRUE mask",
        "composited": "model RGB where predicted mask > 0.5, input elsewhere",
        "blended": "model RGB over the input with the runtime's feathered weight (inpaint.feathered_alpha, no gates)",
        "mask_iou": float(np.mean(mask_iou)) if mask_iou else None,
        "model_seconds_per_image": t_model / max(n, 1),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if embedder is not None:
        report["identity"] = {v: {"mean_distance": float(np.mean(dists[v])),
                                  "share_below_0.6": float(np.mean(np.asarray(dists[v]) < SAME_PERSON)),
                                  "frechet": metrics.frechet_distance(embeddings[v], embeddings["truth"])}
                              for v in VARIANTS}
        report["identity_note"] = ("dlib_face_recognition_resnet_model_v1 distance to the truth's embedding (same "
                                   "5 landmarks from the truth for every variant); < 0.6 = same person by dlib; "
                                   "frechet = Fréchet distance of the variant's descriptors to the truths' "
                                   "(train.metrics.frechet_distance; 0 = alike as populations)")
    labels = ["input", "output", "truth", "TELEA", "NS"]
    grid = make_grid(grid_rows, labels) if grid_rows else np.zeros((1, 1, 3), np.uint8)
    return report, grid


def _default_model(run_dir: Path) -> Path:
    for candidate in (run_dir / "teacher" / "best.keras", run_dir / "teacher" / "last.keras"):
        if candidate.is_file():
            return candidate
    raise ModelFileError(f"no trained model in {run_dir / 'teacher'}: run `mask2face train` first or pass --model")


def cli_main(cfg, args) -> int:
    import cv2

    from mask2face import config as config_mod

    cfg = cfg or config_mod.load("cpu")
    run_dir = runs.run_dir(cfg, args)
    data_dir = Path(getattr(args, "data", None) or run_dir / "data")
    model_path = Path(getattr(args, "model", None) or _default_model(run_dir))
    out_dir = Path(getattr(args, "out", None) or run_dir / "eval")
    split = getattr(args, "split", None) or "test"
    report, grid = evaluate(model_path, data_dir, split, limit=cfg.bench.eval_samples or None)
    stem = model_path.stem if model_path.parent.name in ("export", "") else f"{model_path.parent.name}-{model_path.stem}"
    report_path = runs.write_json(out_dir / f"{stem}.json", report)
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    grid_path = runs.write_bytes(out_dir / f"{stem}_grid.png", png.tobytes())
    runs.write_manifest(out_dir, stage="eval", config=config_mod.to_dict(cfg), inputs=[model_path],
                        outputs=[report_path, grid_path], parents=[str(data_dir)])
    m = report["metrics"]
    print(f"eval {model_path} on {report['pairs']} {split} pairs:")
    for v in VARIANTS:
        ident = report.get("identity", {}).get(v)
        extra = (f"  id dist {ident['mean_distance']:.3f} (<0.6: {ident['share_below_0.6']:.0%}, Fréchet "
                 f"{ident['frechet']:.4f})" if ident else "")
        look = m[v]
        extra += (f"  sharpness {look['sharpness']:.2f} structure {look['structure']:.2f} "
                  f"blockiness {look['blockiness']:.2f} seam {look['seam']:.2f}"
                  if "sharpness" in look else "")
        print(f"  {v:13s} PSNR {m[v]['psnr']:6.2f} (mask {m[v]['psnr_masked']:6.2f})  SSIM {m[v]['ssim']:.4f} "
              f"(mask {m[v]['ssim_masked']:.4f})  L1 {m[v]['l1']:.4f}{extra}")
    print(f"report: {report_path}  grid: {grid_path}")
    return 0
