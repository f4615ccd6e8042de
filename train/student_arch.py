"""The slim student: a depthwise-separable U-Net that runs as ONE XNNPACK partition and is int8 friendly.

Design rules (each one measured, see /work/shared/MEASURED.md and benchmarks/results/upsample_choice.json):
- every conv is followed directly by BatchNorm (no bias), so the converter folds BN into the conv weights;
- ReLU6 (bounded activations quantise well; the GPU delegate and NNAPI both take RELU6 fused into the conv);
- downsampling by stride-2 depthwise convs (no pooling op to partition on);
- upsampling by a 1x1 conv to 4*C channels followed by DEPTH_TO_SPACE (pixel shuffle): it stays inside XNNPACK
  and the GPU delegate, has no QAT/TFLite numeric mismatch (unlike bilinear resize) and BN folds into the conv
  (unlike Conv2DTranspose). `shuffle` drops the 1x1 expansion (DEPTH_TO_SPACE straight from the deeper level:
  half the weights); `nearest` and `bilinear` remain selectable for the measurement;
- `stem_stride=2` (the cpu preset): a stride-2 stem and a pixel-shuffle head, so every feature map is half size
  or less. Small students are bound by memory traffic, and the full-size maps were most of it: at the same
  widths the half-resolution student is 3.6-3.8x faster in int8 (benchmarks/results/student_design.jsonl);
- 4-channel sigmoid output (RGB + mask), like the teacher.

`DepthToSpace` is a tiny registered Layer (tf_keras has none and Lambda is banned); tfmot gets a QuantizeConfig
for it (`DepthToSpaceQuantizeConfig`) that quantises nothing: depth-to-space only moves values, so its input and
output share one scale and the converter keeps it in int8.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

layers = keras.layers
UPSAMPLE_CHOICES = ("depth_to_space", "shuffle", "bilinear", "nearest", "transpose")


@keras.saving.register_keras_serializable(package="mask2face")
class DepthToSpace(layers.Layer):
    """tf.nn.depth_to_space as a serialisable layer (converts to the builtin DEPTH_TO_SPACE op)."""

    def __init__(self, block_size: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.block_size = int(block_size)

    def call(self, inputs):
        return tf.nn.depth_to_space(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.block_size
        return (b, None if h is None else h * s, None if w is None else w * s, c // (s * s))

    def get_config(self):
        return {**super().get_config(), "block_size": self.block_size}


def _quantize_config_class():
    """Built lazily so that importing this module does not import tfmot (slow) unless QAT is used."""
    import tensorflow_model_optimization as tfmot

    @keras.saving.register_keras_serializable(package="mask2face")
    class DepthToSpaceQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
        """No weights, no activation and no output quantizer: depth-to-space is a pure permutation, so the
        quantisation of its input (the preceding conv's output) is exactly right for its output too."""

        def get_weights_and_quantizers(self, layer):
            return []

        def get_activations_and_quantizers(self, layer):
            return []

        def set_quantize_weights(self, layer, quantize_weights):
            pass

        def set_quantize_activations(self, layer, quantize_activations):
            pass

        def get_output_quantizers(self, layer):
            return []

        def get_config(self):
            return {}

    return DepthToSpaceQuantizeConfig


_QCFG = None


def depth_to_space_quantize_config():
    global _QCFG
    if _QCFG is None:
        _QCFG = _quantize_config_class()
    return _QCFG


def quantize_scope_objects() -> dict:
    """Custom objects that tfmot's quantize_scope / quantize_apply need for the student."""
    return {"DepthToSpace": DepthToSpace, "DepthToSpaceQuantizeConfig": depth_to_space_quantize_config()}


def scaled_filters(filters, width_multiplier: float = 1.0, divisor: int = 4) -> list[int]:
    """Widths times the multiplier, rounded to a multiple of `divisor` (SIMD-friendly), at least `divisor`."""
    out = []
    for f in filters:
        v = max(divisor, int(round(f * width_multiplier / divisor)) * divisor)
        out.append(v)
    return out


def _conv_bn(x, filters, kernel, name, stride=1, act=True):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x) if act else x


def _ds_block(x, filters, kernel, name, stride=1):
    """Depthwise kxk (+BN+ReLU6) then pointwise 1x1 (+BN+ReLU6)."""
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu6")(x)
    return _conv_bn(x, filters, 1, f"{name}_pw")


