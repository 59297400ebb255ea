#!/usr/bin/env python3
"""Generate testdata/onnx-node/ from the onnx package's backend node test cases.

Run by `cargo xtask onnx-node` with the reference venv (see requirements.txt). For a fixed allowlist
of op types (the ops qtool supports) every node test case that `onnx.backend.test.case.node`
generates is either written in the standard ONNX backend-test layout

    <out>/<case>/model.onnx
    <out>/<case>/test_data_set_0/input_N.pb, output_N.pb   (TensorProto)

or listed as excluded with a reason. `<out>/manifest.json` lists every case of an allowlisted op.
The output is deterministic: numpy's global RNG is seeded before the generators run, cases are
sorted by name and nothing time-dependent is written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import warnings

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

ALLOWLIST = [
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "InstanceNormalization",
    "LayerNormalization", "Relu", "LeakyRelu", "PRelu", "Elu", "Clip", "Sigmoid", "HardSigmoid",
    "HardSwish", "Tanh", "Erf", "Exp", "Log", "Sqrt", "Pow", "Reciprocal", "Neg", "Abs", "Floor",
    "Ceil", "Softmax", "LogSoftmax", "Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean",
    "Equal", "Less", "Greater", "Not", "And", "Where", "MaxPool", "AveragePool",
    "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
    "ReduceProd", "ReduceL2", "ArgMax", "ArgMin", "Resize", "Upsample", "Concat", "Split", "Slice",
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Expand", "Tile", "Pad", "Gather",
    "GatherElements", "Shape", "Size", "Cast", "Constant", "ConstantOfShape", "Range", "Identity",
    "Dropout", "TopK", "CumSum", "Einsum", "LSTM", "GRU", "QuantizeLinear", "DequantizeLinear",
    "DynamicQuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul",
]
ALLOWED_OPS = frozenset(ALLOWLIST)

# Element types qtool handles; every other one (string, float8*, int4/uint4, float4, complex, ...)
# excludes a case.
SUPPORTED_DTYPES = frozenset(
    [
        TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16,
        TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16,
        TensorProto.INT32, TensorProto.UINT32, TensorProto.INT64, TensorProto.UINT64,
        TensorProto.BOOL,
    ]
)

DEFAULT_DOMAINS = ("", "ai.onnx")

# A case whose files together exceed this many bytes is excluded with reason "size".
MAX_CASE_BYTES = 512 * 1024


def dtype_name(elem_type: int) -> str:
    return TensorProto.DataType.Name(elem_type).lower()


def collect_cases():
    """All node test cases, each tagged with the op type and domain of the node under test."""
    import onnx.backend.test.case.node as node_pkg
    from onnx.backend.test.case.utils import import_recursive

    tagged = []
    real_expect = node_pkg.expect

    def expect(node_op, *args, **kwargs):
        before = len(node_pkg._NodeTestCases)
        real_expect(node_op, *args, **kwargs)
        for case in node_pkg._NodeTestCases[before:]:
            tagged.append((case, node_op.op_type, node_op.domain))

    # The generator modules do `from onnx.backend.test.case.node import expect` when imported,
    # so patching the package attribute before importing them routes every case through here.
    node_pkg.expect = expect
    np.random.seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import_recursive(node_pkg)
    node_pkg.expect = real_expect
    return tagged


def graph_ops(graph: onnx.GraphProto, acc: set) -> None:
    for node in graph.node:
        acc.add((node.domain, node.op_type))
        for attr in node.attribute:
            if attr.HasField("g"):
                graph_ops(attr.g, acc)
            for g in attr.graphs:
                graph_ops(g, acc)


def graph_dtypes(graph: onnx.GraphProto, acc: set) -> None:
    """Element types of initializers, tensor attributes and Cast-like `to` attributes."""
    for init in graph.initializer:
        acc.add(init.data_type)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                acc.add(attr.t.data_type)
            for t in attr.tensors:
                acc.add(t.data_type)
            if attr.name in ("to", "output_dtype", "dtype") and attr.type == onnx.AttributeProto.INT:
                if attr.i != 0:
                    acc.add(attr.i)
            if attr.HasField("g"):
                graph_dtypes(attr.g, acc)
            for g in attr.graphs:
                graph_dtypes(g, acc)


def value_kind(vi: onnx.ValueInfoProto) -> str:
    return vi.type.WhichOneof("value") or "none"


def describe_values(vis, values):
    out = []
    for vi, value in zip(vis, values, strict=True):
        kind = value_kind(vi)
        entry = {"name": vi.name}
        if kind == "tensor_type":
            entry["dtype"] = dtype_name(vi.type.tensor_type.elem_type)
            if isinstance(value, TensorProto):
                entry["shape"] = list(value.dims)
            else:
                entry["shape"] = list(np.asarray(value).shape)
        else:
            entry["dtype"] = kind.removesuffix("_type")
            entry["shape"] = None
        out.append(entry)
    return out


def to_tensor_proto(value, name: str) -> TensorProto:
    if isinstance(value, TensorProto):
        t = TensorProto()
        t.CopyFrom(value)
        t.name = name
        return t
    return numpy_helper.from_array(np.asarray(value), name)


def exclusion_reason(case, op_type: str, domain: str):
    """Returns (kind, detail) when the case cannot be used, else None."""
    model = case.model
    graph = model.graph
    if domain not in DEFAULT_DOMAINS:
        return ("domain", f"node domain {domain!r}")

    kinds = sorted(
        {value_kind(vi) for vi in list(graph.input) + list(graph.output)} - {"tensor_type"}
    )
    if kinds:
        return ("non-tensor type", ", ".join(k.removesuffix("_type") for k in kinds))

    dtypes = {vi.type.tensor_type.elem_type for vi in list(graph.input) + list(graph.output)}
    graph_dtypes(graph, dtypes)
    bad = sorted(dtype_name(d) for d in dtypes - SUPPORTED_DTYPES)
    if bad:
        return ("dtype", ", ".join(bad))

    for node in graph.node:
        if node.op_type == "BatchNormalization":
            for attr in node.attribute:
                if attr.name == "training_mode" and attr.i != 0:
                    return ("training mode", "BatchNormalization training_mode=1")
        if node.op_type == "Dropout" and len(node.input) >= 3 and node.input[2] != "":
            return ("training mode", "Dropout with a training_mode input")

    ops = set()
    graph_ops(graph, ops)
    foreign = sorted(
        f"{d}::{t}" if d not in DEFAULT_DOMAINS else t
        for d, t in ops
        if d not in DEFAULT_DOMAINS or t not in ALLOWED_OPS
    )
    if foreign:
        return ("ops outside the allowlist", ", ".join(foreign))
    return None


def manifest_json(manifest: dict) -> str:
    """Pretty JSON with one line per case (compact, and diffs stay readable)."""
    lines = ["{"]
    items = list(manifest.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i + 1 < len(items) else ""
        if key == "cases":
            lines.append(f"  {json.dumps(key)}: [")
            for j, case in enumerate(value):
                sep = "," if j + 1 < len(value) else ""
                lines.append("    " + json.dumps(case, separators=(", ", ": ")) + sep)
            lines.append("  ]" + comma)
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output directory (testdata/onnx-node)")
    args = ap.parse_args()
    out = os.path.abspath(args.out)

    tagged = collect_cases()
    selected = [(c, op, dom) for c, op, dom in tagged if op in ALLOWED_OPS]
    selected.sort(key=lambda x: x[0].name)
    names = [c.name for c, _, _ in selected]
    if len(names) != len(set(names)):
        raise SystemExit("duplicate test case names")

    # Start from a clean directory so that removed cases do not linger.
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)

    entries = []
    counts: dict[str, int] = {}
    for case, op_type, domain in selected:
        model = case.model
        graph = model.graph
        assert case.data_sets is not None and len(case.data_sets) == 1
        inputs, outputs = case.data_sets[0]
        opset = {(o.domain or ""): o.version for o in model.opset_import}
        entry = {
            "name": case.name,
            "op_type": op_type,
            "domain": domain,
            "opset": opset.get("", opset.get("ai.onnx")),
            "opset_import": dict(sorted(opset.items())),
            "ir_version": model.ir_version,
            "expanded": "_expanded" in case.name,
            "inputs": describe_values(graph.input, inputs),
            "outputs": describe_values(graph.output, outputs),
            "rtol": case.rtol,
            "atol": case.atol,
        }
        reason = exclusion_reason(case, op_type, domain)
        files = None
        if reason is None:
            files = {"model.onnx": model.SerializeToString()}
            for j, (vi, value) in enumerate(zip(graph.input, inputs, strict=True)):
                files[f"test_data_set_0/input_{j}.pb"] = to_tensor_proto(
                    value, vi.name
                ).SerializeToString()
            for j, (vi, value) in enumerate(zip(graph.output, outputs, strict=True)):
                files[f"test_data_set_0/output_{j}.pb"] = to_tensor_proto(
                    value, vi.name
                ).SerializeToString()
            size = sum(len(b) for b in files.values())
            if size > MAX_CASE_BYTES:
                reason = ("size", f"{size} bytes > {MAX_CASE_BYTES}")
        if reason is None:
            for rel, data in files.items():
                path = os.path.join(out, case.name, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            entry["status"] = "included"
            entry["bytes"] = sum(len(b) for b in files.values())
            counts["included"] = counts.get("included", 0) + 1
        else:
            kind, detail = reason
            entry["status"] = "excluded"
            entry["reason"] = f"{kind}: {detail}"
            entry["reason_kind"] = kind
            key = f"excluded ({kind})"
            counts[key] = counts.get(key, 0) + 1
        entries.append(entry)

    manifest = {
        "generator": "xtask/python/gen_onnx_node.py",
        "onnx_version": onnx.__version__,
        "numpy_version": np.__version__,
        "allowlist": ALLOWLIST,
        "max_case_bytes": MAX_CASE_BYTES,
        "counts": dict(sorted(counts.items())),
        "cases": entries,
    }
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        f.write(manifest_json(manifest))

    covered = {e["op_type"] for e in entries if e["status"] == "included"}
    missing = [op for op in ALLOWLIST if op not in covered]
    for key, n in sorted(counts.items()):
        print(f"gen_onnx_node: {key}: {n}", file=sys.stderr)
    if missing:
        print(f"gen_onnx_node: allowlisted ops without an included case: {', '.join(missing)}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
