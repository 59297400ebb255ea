#!/usr/bin/env python3
"""Run a model in onnxruntime (CPU, no graph optimizations) and save EVERY intermediate value.

Usage: ort_intermediates.py MODEL --inputs IN.npz --out OUT.npz

Every output of every node (except Constant nodes) is added as a graph output, so ORT computes and
returns it. OUT.npz holds them keyed by value name; the key list in node order is also written to
OUT.npz.names (one per line), because npz keys cannot carry '/'-free names reliably.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import onnx
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    m = onnx.load(args.model)
    existing = {o.name for o in m.graph.output}
    names = []
    for n in m.graph.node:
        if n.op_type == "Constant":
            continue
        for o in n.output:
            if not o:
                continue
            names.append(o)
            if o not in existing:
                m.graph.output.append(onnx.ValueInfoProto(name=o))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    with np.load(args.inputs) as d:
        feeds = {i.name: d[i.name] for i in sess.get_inputs()}
    res = sess.run(names, feeds)
    arrays = {f"v{i}": r for i, r in enumerate(res)}
    np.savez(args.out, **arrays)
    with open(args.out + ".names", "w", encoding="utf-8") as f:
        for n in names:
            f.write(n + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
