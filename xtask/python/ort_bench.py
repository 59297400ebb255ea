#!/usr/bin/env python3
"""Time ONNX models in onnxruntime (CPU): median latency per model.

Usage: ort_bench.py --threads N --repeat R --warmup W MODEL:INPUTS.npz [MODEL:INPUTS.npz ...]

Prints one JSON object per model on stdout: {"model": ..., "threads": N, "median_ms": ..., "min_ms": ...}.
Sessions use ORT_ENABLE_ALL (ORT's normal deployment setting), intra-op threads = N, sequential
execution, and spinning disabled so that its threads do not steal the other process's core.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("items", nargs="+")
    args = ap.parse_args()
    for item in args.items:
        model, inputs = item.rsplit(":", 1)
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.log_severity_level = 3
        sess = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
        with np.load(inputs) as d:
            feeds = {i.name: d[i.name] for i in sess.get_inputs()}
        for _ in range(args.warmup):
            sess.run(None, feeds)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps({"model": model, "threads": args.threads, "median_ms": statistics.median(times), "min_ms": min(times)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
