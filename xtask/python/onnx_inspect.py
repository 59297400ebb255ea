#!/usr/bin/env python3
"""Print a JSON summary of an ONNX model: the reference for `qtool inspect --json`.

Usage: onnx_inspect.py MODEL

Output keys: ir_version, opset_import (domain -> version, "" for the default domain), producer
(name and version), inputs/outputs (name, elem_type name such as "FLOAT", shape where each dim is an
int (as stored, so a negative dim_value some exporters write stays negative), a dim_param string,
or null when unknown; shape null for an unranked tensor), and op_histogram
("domain::op_type" -> count, over the main graph and all subgraphs; the default domain is written
as "ai.onnx"). Initializers that are also listed as graph inputs are not reported as inputs.
"""

from __future__ import annotations

import json
import sys
from collections import Counter

import onnx
from onnx import TensorProto


def dim_value(d: onnx.TensorShapeProto.Dimension):
    kind = d.WhichOneof("value")
    if kind == "dim_value":
        return d.dim_value
    if kind == "dim_param":
        return d.dim_param
    return None


def describe(vi: onnx.ValueInfoProto) -> dict:
    t = vi.type
    kind = t.WhichOneof("value")
    if kind == "tensor_type":
        tt = t.tensor_type
        shape = [dim_value(d) for d in tt.shape.dim] if tt.HasField("shape") else None
        return {
            "name": vi.name,
            "elem_type": TensorProto.DataType.Name(tt.elem_type),
            "shape": shape,
        }
    return {"name": vi.name, "elem_type": kind or "none", "shape": None}


def count_ops(graph: onnx.GraphProto, hist: Counter) -> None:
    for node in graph.node:
        hist[f"{node.domain or 'ai.onnx'}::{node.op_type}"] += 1
        for attr in node.attribute:
            if attr.HasField("g"):
                count_ops(attr.g, hist)
            for g in attr.graphs:
                count_ops(g, hist)


def inspect(path: str) -> dict:
    model = onnx.load(path, load_external_data=False)
    graph = model.graph
    init_names = {t.name for t in graph.initializer}
    hist: Counter = Counter()
    count_ops(graph, hist)
    return {
        "ir_version": model.ir_version,
        "opset_import": {o.domain: o.version for o in sorted(model.opset_import, key=lambda o: o.domain)},
        "producer": {"name": model.producer_name, "version": model.producer_version},
        "inputs": [describe(vi) for vi in graph.input if vi.name not in init_names],
        "outputs": [describe(vi) for vi in graph.output],
        "num_nodes": len(graph.node),
        "num_initializers": len(graph.initializer),
        "op_histogram": dict(sorted(hist.items())),
    }


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    json.dump(inspect(sys.argv[1]), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
