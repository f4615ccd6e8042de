"""compress/detector_export.py: an ONNX graph with every op CenterFace uses, rebuilt in TensorFlow and converted to
TFLite, gives OpenCV's own ONNX import's outputs (the reference), on a random image."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("tensorflow")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def tiny_centerface_like_graph(rng) -> bytes:
    """Conv 3x3 stride 2 pad 1 + ReLU, depthwise 3x3, 1x1 conv, residual Add, ConvTranspose 2x2 stride 2 +
    BatchNormalization + ReLU, Conv + Sigmoid: the op kinds of CenterFace, in its layouts (NCHW, OIHW)."""
    w = lambda name, *shape: numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)
    inits = [w("c1", 8, 3, 3, 3), w("c1b", 8), w("dw", 8, 1, 3, 3), w("dwb", 8), w("pw", 8, 8, 1, 1), w("pwb", 8),
             w("up", 8, 4, 2, 2),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "g"), w("b", 4), w("m", 4),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(np.float32), "v"),
             w("head", 1, 4, 3, 3), w("headb", 1)]
    nodes = [
        helper.make_node("Conv", ["x", "c1", "c1b"], ["a"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["ar"]),
        helper.make_node("Conv", ["ar", "dw", "dwb"], ["d"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8),
        helper.make_node("Conv", ["d", "pw", "pwb"], ["p"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["p", "ar"], ["s"]),
        helper.make_node("ConvTranspose", ["s", "up"], ["u"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["u", "g", "b", "m", "v"], ["n"], epsilon=1e-3),
        helper.make_node("Relu", ["n"], ["nr"]),
        helper.make_node("Conv", ["nr", "head", "headb"], ["h"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["h"], ["heat"]),
    ]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 64])],
                              [helper.make_tensor_value_info("heat", TensorProto.FLOAT, [1, 1, 32, 64]),
                               helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, 8, 16, 32])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]).SerializeToString()


def test_converted_graph_matches_opencv_onnx_import(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from mask2face.compress import detector_export
    from mask2face.edge_runtime.centerface import in_export_order

    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.onnx"
    path.write_bytes(tiny_centerface_like_graph(rng))
    image = rng.uniform(0, 1, (32, 64, 3)).astype(np.float32)

    net = cv2.dnn.readNetFromONNX(str(path))
    net.setInput(image.transpose(2, 0, 1)[None])
    reference = net.forward(["heat", "s"])

    it = Interpreter(model_content=detector_export.convert(path), num_threads=1)
    index = it.get_input_details()[0]["index"]
    it.resize_tensor_input(index, [1, 32, 64, 3])
    it.allocate_tensors()
    it.set_tensor(index, image[None])
    it.invoke()
    outputs = [it.get_tensor(d["index"]) for d in in_export_order(it.get_output_details())]
    assert [o.shape for o in outputs] == [(1, 32, 64, 1), (1, 16, 32, 8)]
    for got, want in zip(outputs, reference):
        # float16 weights: agreement to ~1e-3 of the values' range, not bit-exact
        np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, atol=5e-3 * float(np.abs(want).max()))
