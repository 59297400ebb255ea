#!/usr/bin/env python3
"""Run an ONNX model with onnxruntime (CPU) on inputs from an .npz file.

Usage: ort_run.py MODEL --inputs IN.npz --out OUT.npz [--opt-level LEVEL] [--threads N]

IN.npz holds one array per model input, keyed by input name (arrays saved positionally by
np.savez as arr_0, arr_1, ... are matched to the inputs in order). OUT.npz receives every model
output keyed by output name. --opt-level is one of disable, basic, extended, layout, all
(default all = ORT_ENABLE_ALL). --threads sets the intra-op threads (default 1, for
reproducible results).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import onnxruntime as ort

LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "layout": "ORT_ENABLE_LAYOUT",
    "all": "ORT_ENABLE_ALL",
}


def main() -> int:
    ap = argparse.ArgumentParser(description="run a model with onnxruntime CPU")
    ap.add_argument("model")
    ap.add_argument("--inputs", required=True, help="input .npz keyed by input name")
    ap.add_argument("--out", required=True, help="output .npz, keyed by output name")
    ap.add_argument("--opt-level", choices=sorted(LEVELS), default="all")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    level = getattr(ort.GraphOptimizationLevel, LEVELS[args.opt_level], None)
    if level is None:
        print(f"onnxruntime {ort.__version__} has no {LEVELS[args.opt_level]}", file=sys.stderr)
        return 2
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(args.model, sess_options=so, providers=["CPUExecutionProvider"])

    names = [i.name for i in sess.get_inputs()]
    with np.load(args.inputs, allow_pickle=False) as data:
        keys = list(data.keys())
        if all(n in keys for n in names):
            feeds = {n: data[n] for n in names}
        elif keys == [f"arr_{i}" for i in range(len(names))]:
            feeds = {n: data[k] for n, k in zip(names, keys, strict=True)}
        else:
            print(f"inputs {keys} do not match the model inputs {names}", file=sys.stderr)
            return 2

    out_names = [o.name for o in sess.get_outputs()]
    results = sess.run(out_names, feeds)
    np.savez(args.out, **dict(zip(out_names, results, strict=True)))
    for n, r in zip(out_names, results, strict=True):
        print(f"{n}: {r.dtype} {list(r.shape)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
