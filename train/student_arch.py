"""The slim student: a depthwise-separable U-Net that runs as ONE XNNPACK partition and is int8 friendly.

Design rules (the upsampling op chosen by benchmarks/results/upsample_choice.json; the one XNNPACK partition
checked by tests/test_student_arch.py):
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
- 4-channel sigmoid output (RGB + mask), like the teacher;
- `blend_input=True` (the cpu preset): the model pastes its own RGB into the photo by its own mask,
  out = x + m * (rgb - x), so pixels it does not see as masked come back untouched (no blur, no int8 noise) and
  every bit of capacity goes to the masked region. SUB, MUL and ADD, all in XNNPACK, the GPU delegate and NNAPI;
  at stem_stride 2 they run on 2x2 pixel blocks (`_blend_half_resolution`), so none touches a full-size tensor.

`DepthToSpace` is a tiny registered Layer (tf_keras has none and Lambda is banned); tfmot gets a QuantizeConfig
for it (`DepthToSpaceQuantizeConfig`) that quantises nothing: depth-to-space only moves values, so its input and
output share one scale and the converter keeps it in int8. tfmot's default registry has no entry for `Subtract`
and `Multiply` (the blend): `OutputQuantizeConfig` quantises their output only, as the registry does for `Add`.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
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


@keras.saving.register_keras_serializable(package="mask2face")
class SpaceToDepth(DepthToSpace):
    """tf.nn.space_to_depth as a serialisable layer (the builtin SPACE_TO_DEPTH op): the inverse of DepthToSpace."""

    def call(self, inputs):
        return tf.nn.space_to_depth(inputs, self.block_size)

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        s = self.block_size
        return (b, None if h is None else h // s, None if w is None else w // s, c * s * s)


def _fixed_conv(x, matrix: np.ndarray, name: str):
    """A 1x1 conv with constant 0/1 weights (not trained): repeats or reorders channels at the cost of a tiny
    matmul, where a channel concatenation at full size was measured 0.37 ms of a 0.5 ms model."""
    kernel = matrix.astype(np.float32)[None, None]
    return layers.Conv2D(kernel.shape[-1], 1, use_bias=False, trainable=False, name=name,
                         kernel_initializer=keras.initializers.Constant(kernel))(x)


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

    @keras.saving.register_keras_serializable(package="mask2face")
    class OutputQuantizeConfig(DepthToSpaceQuantizeConfig):
        """No weights, inputs as they come, the output quantised to 8 bits with a moving-average range: what the
        default registry does for Add, for the elementwise layers it has no entry for (Subtract, Multiply)."""

        def get_output_quantizers(self, layer):
            return [tfmot.quantization.keras.quantizers.MovingAverageQuantizer(
                num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    return DepthToSpaceQuantizeConfig, OutputQuantizeConfig


_QCFG = None


def _quantize_configs():
    global _QCFG
    if _QCFG is None:
        _QCFG = _quantize_config_class()
    return _QCFG


def depth_to_space_quantize_config():
    return _quantize_configs()[0]


def output_quantize_config():
    return _quantize_configs()[1]


def quantize_scope_objects() -> dict:
    """Custom objects that tfmot's quantize_scope / quantize_apply need for the student."""
    return {"DepthToSpace": DepthToSpace, "SpaceToDepth": SpaceToDepth,
            "DepthToSpaceQuantizeConfig": depth_to_space_quantize_config(),
            "OutputQuantizeConfig": output_quantize_config()}


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
    blend = bool(getattr(model_cfg, "blend_input", False))
    if blend and out_ch != 4:
        raise ValueError("model.blend_input needs model.predict_mask: the model blends by its own mask")

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
    if blend and stride == 2:
        return keras.Model(inp, _blend_half_resolution(inp, x), name="unet_mobile")
    if blend:
        rgb = layers.Activation("sigmoid", name="rgb")(_head(x, 3, stride, "head_rgb"))
        mask = layers.Activation("sigmoid", name="mask")(_head(x, 1, stride, "head_mask"))
        # out = x + m * (rgb - x): where the model sees no mask it returns the input exactly. The mask is
        # repeated to 3 channels by concatenation rather than broadcast in MUL, which not every delegate takes.
        mask3 = layers.Concatenate(name="blend_mask3")([mask, mask, mask])
        delta = layers.Subtract(name="blend_delta")([rgb, inp])
        pasted = layers.Add(name="blend_add")([inp, layers.Multiply(name="blend_mul")([mask3, delta])])
        out = layers.Concatenate(name="restored")([pasted, mask])
    else:
        out = layers.Activation("sigmoid", name="restored")(_head(x, out_ch, stride, "head"))
    return keras.Model(inp, out, name="unet_mobile")


