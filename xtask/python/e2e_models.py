#!/usr/bin/env python3
"""Writes the synthetic models of `cargo xtask e2e` with their data, deterministically (seeded
weights and data; the same pins give the same bytes), one directory per model:

    OUT/<name>/model.onnx   the FP32 model (opset 13, a dynamic batch dimension)
    OUT/<name>/calib.npy    calibration samples (first axis = samples)
    OUT/<name>/eval.npy     evaluation samples

Models (each made to exercise a part of the quantizer; testdata/e2e/<case>/pipeline.yaml says
which settings run on it, docs/e2e.md lists what each case covers):

- conv_block: Conv + BatchNormalization + Relu, MaxPool, a residual Add, a depthwise Conv,
  AveragePool, Concat, GlobalAveragePool, Flatten, Gemm (transB) and Softmax; two graph outputs.
- matmul_mlp: a token MLP and a self-attention-like block: MatMul with constant weights and bias
  Add, Sigmoid gate (Mul), a residual Add, Transpose, MatMul of two activations, Softmax, Reshape,
  Gemm.
- rules: a CNN whose node names and op types are targets of the exclusion, override and op-type
  rules, with ops the quantizer does not handle (LeakyRelu, Tanh), ConvTranspose, Clip (absorbed or
  kept), Resize, Identity nodes and a constant subgraph for the preprocessing passes.

Usage: e2e_models.py OUT_DIR
"""

import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SEED = 7


