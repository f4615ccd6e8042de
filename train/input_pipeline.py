"""Training input: pairs shards -> tf.data with a resumable, per-epoch deterministic order, and the augmentations
(flip, bare pairs, degraded photos, grown masks, worn-looking masks) that `PairsInput` applies."""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import math  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mask2face.edge_runtime import align  # noqa: E402
from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402
from mask2face.train import pairs  # noqa: E402
from mask2face.train.mask_styles import restyled  # noqa: E402


class DataError(Mask2FaceError):
    """No pairs, or pairs that do not fit the model."""


def _load_arrays(data_dir: Path, split: str, limit: int | None = None) -> dict[str, np.ndarray]:
    """Read a split's shards in parallel threads (np.load releases the GIL while reading)."""
    paths = pairs.shard_paths(data_dir, split)
    if not paths:
        raise DataError(f"no pairs in {Path(data_dir) / split}: run `mask2face data` first (or pass --data DIR)")
    with ThreadPoolExecutor(max_workers=4) as pool:
        shards = list(pool.map(pairs.read_shard, paths))
    out = {k: np.concatenate([s[k] for s in shards]) for k in ("masked", "clean", "mask")}
    if limit:
        out = {k: v[:limit] for k, v in out.items()}
    return out


def degradation(code: int) -> tuple[float, int]:
    """(downscale factor 0.3..1, JPEG quality 30..90) from a pair's augmentation code bytes."""
    return 0.3 + 0.7 * ((code >> 8) & 255) / 255.0, 30 + (60 * ((code >> 16) & 255)) // 255


def grow_mask(mask01: np.ndarray, radius: int) -> np.ndarray:
    """A (H, W) mask in [0,1] grown by `radius` pixels (grey-level dilation with a disc: a soft mask grows as the
    maximum over the disc). Used on training targets only, so the model learns to replace a band of skin around the
    mask as well: a real mask's rim and the shadow under it sit around where a synthetic mask's pixels end, where a
    mask channel trained on the exact edge says ~0.5, so a student that pastes by its own mask (blend_input) keeps
    about half of the rim: a dark or bright seam on real photos (distill.mask_grow; measured with 0.1.0)."""
    if radius <= 0:
        return mask01
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(np.ascontiguousarray(mask01, np.float32), disc)


