"""Model registry: `build_model(model_cfg, image_size)` -> tf_keras Functional model, and `load_model(path)`.

Contract (docs/ARCHITECTURE.md): input (B,S,S,3) float32 RGB in [0,1]; output (B,S,S,4) sigmoid — channels 0-2 the
restored RGB, channel 3 the mask probability — or (B,S,S,3) when `predict_mask=False`.

Architectures
- `unet_resnet` (the teacher; after the reference mask2face model): one stage per entry of `filters`/`kernels`.
  Encoder stage = residual block (Conv-BN-ReLU, Conv-BN, 1x1 Conv-BN projection shortcut, add, ReLU), then 2x2
  max-pool before the next stage. Decoder stage = upsample + Conv-BN-ReLU, concatenate the encoder skip of the same
  resolution, residual block. A 1x1 sigmoid conv makes the output.
- `unet`: the same layout with plain double Conv-BN-ReLU blocks instead of residual blocks.
- `unet_mobile`: the depthwise-separable student, built by `train/student_arch.py` (imported lazily).

Only built-in layers and the registered `DepthToSpace`/`SpaceToDepth` of `student_arch` are used (no Lambda), so
`load_model` needs no custom objects and tfmot can wrap every layer. The teacher decoder upsamples with
`UpSampling2D` (nearest, or bilinear when `upsample="bilinear"`), `Conv2DTranspose` (`upsample="transpose"`) or
`upsample="repeat"`: nearest computed as channel copies + the students' registered DepthToSpace layer, the same
numbers in one XNNPACK partition (the full-resolution `cpu-full` student is the teacher's design with it).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from pathlib import Path  # noqa: E402

import tf_keras as keras  # noqa: E402
from tf_keras import layers  # noqa: E402

from mask2face.edge_runtime.errors import Mask2FaceError  # noqa: E402

ARCHS = ("unet_resnet", "unet", "unet_mobile")


class ModelError(Mask2FaceError):
    """An unknown architecture, a size that does not fit the depth, or a model file that cannot be read."""


def output_channels(model_cfg) -> int:
    return 4 if model_cfg.predict_mask else 3


def _conv_bn_relu(x, filters: int, kernel: int, name: str, relu: bool = True):
    # No conv bias: BatchNorm directly after the conv supplies it (and folds into the conv at export).
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if relu:
        x = layers.ReLU(name=f"{name}_relu")(x)
    return x


def _residual_block(x, filters: int, kernel: int, name: str):
    shortcut = x
    y = _conv_bn_relu(x, filters, kernel, f"{name}_a")
    y = _conv_bn_relu(y, filters, kernel, f"{name}_b", relu=False)
    if shortcut.shape[-1] != filters:
        shortcut = _conv_bn_relu(shortcut, filters, 1, f"{name}_proj", relu=False)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.ReLU(name=f"{name}_out")(y)


def _double_conv(x, filters: int, kernel: int, name: str):
    x = _conv_bn_relu(x, filters, kernel, f"{name}_a")
    return _conv_bn_relu(x, filters, kernel, f"{name}_b")


def _upsample(x, filters: int, mode: str, name: str):
    if mode == "transpose":
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", use_bias=False, name=f"{name}_tconv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)
    if mode == "repeat":
        # Nearest 2x as four copies side by side on the channel axis and DEPTH_TO_SPACE: the same numbers as
        # UpSampling2D(nearest), whose RESIZE_NEAREST_NEIGHBOR XNNPACK does not take (the int8 teacher fell into 6
        # partitions). No weights either way, so a "nearest" model's weights load into a "repeat" one unchanged.
        from mask2face.train.student_arch import DepthToSpace  # TF-heavy module, import lazily
        x = layers.Concatenate(name=f"{name}_repeat")([x, x, x, x])
        x = DepthToSpace(2, name=f"{name}_d2s")(x)
        return _conv_bn_relu(x, filters, 3, name)
    if mode not in ("nearest", "bilinear"):
        raise ModelError(f"upsample={mode!r} is not a teacher upsampling: choose nearest, bilinear, repeat or "
                         "transpose (depth_to_space and shuffle are the unet_mobile students')")
    interpolation = "bilinear" if mode == "bilinear" else "nearest"
    x = layers.UpSampling2D(2, interpolation=interpolation, name=f"{name}_resize")(x)
    return _conv_bn_relu(x, filters, 3, name)


def _check_sizes(model_cfg, image_size: int) -> None:
    if len(model_cfg.filters) != len(model_cfg.kernels) or not model_cfg.filters:
        raise ModelError(f"filters {model_cfg.filters} and kernels {model_cfg.kernels} must be non-empty and of the "
                         "same length (one entry per U-Net stage)")
    factor = 2 ** (len(model_cfg.filters) - 1)
    if image_size % factor:
        raise ModelError(f"image size {image_size} is not divisible by {factor} (2^(stages-1) for "
                         f"{len(model_cfg.filters)} stages): use a multiple of {factor} or fewer filters entries")


def _build_unet(model_cfg, image_size: int, block, name: str) -> keras.Model:
    _check_sizes(model_cfg, image_size)
    filters, kernels = list(model_cfg.filters), list(model_cfg.kernels)
    inputs = keras.Input((image_size, image_size, 3), name="masked")
    x = inputs
    skips = []
    for i, (f, k) in enumerate(zip(filters, kernels)):
        if i:
            x = layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
        x = block(x, f, k, f"enc{i}")
        skips.append(x)
    for i in reversed(range(len(filters) - 1)):
        x = _upsample(x, filters[i], model_cfg.upsample, f"dec{i}_up")
        x = layers.Concatenate(name=f"dec{i}_concat")([x, skips[i]])
        x = block(x, filters[i], kernels[i], f"dec{i}")
    outputs = layers.Conv2D(output_channels(model_cfg), 1, activation="sigmoid", name="restored")(x)
    return keras.Model(inputs, outputs, name=name)


def build_model(model_cfg, image_size: int) -> keras.Model:
    """The registry: a fresh (randomly initialised) Functional model for `model_cfg.arch`."""
    arch = model_cfg.arch
    if arch == "unet_resnet":
        return _build_unet(model_cfg, image_size, _residual_block, "unet_resnet")
    if arch == "unet":
        return _build_unet(model_cfg, image_size, _double_conv, "unet")
    if arch == "unet_mobile":
        from mask2face.train.student_arch import build_unet_mobile  # another module; TF-heavy, import lazily
        return build_unet_mobile(model_cfg, image_size)
    raise ModelError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHS)} (e.g. teacher.arch=unet)")


def load_model(path, compile: bool = False) -> keras.Model:
    """Load a saved `.keras` model (no custom objects needed). `compile=True` also restores the optimizer."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} not found: train one first (mask2face train) or pass --model PATH")
    if path.suffix.lower() == ".tflite":
        raise ModelError(f"{path} is a .tflite file: this step needs the Keras model it was exported from "
                         "(RUN/teacher/best.keras, RUN/student/best.keras or RUN/qat/best.keras)")
    # Students use a registered DepthToSpace layer: importing its module registers it for deserialisation.
    from mask2face.train import student_arch  # noqa: F401
    try:
        return keras.models.load_model(path, compile=compile)
    except (OSError, ValueError, KeyError, TypeError) as exc:   # TypeError: a QAT model (load_qat_model) and others
        raise ModelError(f"cannot load model {path}: {exc}. Is it a complete .keras file written by mask2face? "
                         "Delete it and train again if it is damaged.") from exc


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass of the conv layers (batch 1): for choosing preset sizes."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)) and not isinstance(
                layer, (layers.DepthwiseConv2D, layers.SeparableConv2D)):
            k = layer.kernel.shape  # (kh, kw, cin, cout)
            out = layer.output.shape  # (B, H, W, cout)
            if isinstance(layer, layers.Conv2DTranspose):
                inp = layer.input.shape
                total += int(k[0] * k[1] * k[2] * k[3] * inp[1] * inp[2])
            else:
                total += int(k[0] * k[1] * k[2] * k[3] * out[1] * out[2])
        elif isinstance(layer, layers.DepthwiseConv2D):
            k = layer.depthwise_kernel.shape
            out = layer.output.shape
            total += int(k[0] * k[1] * k[2] * k[3] * out[1] * out[2])
        elif isinstance(layer, layers.SeparableConv2D):
            dk, pk = layer.depthwise_kernel.shape, layer.pointwise_kernel.shape
            out = layer.output.shape
            total += int((dk[0] * dk[1] * dk[2] * dk[3] + pk[2] * pk[3]) * out[1] * out[2])
    return total
