"""An adversarial term for `fit_model`: a patch discriminator that sees the restored region in its context.

    mask2face distill --preset cpu-adversarial   # the shipped student fine-tuned with distill.adversarial.weight > 0
    mask2face train --preset cpu train.adversarial.weight=0.05   # the same term for a teacher

SSIM and L1 are minimised by the average of every face that fits the context: a smooth, featureless patch. A
discriminator that learns to tell restored regions from real ones gives the generator the missing push towards
texture (lips, nostrils, skin grain), as in the published face-inpainting models (PatchGAN, hinge loss, R1,
feature matching; MI-GAN distils a mobile student the same way).

What the discriminator sees: the crop with the model's RGB pasted inside the true mask and the truth outside it,
plus the mask as a fourth channel (fake), against the truth with the same mask (real). The two differ only inside
the mask, so its patch logits are averaged with the mask, pooled to their grid, as weights: only patches that
touch the mask are judged. Bare examples (mask 0) carry no weight.

Every term is returned by name so that the loop logs it: `g_adv` (the generator's adversarial loss), `fm` (feature
matching: L1 between the discriminator's features of the fake and the real crop, inside the mask's patches),
`d_real`, `d_fake` (the discriminator's two hinge terms) and `r1` (the gradient penalty on real crops).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from tf_keras import layers  # noqa: E402

from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402

TERMS = ("g_adv", "fm", "d_real", "d_fake", "r1")
LOSSES = ("hinge", "nonsaturating")


def build_discriminator(image_size: int, filters: tuple[int, ...]) -> keras.Model:
    """A PatchGAN: one stride-2 4x4 conv + LeakyReLU per entry of `filters` (no normalisation: R1 keeps it
    smooth), then a 3x3 conv to one logit per patch. Input (B, S, S, 4) = RGB in [0, 1] + mask; outputs
    [logits (B, S/2^n, S/2^n, 1), feature map of every stage...]."""
    if image_size % (2 ** len(filters)):
        raise Mask2FaceError(f"a discriminator with {len(filters)} stride-2 stages needs a crop side divisible by "
                             f"{2 ** len(filters)}, not {image_size}")
    inp = keras.Input((image_size, image_size, 4), name="crop_and_mask")
    x = layers.Rescaling(2.0, offset=-1.0, name="to_signed")(inp)
    features = []
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 4, strides=2, padding="same", name=f"d{i}_conv")(x)
        x = layers.LeakyReLU(0.2, name=f"d{i}_act")(x)
        features.append(x)
    logits = layers.Conv2D(1, 3, padding="same", name="patch_logits")(x)
    return keras.Model(inp, [logits] + features, name="discriminator")


def composite(rgb: tf.Tensor, truth: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """(B, S, S, 4): `rgb` inside the mask, the truth outside it, and the mask itself."""
    return tf.concat([mask * rgb + (1.0 - mask) * truth, mask], axis=-1)


def patch_weights(mask: tf.Tensor, grid: int) -> tf.Tensor:
    """The share of each discriminator patch the mask covers, (B, grid, grid, 1)."""
    return tf.image.resize(mask, (grid, grid), method="area")


def _weighted(values: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(values * weights) / (tf.reduce_sum(weights) + 1e-6)


@dataclass
class Adversary:
    """The discriminator, its optimizer and the weights of each term (from an AdversarialConfig)."""
    discriminator: keras.Model
    optimizer: keras.optimizers.Optimizer
    weight: float
    loss: str = "hinge"
    feature_matching: float = 0.0
    r1_gamma: float = 0.0

    @classmethod
    def from_config(cls, cfg, image_size: int) -> "Adversary | None":
        """None when cfg.weight is 0 (the term is off); build inside the training strategy's scope."""
        if not cfg.weight:
            return None
        if cfg.loss not in LOSSES:
            raise Mask2FaceError(f"unknown adversarial loss {cfg.loss!r}; choose one of {', '.join(LOSSES)}")
        disc = build_discriminator(image_size, tuple(cfg.filters))
        opt = keras.optimizers.Adam(cfg.learning_rate, beta_1=0.0, beta_2=0.99)  # the usual GAN Adam
        disc.compile(optimizer=opt)     # so discriminator.keras carries the optimizer state too
        opt.build(disc.trainable_variables)
        return cls(disc, opt, float(cfg.weight), cfg.loss, float(cfg.feature_matching), float(cfg.r1_gamma))

    def save(self, path: Path) -> None:
        from mask2face import runs

        with runs.atomic_path(path) as tmp:
            self.discriminator.save(tmp)

    def load(self, path: Path) -> None:
        self.discriminator.load_weights(path)

    # ---- the two losses, for one replica's batch ----
    def generator_terms(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> dict[str, tf.Tensor]:
        """g_adv and fm for the generator's gradient (batch means); the discriminator is not updated here."""
        truth, mask = y_true[..., :3], y_true[..., 3:4]
        real = composite(truth, truth, mask)
        fake = composite(y_pred[..., :3], truth, mask)
        fake_out = self.discriminator(fake, training=False)
        logits = fake_out[0]
        w = patch_weights(mask, int(logits.shape[1]))
        if self.loss == "hinge":
            g_adv = -_weighted(logits, w)
        else:
            g_adv = _weighted(tf.nn.softplus(-logits), w)
        fm = tf.constant(0.0)
        if self.feature_matching:
            real_out = self.discriminator(real, training=False)
            terms = []
            for f_fake, f_real in zip(fake_out[1:], real_out[1:]):
                wf = patch_weights(mask, int(f_fake.shape[1]))
                terms.append(_weighted(tf.reduce_mean(tf.abs(f_fake - tf.stop_gradient(f_real)), -1,
                                                      keepdims=True), wf))
            fm = tf.add_n(terms) / len(terms)
        return {"g_adv": g_adv, "fm": fm}

    def generator_loss(self, terms: dict[str, tf.Tensor]) -> tf.Tensor:
        return self.weight * (terms["g_adv"] + self.feature_matching * terms["fm"])

    def discriminator_step(self, y_true: tf.Tensor, y_pred: tf.Tensor, replicas: int) -> dict[str, tf.Tensor]:
        """One update of the discriminator on this batch (y_pred is taken as a constant)."""
        truth, mask = y_true[..., :3], y_true[..., 3:4]
        real = composite(truth, truth, mask)
        fake = composite(tf.stop_gradient(y_pred[..., :3]), truth, mask)
        with tf.GradientTape() as tape:
            if self.r1_gamma:
                with tf.GradientTape() as r1_tape:
                    r1_tape.watch(real)
                    real_logits = self.discriminator(real, training=True)[0]
                    w = patch_weights(mask, int(real_logits.shape[1]))
                    real_score = tf.reduce_sum(real_logits * w)
                grad = r1_tape.gradient(real_score, real)
                r1 = tf.reduce_mean(tf.reduce_sum(tf.square(grad), axis=(1, 2, 3)))
            else:
                real_logits = self.discriminator(real, training=True)[0]
                w = patch_weights(mask, int(real_logits.shape[1]))
                r1 = tf.constant(0.0)
            fake_logits = self.discriminator(fake, training=True)[0]
            if self.loss == "hinge":
                d_real = _weighted(tf.nn.relu(1.0 - real_logits), w)
                d_fake = _weighted(tf.nn.relu(1.0 + fake_logits), w)
            else:
                d_real = _weighted(tf.nn.softplus(-real_logits), w)
                d_fake = _weighted(tf.nn.softplus(fake_logits), w)
            total = (d_real + d_fake + 0.5 * self.r1_gamma * r1) / replicas
        grads = tape.gradient(total, self.discriminator.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.discriminator.trainable_variables))
        return {"d_real": d_real, "d_fake": d_fake, "r1": r1}
