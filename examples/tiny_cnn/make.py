#!/usr/bin/env python3
"""Builds the bundled example: a small CNN (conv-relu-pool x2, global pool, dense, softmax) on
16x16 grayscale inputs, with seeded weights, plus 32 calibration samples and 8 evaluation samples
made from seeded smooth random images. Deterministic: the same pins give the same bytes.

Run with the reference venv: `.venv/bin/python examples/tiny_cnn/make.py` (from the repo root).
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261127)


def conv(name, cin, cout, k):
    w = (rng.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
    b = (rng.standard_normal(cout) * 0.05).astype(np.float32)
    return numpy_helper.from_array(w, name + ".w"), numpy_helper.from_array(b, name + ".b")


inits = []
w1, b1 = conv("conv1", 1, 8, 3)
w2, b2 = conv("conv2", 8, 16, 3)
fc_w = numpy_helper.from_array((rng.standard_normal((16, 10)) * 0.3).astype(np.float32), "fc.w")
fc_b = numpy_helper.from_array((rng.standard_normal(10) * 0.05).astype(np.float32), "fc.b")
inits += [w1, b1, w2, b2, fc_w, fc_b]
nodes = [
    helper.make_node("Conv", ["x", "conv1.w", "conv1.b"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
    helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Conv", ["p1", "conv2.w", "conv2.b"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
    helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
    helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
    helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], name="fc"),
    helper.make_node("Softmax", ["logits"], ["prob"], name="softmax", axis=1),
]
graph = helper.make_graph(
    nodes,
    "tiny_cnn",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
    [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 10])],
    initializer=inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qtool-example")
model.ir_version = 8
onnx.checker.check_model(model, full_check=True)
onnx.save(model, os.path.join(HERE, "model.onnx"))


def images(n):
    # Smooth random images: low-frequency noise upsampled, in [0, 1].
    low = rng.random((n, 1, 4, 4)).astype(np.float32)
    up = np.repeat(np.repeat(low, 4, axis=2), 4, axis=3)
    return np.clip(up + 0.1 * rng.standard_normal(up.shape).astype(np.float32), 0, 1).astype(np.float32)


np.save(os.path.join(HERE, "calib.npy"), images(32))
np.save(os.path.join(HERE, "eval.npy"), images(8))
print("wrote model.onnx, calib.npy, eval.npy")
