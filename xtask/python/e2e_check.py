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

Optional fields of a check, each adding a measurement:

- "fp32": the FP32 model the output was made from. Its outputs (ONNX Runtime) on the same samples
  give, per output, `quant_rel_l2`: qtool's own relative L2 error against FP32, the quantization
  error the runtimes' disagreement is measured against, and `runtime_rel_l2_fp32`: the runtime's.
- "values": {"inputs": IN.npz, "values": VALUES.npz, "names": NAMES.json}: every value qtool
  computed on one input (the run's observer; VALUES.npz keys v0, v1, ... in the order of NAMES.json).
  Adds the per-op check, "units": the model is cut into quantized units (one per integer tensor and
  one per float graph output: the nodes between it and the integer tensors, graph inputs and
  initializers it is computed from; a QDQ unit is DequantizeLinear -> op -> QuantizeLinear, a
  QLinearConv is a unit alone), and each unit runs in ONNX Runtime as a small model fed qtool's own
  values of its inputs: its output is compared with qtool's (in steps for integer tensors and
  DequantizeLinear outputs, else as a relative L2 error). Also "intermediates": the full model in
  ONNX Runtime with its integer tensors exposed as outputs, each compared with qtool's (information:
  how 1-step differences grow along the network).
- "qtool": the qtool binary. Needed for a model with com.microsoft DynamicQuantizeMatMul: OpenVINO's
  ONNX frontend computes that op as a float MatMul of the unquantized A with the dequantized B (it
  does not quantize A; see docs/e2e.md), so OpenVINO is compared with qtool running the model with
  that op written out as DequantizeLinear(B) -> MatMul (-> Add bias), and the distance to qtool's
  int8 result is reported as `raw_rel_l2`.
