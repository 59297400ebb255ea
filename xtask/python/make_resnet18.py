#!/usr/bin/env python3
"""Build a ResNet-18-style FP32 ONNX model with seeded random weights (deterministic).

Usage: make_resnet18.py OUT.onnx [--seed S]

The architecture is torchvision's ResNet-18 (conv 7x7/2 + BN + ReLU, max-pool 3x3/2, four stages of
two basic blocks with 64/128/256/512 channels, global average pool, 1000-way Gemm), input
"input" [1, 3, 224, 224], output "logits" [1, 1000]. BatchNormalization nodes are kept (as an
exported, unfolded model has them). Weights are He-normal with a fixed seed so the activations have
realistic, non-degenerate distributions; the same seed always gives the same bytes.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Builder:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}_{self.n}"

    def init(self, name: str, arr: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
        return name

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int, relu: bool) -> str:
        c = self.name("conv")
        fan_in = cin * k * k
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), size=(cout, cin, k, k))
        self.init(c + ".w", w)
        y = c + ".out"
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, c + ".w"],
                [y],
                name=c,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[k // 2] * 4,
            )
        )
        b = self.name("bn")
        self.init(b + ".scale", self.rng.uniform(0.5, 1.5, size=cout))
        self.init(b + ".bias", self.rng.normal(0.0, 0.1, size=cout))
        self.init(b + ".mean", self.rng.normal(0.0, 0.1, size=cout))
        self.init(b + ".var", self.rng.uniform(0.5, 2.0, size=cout))
        z = b + ".out"
        self.nodes.append(
            helper.make_node(
                "BatchNormalization",
                [y, b + ".scale", b + ".bias", b + ".mean", b + ".var"],
                [z],
                name=b,
            )
        )
        if relu:
            r = self.name("relu")
            self.nodes.append(helper.make_node("Relu", [z], [r + ".out"], name=r))
            return r + ".out"
        return z

    def block(self, x: str, cin: int, cout: int, stride: int) -> str:
        y = self.conv_bn(x, cin, cout, 3, stride, True)
        y = self.conv_bn(y, cout, cout, 3, 1, False)
        skip = x
        if stride != 1 or cin != cout:
            skip = self.conv_bn(x, cin, cout, 1, stride, False)
        a = self.name("add")
        self.nodes.append(helper.make_node("Add", [y, skip], [a + ".out"], name=a))
        r = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [a + ".out"], [r + ".out"], name=r))
        return r + ".out"


def build(seed: int) -> onnx.ModelProto:
    b = Builder(seed)
    x = b.conv_bn("input", 3, 64, 7, 2, True)
    p = b.name("maxpool")
    b.nodes.append(
        helper.make_node(
            "MaxPool", [x], [p + ".out"], name=p, kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4
        )
    )
    x = p + ".out"
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        x = b.block(x, cin, cout, stride)
        x = b.block(x, cout, cout, 1)
        cin = cout
    g = b.name("gap")
    b.nodes.append(helper.make_node("GlobalAveragePool", [x], [g + ".out"], name=g))
    f = b.name("flatten")
    b.nodes.append(helper.make_node("Flatten", [g + ".out"], [f + ".out"], name=f, axis=1))
    b.init("fc.w", b.rng.normal(0.0, np.sqrt(1.0 / 512), size=(1000, 512)))
    b.init("fc.b", np.zeros(1000))
    b.nodes.append(
        helper.make_node("Gemm", [f + ".out", "fc.w", "fc.b"], ["logits"], name="fc", transB=1)
    )
    graph = helper.make_graph(
        b.nodes,
        "resnet18_random",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
        b.inits,
    )
    m = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="qtool-make-resnet18"
    )
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    onnx.save(build(args.seed), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