def _upsample(x, filters, mode, name):
    if mode == "depth_to_space":
        x = _conv_bn(x, 4 * filters, 1, f"{name}_expand")
        return DepthToSpace(2, name=f"{name}_d2s")(x)
    if mode == "shuffle":
        # No expansion conv: the deeper level's C channels become C/4 at twice the size, and the decoder block's
        # pointwise conv after the skip concatenation mixes them. Saves the largest weights of the student
        # (the 1x1 expansions to 4*C were about half its parameters). Widths are multiples of 4 (scaled_filters).
        return DepthToSpace(2, name=f"{name}_d2s")(x)
    if mode in ("bilinear", "nearest"):
        x = layers.UpSampling2D(2, interpolation=mode, name=f"{name}_resize")(x)
        return _conv_bn(x, filters, 1, f"{name}_proj")
    if mode == "transpose":
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", use_bias=False, name=f"{name}_tconv")(x)
        x = layers.BatchNormalization(name=f"{name}_tconv_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_tconv_relu6")(x)
    raise ValueError(f"model.upsample={mode!r}: choose one of {', '.join(UPSAMPLE_CHOICES)}")


def build_unet_mobile(model_cfg, image_size: int, batch_size: int | None = None) -> keras.Model:
    """Depthwise-separable U-Net. `model_cfg.filters` are the widths per resolution level (level 0 = full size),
    `model_cfg.kernels` the depthwise kernel sizes per level. Input (B,S,S,3) in [0,1], output (B,S,S,4) sigmoid.

    Level 0 is a plain 3x3 conv stem (3 input channels: a depthwise conv there would be too thin to learn);
    each further level halves the size with a stride-2 depthwise block then adds one stride-1 block; the decoder
    mirrors it: upsample, concatenate the skip, one depthwise block."""
    filters = scaled_filters(model_cfg.filters, getattr(model_cfg, "width_multiplier", 1.0))
    kernels = list(model_cfg.kernels) + [3] * max(0, len(filters) - len(model_cfg.kernels))
    levels = len(filters)
    mode = getattr(model_cfg, "upsample", "depth_to_space")
    out_ch = 4 if getattr(model_cfg, "predict_mask", True) else 3

    stride = int(getattr(model_cfg, "stem_stride", 1))
    if stride not in (1, 2):
        raise ValueError(f"model.stem_stride={stride}: choose 1 (full resolution) or 2 (half resolution inside)")
    if image_size % (stride * 2 ** (levels - 1)):
        raise ValueError(f"image_size {image_size} must be divisible by {stride * 2 ** (levels - 1)} for {levels} "
                         f"levels with stem_stride {stride}")
    inp = keras.Input((image_size, image_size, 3), batch_size=batch_size, name="masked")
    x = _conv_bn(inp, filters[0], 3, "stem", stride=stride)
    skips = [x]
    for i in range(1, levels):
        x = _ds_block(x, filters[i], kernels[i], f"enc{i}_down", stride=2)
        x = _ds_block(x, filters[i], kernels[i], f"enc{i}")
        skips.append(x)
    for i in range(levels - 2, -1, -1):
        x = _upsample(x, filters[i], mode, f"dec{i}_up")
        x = layers.Concatenate(name=f"dec{i}_cat")([x, skips[i]])
        x = _ds_block(x, filters[i], kernels[i], f"dec{i}")
    if stride == 2:
        # Half resolution inside: the head predicts a 2x2 block of output pixels per position (pixel shuffle), so
        # no op runs on a full-size feature map; small students are bound by memory traffic, and the
        # full-resolution maps were most of it.
        x = layers.Conv2D(out_ch * 4, 1, padding="same", name="head_conv")(x)
        x = DepthToSpace(2, name="head_d2s")(x)
    else:
        x = layers.Conv2D(out_ch, 1, padding="same", name="head_conv")(x)
    out = layers.Activation("sigmoid", name="restored")(x)
    return keras.Model(inp, out, name="unet_mobile")


def feature_layer_names(model: keras.Model) -> list[str]:
    """Names of the student's encoder outputs per level (for feature matching), shallow to deep."""
    names = ["stem_relu6"]
    names += sorted({l.name for l in model.layers if l.name.startswith("enc") and l.name.endswith("_pw_relu6")
                     and "_down" not in l.name}, key=lambda n: int(n[3:].split("_")[0]))
    return names
