"""ONNX Runtime's calibration results on fixed arrays: the reference numbers of tests/ort_parity.rs.

Usage: python ort_reference.py DIR OUT.json

DIR holds CASE.npy files of shape [batches, *batch_shape] (float32), written by the Rust test
(deterministic data from qtool_testkit::Rng). For each case this runs ORT's own code:
- MinMaxCalibrater (plain, symmetric, moving_average, per_channel) on a one-node Identity model,
  one inference per batch, through a CalibrationDataReader and one collect_data call;
- HistogramCollector (percentile symmetric/asymmetric, entropy with several bin counts) collecting
  all batches in one collect() call, as HistogramCalibrater.collect_data does.
It writes {case: {key: [lo, hi, bin_width]}} (per channel: {"min": [...], "max": [...]}).

Re-run by hand (needs the reference venv, `cargo xtask venv`):
    QTOOL_CALIB_WRITE_REFERENCE=1 cargo test -p qtool-calib --test ort_parity
which runs this script and rewrites tests/data/ort_reference.json (used when the venv is absent).
"""

import json
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper
from onnxruntime.quantization.calibrate import (
    CalibrationDataReader,
    HistogramCollector,
    MinMaxCalibrater,
)


class Reader(CalibrationDataReader):
    def __init__(self, arr):
        self.items = [{"x": arr[i]} for i in range(arr.shape[0])]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.items):
            return None
        self.i += 1
        return self.items[self.i - 1]


def identity_model(path, shape):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))
    g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="id")], "g", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


def minmax(arr, tmp, **kw):
    path = os.path.join(tmp, "m.onnx")
    identity_model(path, arr.shape[1:])
    c = MinMaxCalibrater(path, augmented_model_path=os.path.join(tmp, "aug.onnx"), **kw)
    c.augment_graph()
    c.create_inference_session()
    c.collect_data(Reader(arr))
    r = c.compute_data()["x"].range_value
    lo, hi = np.asarray(r[0]), np.asarray(r[1])
    if not kw.get("per_channel"):
        return [float(lo.reshape(-1)[0]), float(hi.reshape(-1)[0]), 0.0]
    return {"min": [float(v) for v in lo.ravel()], "max": [float(v) for v in hi.ravel()]}


def hist(arr, method, symmetric, num_bins, num_quantized_bins=128, percentile=99.999):
    col = HistogramCollector(method, symmetric, num_bins, num_quantized_bins, percentile, "same")
    col.collect({"x": [arr[i] for i in range(arr.shape[0])]})
    res = col.compute_collection_result()["x"]
    lo, hi = res[0], res[1]
    edges = col.get_histogram_dict()["x"][1]
    return [float(lo), float(hi), float(edges[1] - edges[0])]


def main():
    src, out = sys.argv[1], sys.argv[2]
    results = {}
    for f in sorted(os.listdir(src)):
        if not f.endswith(".npy"):
            continue
        case = f[:-4]
        arr = np.load(os.path.join(src, f))
        r = {}
        with tempfile.TemporaryDirectory() as tmp:
            r["minmax"] = minmax(arr, tmp)
            r["minmax_sym"] = minmax(arr, tmp, symmetric=True)
            r["minmax_ma"] = minmax(arr, tmp, moving_average=True)
            if arr.ndim >= 3:
                r["minmax_pc"] = minmax(arr, tmp, per_channel=True)
        for p in (99.999, 99.9, 99.0):
            r[f"percentile_sym_{p}"] = hist(arr, "percentile", True, 2048, percentile=p)
            r[f"percentile_asym_{p}"] = hist(arr, "percentile", False, 2048, percentile=p)
        for nb in (128, 512, 2048):
            r[f"entropy_{nb}"] = hist(arr, "entropy", False, nb, 128)
        results[case] = r
    with open(out, "w") as fh:
        json.dump(results, fh, indent=1, sort_keys=True)
        fh.write("\n")


if __name__ == "__main__":
    main()