"""

import json
import os
import subprocess
import sys
import tempfile
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


def run_openvino(path, samples, extra=None):
    import openvino as ov

    core = ov.Core()
    # f32 for float parts: on CPUs with bf16 support OpenVINO would otherwise lower them to bf16.
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": THREADS}
    config.update(extra or {})
    compiled = core.compile_model(path, "CPU", config)
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


def ort_session(model_bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def is_integer(array):
    return array is not None and np.asarray(array).dtype.kind in "iub"


def value_info(name, array):
    a = np.asarray(array)
    return onnx.helper.make_tensor_value_info(
        name, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape)
    )


def quantized_units(model, values):
    """The model cut at its integer tensors: a list of (output, node indices, boundary inputs).

    A unit ends at an integer tensor, or at a float graph output, and holds the nodes it is computed
    from back to the nearest integer tensors (every output of a node that makes an integer tensor
    counts as one, e.g. DynamicQuantizeLinear's scale), graph inputs and initializers."""
    g = model.graph
    producer = {}
    for i, n in enumerate(g.node):
        for o in n.output:
            if o:
                producer[o] = i
    inits = {t.name for t in g.initializer}
    quantizers = {
        i for i, n in enumerate(g.node)
        if n.op_type != "Constant" and any(is_integer(values.get(o)) for o in n.output if o)
    }
    graph_outputs = [o.name for o in g.output]
    targets = [o for i in sorted(quantizers) for o in g.node[i].output if is_integer(values.get(o))]
    targets += [o for o in graph_outputs if o not in targets and o in producer]
    units = []
    for v in targets:
        first = producer[v]
        nodes, boundary, stack = {first}, [], list(g.node[first].input)
        while stack:
            x = stack.pop()
            if not x or x in inits:
                continue
            j = producer.get(x)
            if j is None or j in quantizers:
                if x not in boundary:
                    boundary.append(x)
                continue
            if j not in nodes:
                nodes.add(j)
                stack.extend(g.node[j].input)
        units.append((v, sorted(nodes), boundary))
    return units


def unit_model(model, nodes, boundary, output, values):
    g = model.graph
    used = {x for j in nodes for x in g.node[j].input}
    graph = onnx.helper.make_graph(
        [g.node[j] for j in nodes],
        "unit",
        [value_info(x, values[x]) for x in boundary],
        [value_info(output, values[output])],
        initializer=[t for t in g.initializer if t.name in used],
    )
    m = onnx.helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m


def measure(ours, theirs, step):
    a = np.asarray(ours).astype(np.float64).reshape(-1)
    b = np.asarray(theirs).astype(np.float64).reshape(-1)
    d = np.abs(a - b)
    row = {"max_abs": float(d.max()) if d.size else 0.0}
    denom = float(np.sqrt(np.sum(a**2)))
    num = float(np.sqrt(np.sum(d**2)))
    row["rel_l2"] = num / denom if denom > 0 else (0.0 if num == 0 else float("inf"))
    if step:
        row["max_lsb"] = row["max_abs"] / step
        row["over_0lsb"] = float(np.mean(d > step * 1e-4)) if d.size else 0.0
    return row


def dq_steps(model):
    """Value name -> step, for the outputs of every DequantizeLinear with a scalar constant scale."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    steps = {}
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.domain in ("", "ai.onnx") and n.input[1] in inits:
            arr = numpy_helper.to_array(inits[n.input[1]])
            if arr.size == 1:
                steps[n.output[0]] = float(arr.reshape(()))
    return steps


def check_units(model, values):
    """The per-op check: every quantized unit run alone in ONNX Runtime on qtool's own values of its
    inputs, its output compared with qtool's."""
    steps = dq_steps(model)
    rows = []
    for output, nodes, boundary in quantized_units(model, values):
        ops = [model.graph.node[j].op_type for j in nodes]
        row = {"output": output, "ops": ops}
        missing = [x for x in boundary + [output] if x not in values]
        if missing:
            row["error"] = f"qtool's values lack {missing}"
            rows.append(row)
            continue
        try:
            sess = ort_session(unit_model(model, nodes, boundary, output, values).SerializeToString())
            (theirs,) = sess.run([output], {x: values[x] for x in boundary})
        except Exception as e:
            row["error"] = "".join(traceback.format_exception_only(type(e), e)).strip()[:1000]
            rows.append(row)
            continue
        ours = values[output]
        if np.asarray(theirs).shape != np.asarray(ours).shape:
            row["error"] = f"shape differs: qtool {list(ours.shape)} vs {list(theirs.shape)}"
            rows.append(row)
            continue
        step = 1.0 if is_integer(ours) else steps.get(output)
        row.update(measure(ours, theirs, step))
        rows.append(row)
    return rows


def ort_intermediates(model, inputs, values):
    """The whole model in ONNX Runtime with every 8-bit tensor exposed as an output, each compared
    with qtool's value of it (steps). Int32 accumulators are left out: their unit is not a step."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    present = {o.name for o in m.graph.output}
    names = []
    for n in m.graph.node:
        for o in n.output:
            if o and np.asarray(values.get(o, 0.0)).dtype in (np.int8, np.uint8) \
                    and n.op_type != "Constant":
                names.append(o)
                if o not in present:
                    m.graph.output.append(value_info(o, values[o]))
    if not names:
        return []
    sess = ort_session(m.SerializeToString())
    res = sess.run(names, inputs)
    return [{"name": k, **measure(values[k], r, 1.0)} for k, r in zip(names, res)]


def float_a_variant(model):
    """The model with every com.microsoft DynamicQuantizeMatMul written out as OpenVINO computes it
    (A not quantized): a float MatMul with B dequantized into a float initializer (-> Add bias).
    B is folded rather than left as DequantizeLinear -> MatMul because ONNX Runtime, and qtool
    after it, run that pair as a dynamically quantized MatMul again. None when there is none."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name: t for t in m.graph.initializer}
    nodes, changed = [], False
    for n in m.graph.node:
        if n.op_type != "DynamicQuantizeMatMul" or n.domain != "com.microsoft":
            nodes.append(n)
            continue
        ins = list(n.input) + [""] * (5 - len(n.input))
        if ins[1] not in inits or ins[2] not in inits or (ins[3] and ins[3] not in inits):
            raise RuntimeError(f"{n.name}: DynamicQuantizeMatMul with a B that is not constant")
        changed = True
        b = numpy_helper.to_array(inits[ins[1]]).astype(np.float32)
        if ins[3]:
            b = b - numpy_helper.to_array(inits[ins[3]]).astype(np.float32)
        b = b * numpy_helper.to_array(inits[ins[2]]).astype(np.float32)
        name = (n.name or n.output[0]) + "_b_float"
        m.graph.initializer.append(numpy_helper.from_array(b.astype(np.float32), name))
        mm_out = name + "_mm" if ins[4] else n.output[0]
        nodes.append(onnx.helper.make_node("MatMul", [ins[0], name], [mm_out], name=name + "_mm"))
        if ins[4]:
            nodes.append(onnx.helper.make_node("Add", [mm_out, ins[4]], [n.output[0]], name=name + "_bias"))
    if not changed:
        return None
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    return m


def openvino_float_a(check, variant, ours, theirs, steps, names):
    """OpenVINO on a model with DynamicQuantizeMatMul (docs/e2e.md). Its ONNX frontend makes the op
    a float MatMul of the unquantized A with the dequantized B, and its CPU plugin then quantizes A
    its own way by default (groups of DYNAMIC_QUANTIZATION_GROUP_SIZE input channels per row), so it
    can match neither qtool nor ONNX Runtime (per-tensor DynamicQuantizeLinear). Measured: with that
    quantization off, OpenVINO against qtool running the float-A variant (`outputs`, judged like any
    output); as configured by default, its distance to the float-A result next to qtool's own
    (`default_config`: OpenVINO's activation quantization must be no coarser than the model's)."""
    if not check.get("qtool"):
        raise RuntimeError("the model has DynamicQuantizeMatMul: the check needs the qtool binary")
    with tempfile.TemporaryDirectory() as tmp:
        vpath = os.path.join(tmp, "float_a.onnx")
        onnx.save(variant, vpath)
        ref = [qtool_exec(check["qtool"], vpath, s["inputs"], names, tmp) for s in check["samples"]]
    samples = []
    for s in check["samples"]:
        with np.load(s["inputs"]) as z:
            samples.append({k: z[k] for k in z.files})
    exact = run_openvino(check["model"], samples, {"DYNAMIC_QUANTIZATION_GROUP_SIZE": 0})
    result = {
        "outputs": compare(ref, exact, steps, names),
        "reference": "DynamicQuantizeMatMul with A in float (OpenVINO's dynamic quantization off)",
        "default_config": [],
    }
    for name in names:
        cat = lambda rs: np.concatenate([np.asarray(r[name]).reshape(-1) for r in rs])
        f, o, q = cat(ref), cat(theirs), cat(ours)
        result["default_config"].append({
            "name": name,
            "openvino_to_float_a": measure(f, o, None)["rel_l2"],
            "qtool_to_float_a": measure(f, q, None)["rel_l2"],
            "openvino_to_qtool": measure(q, o, None)["rel_l2"],
        })
    return result


def qtool_exec(qtool, model_path, inputs_npz, names, workdir):
    out = os.path.join(workdir, "out")
    subprocess.run(
        [qtool, "exec", model_path, "--input", inputs_npz, "-o", out],
        check=True, capture_output=True, env={**os.environ, "QTOOL_LOG": "warn"},
    )
    res = {}
    for name in names:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
        res[name] = np.load(os.path.join(out, safe + ".npy"))
        os.remove(os.path.join(out, safe + ".npy"))
    return res


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
        quant_rel, fp32 = {}, None
        if check.get("fp32"):
            try:
                fp32 = run_ort(check["fp32"], samples)
                for name in names:
                    if all(name in f for f in fp32):
                        a = np.concatenate([np.asarray(o[name]).reshape(-1) for o in ours])
                        b = np.concatenate([np.asarray(f[name]).reshape(-1) for f in fp32])
                        if a.shape == b.shape:
                            quant_rel[name] = measure(a, b, None)["rel_l2"]
            except Exception as e:
                entry["fp32_error"] = "".join(traceback.format_exception_only(type(e), e))[:2000]
        variant = float_a_variant(model)
        for rt, run in (("ort", run_ort), ("openvino", run_openvino)):
            try:
                theirs = run(path, samples)
                result = {"outputs": compare(ours, theirs, steps, names)}
                if rt == "openvino" and variant is not None:
                    result = openvino_float_a(check, variant, ours, theirs, steps, names)
                for o in result["outputs"]:
                    if o["name"] in quant_rel:
                        o["quant_rel_l2"] = quant_rel[o["name"]]
                        name = o["name"]
                        if "error" not in o:
                            a = np.concatenate([np.asarray(t[name]).reshape(-1) for t in theirs])
                            b = np.concatenate([np.asarray(f[name]).reshape(-1) for f in fp32])
                            o["runtime_rel_l2_fp32"] = measure(a, b, None)["rel_l2"]
                entry["runtimes"][rt] = result
            except Exception as e:
                msg = "".join(traceback.format_exception_only(type(e), e)).strip()
                entry["runtimes"][rt] = {"error": msg[:2000]}
        if check.get("values"):
            v = check["values"]
            try:
                with open(v["names"]) as f:
                    value_names = json.load(f)
                with np.load(v["values"]) as z:
                    values = {n: z[f"v{i}"] for i, n in enumerate(value_names)}
                with np.load(v["inputs"]) as z:
                    inputs = {k: z[k] for k in z.files}
                entry["units"] = check_units(model, values)
                entry["intermediates"] = ort_intermediates(model, inputs, values)
            except Exception as e:
                msg = "".join(traceback.format_exception_only(type(e), e)).strip()
                entry["units_error"] = msg[:2000]
        results.append(entry)
        print(f"e2e_check: {os.path.basename(path)} checked", file=sys.stderr)
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"checks": results}, f, indent=1)
    os.replace(tmp, sys.argv[2])


if __name__ == "__main__":
    main()
