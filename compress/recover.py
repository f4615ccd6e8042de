"""A trainable Keras model from an exported int8 or float16 `.tflite`: the weights a `.tflite` ships, back in the
Keras design that made it, to fine-tune (`distill.start_from`, `train.init_from`) or to export at another precision.

    python -m mask2face.compress.recover models/cpu-full/export/student-qat-int8.tflite --preset cpu-full \\
        --data runs/cpu/data --out models/cpu-full/student.keras

Why: a QAT model's float weights are what its int8 file holds, dequantised; a float16 file made from them (the GPU
delegates' precision) draws the same faces as the int8 file (structure 0.78 against 0.79 for the shipped one),
where a float16 file of the student before its QAT is another model.

How: every CONV_2D of the file carries its Keras layer's name (`<model>/quant_<layer>/...`, as tfmot and the TFLite
converter name them), int8 weights with a scale per output channel and an int32 bias. The converter folded each
BatchNormalization into the conv before it, so the conv gets the dequantised weights and its BatchNormalization
becomes the identity plus the bias. To keep that identity when the model trains again (BatchNormalization then
normalises by each batch's own statistics), its moving mean and variance are set to the statistics of its input on
`images`, with gamma and beta chosen so that inference is unchanged: gamma = sqrt(var + eps), beta = bias + mean.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

from mask2face.edge_runtime.errors import Mask2FaceError
from mask2face.edge_runtime.model import new_interpreter

LAYER_NAME = re.compile(r"^[^/;]+/(?:quant_)?([A-Za-z0-9_]+)/")


class RecoverError(Mask2FaceError):
    """The .tflite does not match the Keras design it is said to come from."""


def conv_weights(model_bytes: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Keras layer name -> (kernel (H, W, I, O) float32, bias (O,) float32) of every CONV_2D in the file,
    dequantised (per-channel int8 weights and int32 bias, float16 weights, or float32 as they are)."""
    it = new_interpreter(model_bytes)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    ops = it._get_ops_details()   # LiteRT's only listing of the graph's ops (used by its own analyzer)
    # A float16 file keeps its weights as float16 constants, each read through a DEQUANTIZE op into float32.
    stored = {op["outputs"][0]: op["inputs"][0] for op in ops if op["op_name"] == "DEQUANTIZE"}
    out = {}
    for op in ops:
        if op["op_name"] != "CONV_2D":
            continue
        _, w_index, b_index = (stored.get(i, i) for i in op["inputs"][:3])
        match = LAYER_NAME.match(tensors[w_index]["name"])
        if not match:
            raise RecoverError(f"a CONV_2D weight tensor is named {tensors[w_index]['name']!r}: not a file exported "
                               "from a mask2face Keras model (expected <model>/[quant_]<layer>/...)")
        out[match.group(1)] = (np.transpose(_dequantised(it, tensors[w_index]), (1, 2, 3, 0)),
                               _dequantised(it, tensors[b_index]) if b_index >= 0 else None)
    return out


def _dequantised(it, detail: dict) -> np.ndarray:
    values = it.get_tensor(detail["index"]).astype(np.float32)
    q = detail["quantization_parameters"]
    if not len(q["scales"]):
        return values
    shape = [1] * values.ndim
    if len(q["scales"]) > 1:
        shape[q["quantized_dimension"]] = -1
    return (values - q["zero_points"].reshape(shape)) * q["scales"].reshape(shape)


def recovered_model(model_bytes: bytes, model_cfg, image_size: int, images: np.ndarray):
    """The Keras model of `model_cfg` with the file's weights (module docstring); `images` (N, S, S, 3) float32 in
    [0, 1] give its BatchNormalizations their statistics."""
    import tf_keras as keras

    from mask2face.train.models import build_model

    weights = conv_weights(model_bytes)
    model = build_model(model_cfg, image_size)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    missing = sorted({layer.name for layer in convs} ^ set(weights))
    if missing:
        raise RecoverError(f"the file and the {model_cfg.arch} design differ in conv layers {missing[:6]}: give the "
                           "preset the file was trained with")
    pairs = []   # (conv, its BatchNormalization or None, bias)
    for conv in convs:
        kernel, bias = weights[conv.name]
        if tuple(conv.kernel.shape) != kernel.shape:
            raise RecoverError(f"layer {conv.name}: the file's kernel is {kernel.shape}, the design's "
                               f"{tuple(conv.kernel.shape)}: give the preset the file was trained with")
        bias = np.zeros(kernel.shape[-1], np.float32) if bias is None else bias
        users = [node.outbound_layer for node in conv.outbound_nodes]
        bn = users[0] if len(users) == 1 and isinstance(users[0], keras.layers.BatchNormalization) else None
        conv.set_weights([kernel] if bn is not None else [kernel, bias])
        pairs.append((conv, bn, bias))
    # Statistics of each conv's output, in the model as the file computes it, one layer at a time in order: the
    # BatchNormalizations are first set to "bias only" (gamma 1, beta = bias, mean 0, var 1 - eps).
    for conv, bn, bias in pairs:
        if bn is not None:
            bn.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), np.full_like(bias, 1.0 - bn.epsilon)])
    probe = keras.Model(model.inputs, [conv.output for conv, bn, _ in pairs if bn is not None])
    outputs = probe.predict(images, batch_size=8, verbose=0)
    outputs = outputs if isinstance(outputs, list) else [outputs]
    for (conv, bn, bias), z in zip([p for p in pairs if p[1] is not None], outputs):
        mean = z.reshape(-1, z.shape[-1]).mean(0)
        var = z.reshape(-1, z.shape[-1]).var(0)
        bn.set_weights([np.sqrt(var + bn.epsilon), bias + mean, mean, var])
    return model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("tflite", type=Path, help="an int8 (or float) .tflite exported by mask2face")
    p.add_argument("--preset", required=True,
                   help="the preset whose student design (distill.student) made the file, e.g. cpu-full")
    p.add_argument("--data", type=Path, required=True, help="a pairs folder: its val crops give the statistics")
    p.add_argument("--samples", type=int, default=128, help="val crops for the BatchNormalization statistics")
    p.add_argument("--out", type=Path, required=True, help="the .keras file to write")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)

    from mask2face import config
    from mask2face.runs import atomic_path
    from mask2face.train import pairs

    cfg = config.load(args.preset, args.overrides)
    try:
        images = pairs.load_split(args.data, "val", limit=args.samples)["masked"].astype(np.float32) / 255.0
    except FileNotFoundError as exc:
        raise SystemExit(f"mask2face recover: {exc}: --data must be a pairs folder (mask2face data)") from None
    model = recovered_model(args.tflite.read_bytes(), cfg.distill.student, cfg.data.image_size, images)
    with atomic_path(args.out) as tmp:
        model.save(tmp)
    print(f"wrote {args.out} ({model.count_params():,} parameters) from {args.tflite}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
