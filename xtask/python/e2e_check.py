#!/usr/bin/env python3
"""The interop check of `cargo xtask e2e`: loads each model written by `qtool run` in the onnx
checker, ONNX Runtime and OpenVINO, runs it on the given samples and measures how far each runtime's
outputs are from qtool's own execution of the same model. It only measures; the tolerances are
applied by xtask/src/e2e.rs (documented in docs/e2e.md).

Usage: e2e_check.py SPEC.json RESULT.json

SPEC.json:
    {"checks": [{"model": "path/to/model.onnx",
                 "samples": [{"inputs": "in0.npz", "qtool": "qtool0.npz"}, ...]}]}
where each inputs .npz maps input names to arrays and each qtool .npz maps output names to qtool's
results for those inputs.

RESULT.json: per check, the onnx checker's verdict and, per runtime ("ort", "openvino"), either an
error or, per output: dtype, shape, max_abs (largest absolute difference to qtool over all samples),
rel_l2 (relative L2 error of all samples together, against qtool), and for quantized outputs `lsb`
(the quantization step: 1 for an integer tensor, the scale of the DequantizeLinear producing a float
output), max_lsb (max_abs in steps) and over_1lsb (the fraction of elements more than one step
apart).
"""

import json
import os
import sys
import traceback

import numpy as np
import onnx
from onnx import numpy_helper

# Keep the runtimes within the machine's two cores and deterministic.
THREADS = 2


def output_steps(model):
    """Output name -> quantization step, for outputs that are integer tensors (1) or come from a
    DequantizeLinear with a scalar constant scale (that scale)."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant" and n.attribute:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    producer = {o: n for n in g.node for o in n.output}
    steps = {}
    for out in g.output:
        elem = out.type.tensor_type.elem_type
        if elem in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32):
            steps[out.name] = 1.0
            continue
        n = producer.get(out.name)
        if n is None or n.op_type != "DequantizeLinear" or n.domain not in ("", "ai.onnx"):
            continue
        s = n.input[1]
        arr = numpy_helper.to_array(inits[s]) if s in inits else consts.get(s)
        if arr is not None and arr.size == 1:
            steps[out.name] = float(arr.reshape(()))
    return steps


def run_ort(path, samples):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return [dict(zip(names, sess.run(names, dict(s)))) for s in samples]


def run_openvino(path, samples):
    import openvino as ov

    core = ov.Core()
    # f32 for float parts: on CPUs with bf16 support OpenVINO would otherwise lower them to bf16.
    compiled = core.compile_model(
        path, "CPU",
        {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": THREADS},
    )
    req = compiled.create_infer_request()
    results = []
    for s in samples:
        req.infer({k: v for k, v in s.items()})
        out = {}
        for o in compiled.outputs:
            names = o.get_names()
            out_name = next(iter(sorted(names))) if names else o.get_any_name()
            value = np.array(req.get_tensor(o).data, copy=True)
            for name in names:
                out[name] = value
            out[out_name] = value
        results.append(out)
    return results


def compare(ours, theirs, steps, names):
    rows = []
    for name in names:
        a = np.concatenate([np.asarray(o[name]).reshape(-1).astype(np.float64) for o in ours])
        if not all(name in t for t in theirs):
            rows.append({"name": name, "error": "output missing from the runtime's results"})
            continue
        b_parts = [np.asarray(t[name]) for t in theirs]
        shapes = {tuple(np.asarray(o[name]).shape) for o in ours}
        their_shapes = {tuple(p.shape) for p in b_parts}
        b = np.concatenate([p.reshape(-1).astype(np.float64) for p in b_parts])
        row = {
            "name": name,
            "dtype": str(np.asarray(ours[0][name]).dtype),
            "shape": list(np.asarray(ours[0][name]).shape),
        }
        if shapes != their_shapes or a.shape != b.shape:
            row["error"] = f"shape differs: qtool {sorted(shapes)} vs {sorted(their_shapes)}"
            rows.append(row)
            continue
        d = np.abs(a - b)
        finite = np.isfinite(a) & np.isfinite(b)
        row["nonfinite_mismatch"] = int(np.sum(np.isfinite(a) != np.isfinite(b)))
        d = np.where(finite, d, 0.0)
        row["max_abs"] = float(d.max()) if d.size else 0.0
        denom = float(np.sqrt(np.sum(np.where(finite, a, 0.0) ** 2)))
        num = float(np.sqrt(np.sum(d**2)))
        row["rel_l2"] = num / denom if denom > 0 else (0.0 if num == 0 else float("inf"))
        step = steps.get(name)
        row["lsb"] = step
        if step:
            row["max_lsb"] = row["max_abs"] / step
            row["over_1lsb"] = float(np.mean(d > step * 1.0001)) if d.size else 0.0
        rows.append(row)
    return rows


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: e2e_check.py SPEC.json RESULT.json")
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    results = []
    for check in spec["checks"]:
        path = check["model"]
        entry = {"model": path, "runtimes": {}}
        try:
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            entry["checker"] = "ok"
        except Exception as e:  # the verdict is data; xtask fails the case
            entry["checker"] = f"{type(e).__name__}: {e}"
            model = onnx.load(path)
        steps = output_steps(model)
        names = [o.name for o in model.graph.output]
        samples, ours = [], []
        for s in check["samples"]:
            with np.load(s["inputs"]) as z:
                samples.append({k: z[k] for k in z.files})
            with np.load(s["qtool"]) as z:
                ours.append({k: z[k] for k in z.files})
        missing = [n for n in names if not all(n in o for o in ours)]
        if missing:
            entry["error"] = f"qtool's results lack outputs {missing}"
            results.append(entry)
            continue
        for rt, run in (("ort", run_ort), ("openvino", run_openvino)):
            try:
                theirs = run(path, samples)
                entry["runtimes"][rt] = {"outputs": compare(ours, theirs, steps, names)}
            except Exception as e:
                msg = "".join(traceback.format_exception_only(type(e), e)).strip()
                entry["runtimes"][rt] = {"error": msg[:2000]}
        results.append(entry)
        print(f"e2e_check: {os.path.basename(path)} checked", file=sys.stderr)
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"checks": results}, f, indent=1)
    os.replace(tmp, sys.argv[2])


if __name__ == "__main__":
    main()