def degrade_image(img01: np.ndarray, scale: float, quality: int) -> np.ndarray:
    """A float RGB image in [0,1] as a lower-quality photo of it: shrunk by `scale` and grown back (a small face
    from a far camera), then JPEG-compressed at `quality`. Real masked photos are often both; synthetic pairs are
    sharp and clean, so without this the mask detector learns sharp edges and clean noise as "mask"."""
    h, w = img01.shape[:2]
    u8 = np.clip(img01 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if scale < 0.999:
        small = cv2.resize(u8, (max(4, round(w * scale)), max(4, round(h * scale))), interpolation=cv2.INTER_AREA)
        u8 = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if ok:
        u8 = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return u8.astype(np.float32) * np.float32(1 / 255)


class PairsInput:
    """A split held in memory as uint8, served as batches (x, y) of float32 in [0,1].

    x = masked RGB (B,S,S,3); y = concat(clean RGB, mask, extra...) (B,S,S,4+E) — the packed targets of
    `mask2face.train.losses`. `extra` (N,S,S,E) float in [0,1] or uint8 0..255 (e.g. a cached teacher output)
    is appended per pair; `arrays` (dict masked/clean/mask) replaces reading `data_dir/split`.
    The order of epoch e is a permutation drawn from (seed, e), so `dataset(e, start_step)` can resume in the
    middle of an epoch without touching the skipped batches. Random horizontal flips are drawn with the order and
    applied to x and y together; so is the `bare_share` of pairs served as bare faces (x = clean, mask = 0, and
    clean RGB + mask 0 in place of extra targets: for a bare face the right output is the input itself). The last incomplete batch is dropped when shuffling (equal batches keep the graph
    to one trace and split evenly over replicas)."""

    def __init__(self, data_dir: Path | None, split: str, batch_size: int, *, flip: bool = False,
                 shuffle: bool = True, seed: int = 0, extra: np.ndarray | None = None, limit: int | None = None,
                 arrays: dict[str, np.ndarray] | None = None, bare_share: float = 0.0, degrade: float = 0.0,
                 mask_grow: float = 0.0, worn_mask_share: float = 0.0):
        self.arrays = arrays if arrays is not None else _load_arrays(Path(data_dir), split, limit)
        # the worn masks are drawn where the crop's framing puts the lower face
        self.framing = (align.Framing(**pairs.data_framing(Path(data_dir))) if data_dir is not None
                        else align.DEFAULT_FRAMING)
        self.split, self.batch_size, self.flip, self.shuffle, self.seed = split, int(batch_size), flip, shuffle, seed
        if not 0.0 <= bare_share < 1.0:
            raise DataError(f"bare_share={bare_share}: expected a share in [0, 1)")
        self.bare_share = float(bare_share)
        if not 0.0 <= degrade <= 1.0:
            raise DataError(f"degrade={degrade}: expected a share in [0, 1]")
        self.degrade = float(degrade)
        if not 0.0 <= mask_grow < 0.25:
            raise DataError(f"mask_grow={mask_grow}: expected a share of the crop side in [0, 0.25)")
        if not 0.0 <= worn_mask_share <= 1.0:
            raise DataError(f"worn_mask_share={worn_mask_share}: expected a share in [0, 1]")
        self.worn_mask_share = float(worn_mask_share)
        self.extra = extra
        n = len(self.arrays["masked"])
        if extra is not None and len(extra) != n:
            raise DataError(f"extra targets hold {len(extra)} items but the {split} split has {n} pairs")
        self.size = n
        self.image_size = int(self.arrays["masked"].shape[1])
        self.mask_grow_px = int(round(float(mask_grow) * self.image_size))
        self.target_channels = 4 + (0 if extra is None else int(extra.shape[-1]))
        # Masks are stored 0/255; a 0/1 mask (hand-made data) is already a probability.
        self._mask_scale = np.float32(1 / 255) if self.arrays["mask"].max(initial=0) > 1 else np.float32(1)
        if shuffle and n == 0:
            raise DataError(f"the {split} split has no pairs: run `mask2face data --faces DIR` on a folder of face "
                            "photos (its report.json says why files were skipped)")
        if shuffle and n < batch_size:
            raise DataError(f"the {split} split has {n} pairs, fewer than one batch of {batch_size}: make more "
                            f"pairs or lower this stage's batch size to {n} or less (train.batch_size, "
                            "distill.batch_size or qat.batch_size)")

    @property
    def steps_per_epoch(self) -> int:
        if self.shuffle:
            return self.size // self.batch_size
        return math.ceil(self.size / self.batch_size)

    FLIP, BARE, DEGRADE, WORN = 1, 2, 4, 8  # bits of the per-pair augmentation code; bits 8-15 and 16-23 hold
                                            # the degradation's two random bytes (scale, JPEG quality), bits 24-31
                                            # the worn mask's seed

    def order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(indices (steps, B), augmentation codes (steps, B) uint32: FLIP | BARE | DEGRADE | WORN bits, the
        degradation bytes and the worn mask's seed byte) of an epoch; a pure function of (seed, epoch). Draws are
        appended after the flips, so bare_share=0, degrade=0 and worn_mask_share=0 keep earlier runs' orders."""
        rng = np.random.default_rng([int(self.seed), int(epoch)])
        if not self.shuffle:
            idx = np.arange(self.size)
            return idx, np.zeros(self.size, np.uint32)
        steps = self.steps_per_epoch
        idx = rng.permutation(self.size)[: steps * self.batch_size].reshape(steps, self.batch_size)
        code = np.zeros(idx.shape, np.uint32)
        if self.flip:
            code |= (rng.random(idx.shape) < 0.5).astype(np.uint32) * self.FLIP
        if self.bare_share > 0:
            code |= (rng.random(idx.shape) < self.bare_share).astype(np.uint32) * self.BARE
        if self.degrade > 0:
            code |= (rng.random(idx.shape) < self.degrade).astype(np.uint32) * self.DEGRADE
            code |= rng.integers(0, 256, idx.shape, dtype=np.uint32) << 8
            code |= rng.integers(0, 256, idx.shape, dtype=np.uint32) << 16
        if self.worn_mask_share > 0:
            code |= (rng.random(idx.shape) < self.worn_mask_share).astype(np.uint32) * self.WORN
            code |= rng.integers(0, 256, idx.shape, dtype=np.uint32) << 24
        return idx, code

    def _gather(self, idx: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a = self.arrays
        x = a["masked"][idx]
        y = np.concatenate([a["clean"][idx], a["mask"][idx][..., None]], axis=-1)
        worn = np.flatnonzero(code & self.WORN)
        for i in worn:
            # the mask restyled as a worn one over the same face: the RGB targets stay, the mask target is what
            # now covers the face (half of them worn higher and wider)
            rng = np.random.default_rng([int(self.seed), int(idx[i]), int(code[i]) >> 24])
            x[i], y[i, ..., 3] = restyled(x[i], y[i, ..., :3], y[i, ..., 3], rng, reshape=0.5, framing=self.framing)
        xf = x.astype(np.float32) * np.float32(1 / 255)
        yf = y.astype(np.float32) * np.float32(1 / 255)
        yf[..., 3] = y[..., 3] * self._mask_scale
        if self.extra is not None:
            e = self.extra[idx].astype(np.float32)
            if self.extra.dtype == np.uint8:  # extra targets may be cached as uint8 to save memory
                e *= np.float32(1 / 255)
            yf = np.concatenate([yf, e], axis=-1)
        if len(worn) and yf.shape[-1] >= 8:
            # the teacher's mask channel covers at least the worn mask (its RGB there is kept: on skin the
            # teacher returns about the input, which is the truth)
            yf[worn, ..., 7] = np.maximum(yf[worn, ..., 7], yf[worn, ..., 3])
        if self.mask_grow_px:
            # the true mask and, when the extra targets are a teacher output with a mask channel, the teacher's
            mask_channels = (3, 7) if yf.shape[-1] >= 8 else (3,)
            for i in range(len(yf)):
                for c in mask_channels:
                    yf[i, ..., c] = grow_mask(yf[i, ..., c], self.mask_grow_px)
        for i in np.flatnonzero(code & self.DEGRADE):
            # The same low-quality photo for input and every RGB target: blur and JPEG carry no "mask" signal.
            scale, quality = degradation(int(code[i]))
            xf[i] = degrade_image(xf[i], scale, quality)
            yf[i, ..., :3] = degrade_image(yf[i, ..., :3], scale, quality)
            if yf.shape[-1] > 4:
                yf[i, ..., 4:7] = degrade_image(yf[i, ..., 4:7], scale, quality)
        bare = (code & self.BARE) > 0
        if bare.any():  # a bare face: the input is the truth, nothing is masked, the best output is the input
            xf[bare] = yf[bare][..., :3]
            yf[bare, ..., 3] = 0.0
            if yf.shape[-1] > 4:  # teacher targets: RGB (+ mask) laid out like the model output
                yf[bare, ..., 4:7] = yf[bare][..., :3]
                yf[bare, ..., 7:] = 0.0
        flips = (code & self.FLIP) > 0
        if flips.any():
            xf[flips] = xf[flips][:, :, ::-1]
            yf[flips] = yf[flips][:, :, ::-1]
        return xf, yf

    def dataset(self, epoch: int = 0, start_step: int = 0, input_context: tf.distribute.InputContext | None = None,
                ) -> tf.data.Dataset:
        """Batches of epoch `epoch` from `start_step` on. With an input_context (tf.distribute), each input
        pipeline gets its share of every global batch, already split into per-replica batches."""
        idx, codes = self.order(epoch)
        if not self.shuffle:  # evaluation order: plain consecutive batches, last one partial
            bounds = range(0, self.size, self.batch_size)
            rows = [(idx[i:i + self.batch_size], codes[i:i + self.batch_size]) for i in bounds][start_step:]
            gen_rows = rows
        else:
            idx, codes = idx[start_step:], codes[start_step:]
            if input_context is not None and (input_context.num_input_pipelines > 1
                                              or input_context.num_replicas_in_sync > 1):
                pipes, pid = input_context.num_input_pipelines, input_context.input_pipeline_id
                local = input_context.num_replicas_in_sync // pipes
                per_replica = input_context.get_per_replica_batch_size(self.batch_size)
                share = idx.shape[1] // pipes
                idx = idx[:, pid * share:(pid + 1) * share].reshape(-1, per_replica)
                codes = codes[:, pid * share:(pid + 1) * share].reshape(-1, per_replica)
                assert local * per_replica == share
            gen_rows = list(zip(idx, codes))
        size, channels = self.image_size, self.target_channels
        if not gen_rows:
            return tf.data.Dataset.from_tensor_slices(
                (np.zeros((0, 0, size, size, 3), np.float32), np.zeros((0, 0, size, size, channels), np.float32)))
        if self.shuffle:
            rows_ds = tf.data.Dataset.from_tensor_slices((np.stack([r[0] for r in gen_rows]),
                                                          np.stack([r[1] for r in gen_rows])))
        else:  # ragged last batch: one element per row via a generator of index arrays
            rows_ds = tf.data.Dataset.from_generator(
                lambda: iter(gen_rows), output_signature=(tf.TensorSpec([None], tf.int64),
                                                          tf.TensorSpec([None], tf.uint32)))

        def load(i, code):
            x, y = tf.numpy_function(self._gather, [i, code], (tf.float32, tf.float32), stateful=False)
            x.set_shape([None, size, size, 3])
            y.set_shape([None, size, size, channels])
            return x, y

        ds = rows_ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        options = tf.data.Options()
        # The sharding is done above (per pipeline); tf.distribute must not shard again.
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
