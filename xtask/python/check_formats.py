#!/usr/bin/env python3
"""Check quantized models written by qtool's passes in the reference runtimes.

Usage: check_formats.py MANIFEST.json

MANIFEST.json is a list of entries:
  {"model": PATH, "inputs": IN.npz, "qtool": QTOOL.npz, "names": NAMES.txt, "openvino": BOOL}
IN.npz holds the inputs keyed by input name. QTOOL.npz holds what qtool computed, keyed v0, v1, ...
with the value names in NAMES.txt (one per line, in the same order): every graph output and every
8-bit (uint8/int8) intermediate value.

For each entry, prints one JSON line with:
  checker     "ok" or the error of onnx.checker.check_model(full_check=True)
  ort         "ok" or the error of loading/running in ONNX Runtime (CPU, graph optimizations off,
              so ORT runs the graph exactly as written), every 8-bit value qtool gave exposed
  int8        {"tensors", "exact", "elems", "off", "max_lsb", "first_off"} of the 8-bit values,
              qtool against ORT
  ort_rel_l2  largest relative L2 error of a float graph output, qtool against ORT
  openvino    "ok", "skipped", or the error of compiling/running with ov.Core() on CPU
  ov_rel_l2   largest relative L2 error of a float graph output, qtool against OpenVINO

An entry may also name "fused": a QDQ model that ONNX Runtime runs with all graph optimizations
(its QDQ fusions turn DQ -> Gemm -> Q into com.microsoft QGemm, DQ -> Conv -> Q into QLinearConv);
then the result has
  fused       {"max_abs": largest |difference| of the float graph outputs of this model (ORT,
              optimizations off) against the fused model's, "ops": the op types ORT's optimized
              graph holds (from optimized_model_filepath)}
"""

from __future__ import annotations

import json
import sys
import traceback

import numpy as np
import onnx


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    if a.shape != b.shape:
        return float("inf")
    den = float(np.sqrt(np.sum(b * b)))
    num = float(np.sqrt(np.sum((a - b) ** 2)))
    if den == 0.0:
        return 0.0 if num == 0.0 else float("inf")
    return num / den


def short(e: BaseException) -> str:
    lines = [x.strip() for x in f"{type(e).__name__}: {e}".splitlines() if x.strip()]
    return " | ".join(lines)[-400:]


def fused_compare(model: str, fused: str, feeds: dict, outputs: list) -> dict:
    import os
    import tempfile

    import onnxruntime as ort

    def session(path: str, level, save: str | None = None):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        if save:
            so.optimized_model_filepath = save
        return ort.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])

    ours = session(model, ort.GraphOptimizationLevel.ORT_DISABLE_ALL).run(outputs, feeds)
    with tempfile.TemporaryDirectory() as d:
        saved = os.path.join(d, "optimized.onnx")
        theirs = session(fused, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, saved).run(
            outputs, feeds
        )
        ops = sorted({n.op_type for n in onnx.load(saved).graph.node})
    worst = 0.0
    for a, b in zip(ours, theirs, strict=True):
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    return {"max_abs": worst, "ops": ops}


def check_entry(e: dict) -> dict:
    import onnxruntime as ort

    out: dict = {"model": e["model"]}
    model = onnx.load(e["model"])
    try:
        onnx.checker.check_model(model, full_check=True)
        out["checker"] = "ok"
    except Exception as ex:  # noqa: BLE001 - any checker failure is reported
        out["checker"] = short(ex)

    names = [n for n in open(e["names"], encoding="utf-8").read().split("\n") if n]
    with np.load(e["qtool"], allow_pickle=False) as d:
        ours = {names[i]: d[f"v{i}"] for i in range(len(names))}
    with np.load(e["inputs"], allow_pickle=False) as d:
        feeds = {k: d[k] for k in d.keys()}
    graph_outputs = [o.name for o in model.graph.output]

    # ONNX Runtime, with every value qtool reported exposed as a graph output.
    try:
        m2 = onnx.load(e["model"])
        existing = set(graph_outputs)
        for n in names:
            if n not in existing:
                m2.graph.output.append(onnx.ValueInfoProto(name=n))
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(
            m2.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"]
        )
        onames = [o.name for o in sess.get_outputs()]
        res = dict(zip(onames, sess.run(onames, feeds), strict=True))
        out["ort"] = "ok"
        st = {"tensors": 0, "exact": 0, "elems": 0, "off": 0, "max_lsb": 0, "first_off": None}
        worst = 0.0
        for n in names:
            a, b = ours[n], res[n]
            if a.dtype in (np.uint8, np.int8):
                if a.shape != b.shape or a.dtype != b.dtype:
                    out["ort"] = f"{n}: qtool {a.dtype}{a.shape}, ORT {b.dtype}{b.shape}"
                    continue
                d = np.abs(a.astype(np.int64) - b.astype(np.int64))
                off = int(np.count_nonzero(d))
                st["tensors"] += 1
                st["elems"] += int(d.size)
                st["off"] += off
                if off == 0:
                    st["exact"] += 1
                elif st["first_off"] is None:
                    st["first_off"] = n
                st["max_lsb"] = max(st["max_lsb"], int(d.max()) if d.size else 0)
            if n in graph_outputs and np.issubdtype(a.dtype, np.floating):
                worst = max(worst, rel_l2(a, b))
        out["int8"] = st
        out["ort_rel_l2"] = worst
    except Exception as ex:  # noqa: BLE001
        out["ort"] = short(ex)

    if e.get("fused"):
        try:
            out["fused"] = fused_compare(e["model"], e["fused"], feeds, graph_outputs)
        except Exception as ex:  # noqa: BLE001
            out["fused"] = {"error": short(ex)}

    if not e.get("openvino", False):
        out["openvino"] = "skipped"
        return out
    try:
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(e["model"], "CPU")
        req = compiled.create_infer_request()
        res = req.infer(feeds)
        worst = 0.0
        for port, val in res.items():
            n = port.get_any_name()
            if n in ours and np.issubdtype(ours[n].dtype, np.floating):
                worst = max(worst, rel_l2(ours[n], np.asarray(val)))
        out["openvino"] = "ok"
        out["ov_rel_l2"] = worst
    except Exception as ex:  # noqa: BLE001
        out["openvino"] = short(ex)
    return out


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    entries = json.load(open(sys.argv[1], encoding="utf-8"))
    for e in entries:
        try:
            r = check_entry(e)
        except Exception as ex:  # noqa: BLE001
            traceback.print_exc()
            r = {"model": e.get("model"), "error": short(ex)}
        print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
