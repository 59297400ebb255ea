"""ONNX Runtime's calibration ranges of a real model on given samples, through ORT's public
calibrator API (onnxruntime.quantization.calibrate.create_calibrator + collect_data +
compute_data): the reference of qtool's calibration parity on real models
(crates/calib/tests/ort_real_models.rs, `cargo xtask interop --calib`).

Usage:
    python ort_calib_ranges.py ranges MODEL SAMPLES.npz OUT.json [--methods minmax,percentile,entropy]
                               [--percentile-bins 2048] [--percentile 99.999] [--entropy-bins 2048]
                               [--entropy-quantized-bins 128]
    python ort_calib_ranges.py dump MODEL SAMPLES.npz NAMES.txt OUT.npz

SAMPLES.npz holds one model run per sample: key "<index:05>__<input name>" (float32 arrays with
their batch axis). The samples are fed in index order, one `collect_data` call per method (so ORT's
histogram methods see every sample at once, as in quantize_static).

`ranges` writes {"tensors": [names ORT calibrates], "<method>": {tensor: [lo, hi, bin width]}}
(bin width 0 for MinMax; else ORT's histogram bin width for the tensor). Every value is the float32
ORT computed, written exactly. With --entropy-hists H.npz, ORT's entropy histograms too: for the
i-th tensor of the sorted list, "h<i:05>" counts, "e<i:05>" edges, "m<i:05>" the data's [min, max].

`dump` runs the model in ORT (optimizations off, as the calibrators run it) with the tensors named
in NAMES.txt (one a line) made graph outputs, and writes "<index:05>__<tensor>" arrays: ORT's own
activations, to show where a range differs from qtool's because the activations differ.
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
from onnxruntime.quantization.calibrate import (
    CalibrationMethod,
    create_calibrator,
)
from ort_reader import SampleReader
from onnxruntime.quantization.quant_utils import load_model_with_shape_infer


def load_samples(path):
    z = np.load(path)
    by_index = {}
    for key in z.files:
        idx, name = key.split("__", 1)
        by_index.setdefault(int(idx), {})[name] = z[key]
    return [by_index[i] for i in sorted(by_index)]


def f32(v):
    return float(np.float32(np.asarray(v).reshape(-1)[0]))


def calibrate(model, samples, method, extra, tmp, hists_out=None):
    aug = os.path.join(tmp, f"aug_{method.name}.onnx")
    cal = create_calibrator(model, None, aug, calibrate_method=method, extra_options=extra)
    cal.set_execution_providers(["CPUExecutionProvider"])
    cal.collect_data(SampleReader(samples))
    data = cal.compute_data()
    hists = cal.collector.histogram_dict if getattr(cal, "collector", None) else {}
    # The tensors ORT selects, on the model as loaded (the calibrator's own model is augmented).
    tensors, _ = cal.select_tensors_to_calibrate(load_model_with_shape_infer(Path(model)))
    out = {}
    for name in tensors:
        if name not in data:
            continue
        lo, hi = data[name].range_value
        width = 0.0
        if name in hists:
            edges = hists[name][1]
            width = float(edges[1] - edges[0])
        out[name] = [f32(lo), f32(hi), width]
    if hists_out:
        # ORT's own histograms: counts, edges, and the data's min/max, by index in the sorted list.
        arrays = {}
        for idx, name in enumerate(sorted(tensors)):
            if name in hists:
                h = hists[name]
                arrays[f"h{idx:05}"] = np.asarray(h[0], dtype=np.int64)
                arrays[f"e{idx:05}"] = np.asarray(h[1], dtype=np.float32)
                arrays[f"m{idx:05}"] = np.asarray([h[2], h[3]], dtype=np.float32).reshape(-1)
        np.savez(hists_out, **arrays)
    return sorted(tensors), out


def ranges(args):
    samples = load_samples(args.samples)
    methods = [m for m in args.methods.split(",") if m]
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in methods:
            if m == "minmax":
                tensors, r = calibrate(args.model, samples, CalibrationMethod.MinMax, {}, tmp)
            elif m == "percentile":
                extra = {"num_bins": args.percentile_bins, "percentile": args.percentile}
                tensors, r = calibrate(args.model, samples, CalibrationMethod.Percentile, extra, tmp)
            elif m == "entropy":
                extra = {
                    "num_bins": args.entropy_bins,
                    "num_quantized_bins": args.entropy_quantized_bins,
                }
                tensors, r = calibrate(
                    args.model, samples, CalibrationMethod.Entropy, extra, tmp, args.entropy_hists
                )
            else:
                sys.exit(f"unknown method {m}")
            result["tensors"] = tensors
            result[m] = r
    with open(args.out, "w") as fh:
        json.dump(result, fh, sort_keys=True)


def dump(args):
    samples = load_samples(args.samples)
    with open(args.names) as fh:
        names = [line.strip() for line in fh if line.strip()]
    m = onnx.load(args.model)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            m.graph.output.append(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    so = onnxruntime.SessionOptions()
    so.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = onnxruntime.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    out = {}
    for i, s in enumerate(samples):
        vals = sess.run(names, s)
        for n, v in zip(names, vals, strict=True):
            out[f"{i:05}__{n}"] = np.asarray(v, dtype=np.float32)
    np.savez(args.out, **out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("ranges")
    r.add_argument("model")
    r.add_argument("samples")
    r.add_argument("out")
    r.add_argument("--methods", default="minmax,percentile,entropy")
    r.add_argument("--percentile-bins", type=int, default=2048)
    r.add_argument("--percentile", type=float, default=99.999)
    r.add_argument("--entropy-bins", type=int, default=2048)
    r.add_argument("--entropy-quantized-bins", type=int, default=128)
    r.add_argument("--entropy-hists", help="also write ORT's entropy histograms to this .npz")
    d = sub.add_parser("dump")
    d.add_argument("model")
    d.add_argument("samples")
    d.add_argument("names")
    d.add_argument("out")
    args = ap.parse_args()
    if args.cmd == "ranges":
        ranges(args)
    else:
        dump(args)


if __name__ == "__main__":
    main()
