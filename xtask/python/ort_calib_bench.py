#!/usr/bin/env python3
"""One ONNX Runtime calibration run, timed from inside: the ORT side of `cargo xtask bench` (calib).

Usage: ort_calib_bench.py --model M.onnx --data X.npy --method minmax|percentile|entropy
                          --samples N --what calib|quantize --work DIR

X.npy holds samples on its first axis ([S, ...]); sample i is fed as X[i:i+1] (the axis is kept, as
qtool's .npy source does). The array is memory-mapped, so the data itself does not count in the
process's resident memory beyond the pages read.

- calib: ORT's calibrator API alone: create_calibrator (which writes the augmented model),
  collect_data over the reader, compute_data (the ranges). This is exactly the calibration part of
  quantize_static.
- quantize: the whole quantize_static (QDQ, int8 activations and weights, per tensor) with the same
  calibration method, writing DIR/quantized.onnx.

ORT's defaults are used for the method settings (Percentile: 2048 bins, 99.999; Entropy: 128 bins
and 128 quantized bins, create_calibrator's default, with which the threshold search has a single
candidate and returns the min/max range) and for threads (intra-op threads = all cores), which is
how users run it. Collecting the histograms (every activation of every sample kept, then
np.histogram) dominates ORT's time and memory at either bin count. Prints one JSON line: {"method", "what", "samples", "seconds"}; the caller measures the
process's peak memory (max RSS from wait4) and total wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.calibrate import create_calibrator

METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}


class Reader(CalibrationDataReader):
    def __init__(self, data: np.ndarray, name: str, samples: int):
        self.data = data
        self.name = name
        self.n = min(samples, data.shape[0])
        self.i = 0

    def get_next(self):
        if self.i >= self.n:
            return None
        x = np.ascontiguousarray(self.data[self.i : self.i + 1])
        self.i += 1
        return {self.name: x}

    def rewind(self):
        self.i = 0


def input_name(model: str) -> str:
    import onnx

    m = onnx.load(model, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    names = [i.name for i in m.graph.input if i.name not in inits]
    if len(names) != 1:
        raise SystemExit(f"{model}: expected one input, found {names}")
    return names[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--method", required=True, choices=sorted(METHODS))
    ap.add_argument("--samples", type=int, required=True)
    ap.add_argument("--what", required=True, choices=["calib", "quantize"])
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    data = np.load(args.data, mmap_mode="r")
    reader = Reader(data, input_name(args.model), args.samples)
    method = METHODS[args.method]
    t0 = time.perf_counter()
    if args.what == "calib":
        cal = create_calibrator(
            args.model,
            augmented_model_path=os.path.join(args.work, "augmented.onnx"),
            calibrate_method=method,
        )
        cal.collect_data(reader)
        ranges = cal.compute_data()
        tensors = len(ranges.data)
    else:
        quantize_static(
            args.model,
            os.path.join(args.work, "quantized.onnx"),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
        )
        tensors = None
    secs = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "method": args.method,
                "what": args.what,
                "samples": reader.n,
                "seconds": secs,
                "tensors": tensors,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
