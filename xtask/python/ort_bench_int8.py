#!/usr/bin/env python3
"""Make the int8 benchmark models of `cargo xtask bench` (timed by ort_bench.py and by qtool).

Usage: ort_bench_int8.py --out-dir DIR

Writes single-op int8 models with random constant weights and their inputs (uint8 activations,
int8 weights, as ONNX Runtime's quantizer writes them), and an FP32 ResNet-style model to be
quantized by both tools. Prints one JSON object per case on stdout:
{"name", "group", "model", "inputs", "macs"} (macs: multiply-accumulates of one run; the FP32
model has group "fp32 for int8").
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RNG = np.random.default_rng(7)


def save(out_dir: str, name: str, group: str, nodes, inputs, outputs, inits, feeds, macs, opset=13):
    g = helper.make_graph(nodes, name, inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="qtool-bench")
    m.ir_version = 8
    onnx.checker.check_model(m)
    mp = os.path.join(out_dir, f"{name}.onnx")
    ip = os.path.join(out_dir, f"{name}.npz")
    onnx.save(m, mp)
    np.savez(ip, **feeds)
    print(json.dumps({"name": name, "group": group, "model": mp, "inputs": ip, "macs": macs}), flush=True)


def c(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def qlinear_conv(out_dir, name, cin, cout, hw, k, stride, group):
    pad = k // 2
    ohw = (hw + 2 * pad - k) // stride + 1
    x = RNG.integers(0, 256, size=(1, cin, hw, hw), dtype=np.uint8)
    w = RNG.integers(-127, 128, size=(cout, cin // group, k, k), dtype=np.int8)
    inits = [
        c("xs", np.float32(0.02)),
        c("xz", np.uint8(120)),
        c("w", w),
        c("ws", RNG.uniform(0.001, 0.004, size=cout).astype(np.float32)),
        c("wz", np.zeros(cout, dtype=np.int8)),
        c("ys", np.float32(0.5)),
        c("yz", np.uint8(128)),
        c("b", RNG.integers(-2000, 2000, size=cout).astype(np.int32)),
    ]
    node = helper.make_node(
        "QLinearConv",
        ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"],
        ["y"],
        group=group,
        kernel_shape=[k, k],
        pads=[pad] * 4,
        strides=[stride] * 2,
    )
    save(
        out_dir,
        name,
        "int8 qlinearconv",
        [node],
        [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, (1, cout, ohw, ohw))],
        inits,
        {"x": x},
        cout * ohw * ohw * (cin // group) * k * k,
    )


def conv_integer(out_dir, name, cin, cout, hw, k):
    pad = k // 2
    x = RNG.integers(0, 256, size=(1, cin, hw, hw), dtype=np.uint8)
    w = RNG.integers(-127, 128, size=(cout, cin, k, k), dtype=np.int8)
    inits = [c("xz", np.uint8(120)), c("w", w), c("wz", np.int8(0))]
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], kernel_shape=[k, k], pads=[pad] * 4)
    save(
        out_dir,
        name,
        "int8 convinteger",
        [node],
        [helper.make_tensor_value_info("x", TensorProto.UINT8, x.shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT32, (1, cout, hw, hw))],
        inits,
        {"x": x},
        cout * hw * hw * cin * k * k,
    )


def matmuls(out_dir, m, k, n):
    a = RNG.integers(0, 256, size=(m, k), dtype=np.uint8)
    b = RNG.integers(-127, 128, size=(k, n), dtype=np.int8)
    node = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])
    save(
        out_dir,
        f"matmulinteger_{m}x{k}x{n}",
        "int8 matmul",
        [node],
        [helper.make_tensor_value_info("a", TensorProto.UINT8, a.shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT32, (m, n))],
        [c("b", b), c("az", np.uint8(120)), c("bz", np.int8(0))],
        {"a": a},
        m * k * n,
    )
    node = helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    save(
        out_dir,
        f"qlinearmatmul_{m}x{k}x{n}",
        "int8 matmul",
        [node],
        [helper.make_tensor_value_info("a", TensorProto.UINT8, a.shape)],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, (m, n))],
        [
            c("b", b),
            c("as", np.float32(0.02)),
            c("az", np.uint8(120)),
            c("bs", np.float32(0.003)),
            c("bz", np.int8(0)),
            c("ys", np.float32(2.0)),
            c("yz", np.uint8(128)),
        ],
        {"a": a},
        m * k * n,
    )


def resnet_style(out_dir):
    """A ResNet-18-shaped FP32 CNN (stem 7x7/2, max pool, 4 stages of 2 basic blocks, GAP, FC) at
    224x224 with He-initialized random weights and BN folded in (what a deployed model looks like)."""
    nodes, inits = [], []
    macs = 0
    cnt = [0]

    def conv(x, cin, cout, k, s, hw, relu=True):
        nonlocal macs
        i = cnt[0]
        cnt[0] += 1
        w = (RNG.standard_normal((cout, cin, k, k)) * np.sqrt(2.0 / (cin * k * k))).astype(np.float32)
        b = (RNG.standard_normal(cout) * 0.05).astype(np.float32)
        inits.extend([c(f"w{i}", w), c(f"b{i}", b)])
        y = f"c{i}"
        nodes.append(
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [y], kernel_shape=[k, k], pads=[k // 2] * 4, strides=[s, s])
        )
        ohw = (hw + 2 * (k // 2) - k) // s + 1
        macs += cout * ohw * ohw * cin * k * k
        if relu:
            nodes.append(helper.make_node("Relu", [y], [y + "r"]))
            y += "r"
        return y, ohw

    y, hw = conv("x", 3, 64, 7, 2, 224)
    nodes.append(helper.make_node("MaxPool", [y], ["pool"], kernel_shape=[3, 3], pads=[1] * 4, strides=[2, 2]))
    y, hw = "pool", (hw + 2 - 3) // 2 + 1
    cin = 64
    for stage, cout in enumerate([64, 128, 256, 512]):
        for blk in range(2):
            s = 2 if (stage > 0 and blk == 0) else 1
            a, ohw = conv(y, cin, cout, 3, s, hw)
            b2, _ = conv(a, cout, cout, 3, 1, ohw, relu=False)
            short = y
            if s != 1 or cin != cout:
                short, _ = conv(y, cin, cout, 1, s, hw, relu=False)
            n = f"add{stage}_{blk}"
            nodes.append(helper.make_node("Add", [b2, short], [n]))
            nodes.append(helper.make_node("Relu", [n], [n + "r"]))
            y, hw, cin = n + "r", ohw, cout
    nodes.append(helper.make_node("GlobalAveragePool", [y], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"]))
    fw = (RNG.standard_normal((512, 1000)) * np.sqrt(1.0 / 512)).astype(np.float32)
    inits.extend([c("fw", fw), c("fb", np.zeros(1000, np.float32))])
    nodes.append(helper.make_node("Gemm", ["flat", "fw", "fb"], ["logits"]))
    macs += 512 * 1000
    x = RNG.uniform(0.0, 1.0, size=(1, 3, 224, 224)).astype(np.float32)
    save(
        out_dir,
        "resnet18_style",
        "fp32 for int8",
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, (1, 1000))],
        inits,
        {"x": x},
        macs,
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args()
    d = args.out_dir
    # ResNet stage shapes, a MobileNet-style depthwise layer, the ResNet stem.
    qlinear_conv(d, "qconv3x3_64_56", 64, 64, 56, 3, 1, 1)
    qlinear_conv(d, "qconv1x1_256to64_56", 256, 64, 56, 1, 1, 1)
    qlinear_conv(d, "qconv3x3_128_28", 128, 128, 28, 3, 1, 1)
    qlinear_conv(d, "qconv3x3_512_7", 512, 512, 7, 3, 1, 1)
    qlinear_conv(d, "qdw3x3_144_56", 144, 144, 56, 3, 1, 144)
    qlinear_conv(d, "qstem7x7s2_3to64_224", 3, 64, 224, 7, 2, 1)
    conv_integer(d, "convint_s8w_3x3_64_56", 64, 64, 56, 3)
    conv_integer(d, "convint_s8w_1x1_256to64_56", 256, 64, 56, 1)
    matmuls(d, 128, 768, 768)
    matmuls(d, 128, 768, 3072)
    resnet_style(d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