class Builder:
    """Collects nodes and initializers of one graph with seeded weights."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes = []
        self.inits = []

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, name, shape, fan_in):
        w = self.rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        return self.init(name, w.astype(np.float32))

    def bias(self, name, n, scale=0.1):
        return self.init(name, (self.rng.standard_normal(n) * scale).astype(np.float32))

    def node(self, op, inputs, name, out=None, **attrs):
        out = out or name + "_out"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, **attrs))
        return out

    def conv(self, x, name, cin, cout, k, stride=1, pad=None, group=1, bias=True):
        pad = k // 2 if pad is None else pad
        w = self.weight(name + ".w", (cout, cin // group, k, k), cin // group * k * k)
        ins = [x, w] + ([self.bias(name + ".b", cout)] if bias else [])
        return self.node(
            "Conv", ins, name, kernel_shape=[k, k], strides=[stride, stride],
            pads=[pad] * 4, group=group,
        )

    def model(self, name, inputs, outputs):
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        m = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qtool-e2e"
        )
        m.ir_version = 8
        onnx.checker.check_model(m, full_check=True)
        return m


def smooth_images(rng, n, c, h, w):
    """Seeded low-frequency images in [0, 1]: coarse noise upsampled, plus a little fine noise."""
    low = rng.random((n, c, h // 4, w // 4))
    up = np.repeat(np.repeat(low, 4, axis=2), 4, axis=3)
    return np.clip(up + 0.05 * rng.standard_normal(up.shape), 0, 1).astype(np.float32)


def conv_block():
    b = Builder(SEED)
    x = "image"
    c1 = b.conv(x, "conv1", 3, 8, 3, bias=False)
    bn = b.node(
        "BatchNormalization",
        [c1, b.init("bn1.scale", (1 + 0.1 * b.rng.standard_normal(8)).astype(np.float32)),
         b.bias("bn1.bias", 8), b.bias("bn1.mean", 8),
         b.init("bn1.var", (0.5 + b.rng.random(8)).astype(np.float32))],
        "bn1", epsilon=1e-5,
    )
    r1 = b.node("Relu", [bn], "relu1")
    p1 = b.node("MaxPool", [r1], "pool1", kernel_shape=[2, 2], strides=[2, 2])  # [8, 8, 8]
    c2 = b.conv(p1, "conv2", 8, 8, 3)
    r2 = b.node("Relu", [c2], "relu2")
    c3 = b.conv(r2, "conv3", 8, 8, 1)
    add = b.node("Add", [c3, p1], "residual")
    r3 = b.node("Relu", [add], "relu3")
    a1 = b.node("AveragePool", [r3], "avgpool", kernel_shape=[2, 2], strides=[2, 2])  # [8, 4, 4]
    dw = b.conv(a1, "dwconv", 8, 8, 3, group=8)
    cat = b.node("Concat", [a1, dw], "concat", axis=1)  # [16, 4, 4]
    gap = b.node("GlobalAveragePool", [cat], "gap")
    b.node("Flatten", [gap], "flatten", out="embedding", axis=1)
    fc = b.node(
        "Gemm", ["embedding", b.weight("fc.w", (10, 16), 16), b.bias("fc.b", 10)], "fc", transB=1
    )
    b.node("Softmax", [fc], "softmax", out="prob", axis=1)
    m = b.model(
        "conv_block",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch", 10]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 16])],
    )
    rng = np.random.default_rng(SEED + 100)
    return m, smooth_images(rng, 32, 3, 16, 16), smooth_images(rng, 16, 3, 16, 16)


def matmul_mlp():
    b = Builder(SEED + 1)
    x = "tokens"  # [batch, 8, 16]
    h = b.node("MatMul", [x, b.weight("mlp.w1", (16, 32), 16)], "mlp_fc1")
    h = b.node("Add", [h, b.bias("mlp.b1", 32)], "mlp_bias1")
    g = b.node("Sigmoid", [h], "mlp_gate")
    h = b.node("Mul", [h, g], "mlp_silu")
    h = b.node("MatMul", [h, b.weight("mlp.w2", (32, 16), 32)], "mlp_fc2")
    h = b.node("Add", [h, x], "mlp_residual")  # [batch, 8, 16]
    k = b.node("Transpose", [h], "keys_t", perm=[0, 2, 1])  # [batch, 16, 8]
    s = b.node("MatMul", [h, k], "attn_scores")  # [batch, 8, 8]
    s = b.node("Mul", [s, b.init("attn.scale", np.array(0.25, dtype=np.float32))], "scores_scaled")
    a = b.node("Softmax", [s], "attn", axis=-1)
    o = b.node("MatMul", [a, h], "attn_apply")  # [batch, 8, 16]
    r = b.node("Reshape", [o, b.init("flat.shape", np.array([0, 128], dtype=np.int64))], "reshape")
    b.node("Gemm", [r, b.weight("head.w", (128, 4), 128), b.bias("head.b", 4)], "head",
           out="scores_out")
    m = b.model(
        "matmul_mlp",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 8, 16])],
        [helper.make_tensor_value_info("scores_out", TensorProto.FLOAT, ["batch", 4])],
    )
    rng = np.random.default_rng(SEED + 101)
    calib = rng.standard_normal((32, 8, 16)).astype(np.float32)
    ev = rng.standard_normal((16, 8, 16)).astype(np.float32)
    return m, calib, ev


def rules():
    b = Builder(SEED + 2)
    x = "image"  # [batch, 1, 16, 16]
    xi = b.node("Identity", [x], "input_identity")
    s = b.conv(xi, "stem", 1, 8, 3)
    s = b.node(
        "Clip", [s, b.init("clip.min", np.array(0, dtype=np.float32)),
                 b.init("clip.max", np.array(6, dtype=np.float32))], "stem_clip",
    )
    a = b.conv(s, "head_a", 8, 8, 3, stride=2)  # [8, 8, 8]
    a = b.node("LeakyRelu", [a], "leaky", alpha=0.1)  # not quantized: stays float
    up = b.node(
        "ConvTranspose",
        [a, b.weight("up.w", (8, 4, 2, 2), 32), b.bias("up.b", 4)],
        "upsample", kernel_shape=[2, 2], strides=[2, 2],
    )  # [4, 16, 16]
    skip = b.conv(up, "skip_me", 4, 4, 3)  # excluded by name
    dbg = b.conv(skip, "dbg_probe", 4, 4, 1)  # excluded by regex ^dbg_
    # A constant subgraph (fold_constants): the scale of the Mul is computed from initializers.
    cs = b.node(
        "Mul", [b.init("const.a", np.full(4, 0.5, dtype=np.float32)),
                b.init("const.b", np.linspace(1, 2, 4, dtype=np.float32))], "const_mul",
    )
    cs = b.node("Reshape", [cs, b.init("const.shape", np.array([1, 4, 1, 1], dtype=np.int64))],
                "const_reshape")
    m1 = b.node("Mul", [dbg, cs], "channel_scale")
    r = b.node(
        "Resize", [m1, "", b.init("resize.scales", np.array([1, 1, 0.5, 0.5], dtype=np.float32))],
        "down", mode="nearest",
    )  # [4, 8, 8]
    t = b.node("Tanh", [r], "tanh")  # not quantized
    t = b.node("Identity", [t], "tanh_identity")
    gap = b.node("GlobalAveragePool", [t], "gap")
    flat = b.node("Flatten", [gap], "flatten", axis=1)  # [batch, 4]
    b.node("MatMul", [flat, b.weight("proj.w", (4, 6), 4)], "proj", out="out")  # op-type rule
    m = b.model(
        "rules",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", 1, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 6])],
    )
    rng = np.random.default_rng(SEED + 102)
    return m, smooth_images(rng, 32, 1, 16, 16), smooth_images(rng, 16, 1, 16, 16)


MODELS = {"conv_block": conv_block, "matmul_mlp": matmul_mlp, "rules": rules}


def write_if_changed(path, data):
    """Writes bytes unless the file already holds them (keeps timestamps of unchanged files)."""
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def npy_bytes(a):
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: e2e_models.py OUT_DIR")
    out = sys.argv[1]
    for name, make in MODELS.items():
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model, calib, ev = make()
        write_if_changed(os.path.join(d, "model.onnx"), model.SerializeToString())
        write_if_changed(os.path.join(d, "calib.npy"), npy_bytes(calib))
        write_if_changed(os.path.join(d, "eval.npy"), npy_bytes(ev))
        print(f"e2e_models: {name}: {len(model.graph.node)} nodes, calib {calib.shape}, eval {ev.shape}")


if __name__ == "__main__":
    main()