def _blend_half_resolution(inp, x):
    """out = x + m * (rgb - x), computed at half size on 2x2 pixel blocks (space-to-depth), then one pixel shuffle.

    Channel k of a 2x2-block tensor with C colours is sub-pixel k // C, colour k % C (the DEPTH_TO_SPACE order). The
    input's blocks have 12 channels; the heads predict 12 RGB and 4 mask channels per block; a fixed conv repeats
    each mask channel for its 3 colours, another puts RGB and mask back in DEPTH_TO_SPACE order for 4 channels.
    Same numbers as blending at full size, but no elementwise op or concatenation touches a full-size tensor:
    measured int8 1 thread, random weights, widths 32..128: 0.49 ms without a blend, 1.07 ms blending at full
    size with the mask concatenated 3 times, 0.70 ms with a broadcast MUL."""
    inp_blocks = SpaceToDepth(2, name="blend_input_s2d")(inp)
    rgb = layers.Activation("sigmoid", name="rgb")(layers.Conv2D(12, 1, name="head_rgb_conv")(x))
    mask = layers.Activation("sigmoid", name="mask")(layers.Conv2D(4, 1, name="head_mask_conv")(x))
    repeat = np.zeros((4, 12))
    for k in range(12):
        repeat[k // 3, k] = 1
    mask12 = _fixed_conv(mask, repeat, "blend_mask_repeat")
    delta = layers.Subtract(name="blend_delta")([rgb, inp_blocks])
    pasted = layers.Add(name="blend_add")([inp_blocks, layers.Multiply(name="blend_mul")([mask12, delta])])
    order = np.zeros((16, 16))                  # [12 RGB (sub-pixel, colour), 4 masks] -> (sub-pixel, channel of 4)
    for sub in range(4):
        for c in range(3):
            order[sub * 3 + c, sub * 4 + c] = 1
        order[12 + sub, sub * 4 + 3] = 1
    blocks = _fixed_conv(layers.Concatenate(name="blend_cat")([pasted, mask]), order, "blend_order")
    return DepthToSpace(2, name="restored")(blocks)


def _head(x, channels: int, stride: int, name: str):
    """1x1 conv to the output channels. At stem_stride 2 it predicts a 2x2 block of output pixels per position
    (pixel shuffle), so no op runs on a full-size feature map: small students are bound by memory traffic, and
    the full-resolution maps were most of it."""
    if stride == 2:
        x = layers.Conv2D(channels * 4, 1, padding="same", name=f"{name}_conv")(x)
        return DepthToSpace(2, name=f"{name}_d2s")(x)
    return layers.Conv2D(channels, 1, padding="same", name=f"{name}_conv")(x)


def feature_layer_names(model: keras.Model) -> list[str]:
    """Names of the student's encoder outputs per level (for feature matching), shallow to deep."""
    names = ["stem_relu6"]
    names += sorted({l.name for l in model.layers if l.name.startswith("enc") and l.name.endswith("_pw_relu6")
                     and "_down" not in l.name}, key=lambda n: int(n[3:].split("_")[0]))
    return names
