#!/usr/bin/env python3
"""Quantize an FP32 ONNX model with ONNX Runtime's own quantizer, in every format qtool must run.

Usage: ort_quantize_real.py MODEL --calib CALIB.npz --out-dir DIR [--variants v1,v2,...]

CALIB.npz holds one array per model input, keyed by input name, with the calibration samples
concatenated on the batch axis: sample i is `array[i:i+1]` (qtool's xtask makes it from real
photos, so this script needs no image decoder; `qtool quantize --data` reads the same file). Variants (all activations uint8, weights int8 unless named):

  qdq_tensor    quantize_static, QuantFormat.QDQ, per-tensor weights
  qdq_channel   quantize_static, QuantFormat.QDQ, per-channel weights
  qop_tensor    quantize_static, QuantFormat.QOperator (QLinearConv, com.microsoft QLinear* ops)
  qop_channel   quantize_static, QuantFormat.QOperator, per-channel weights
  dynamic       quantize_dynamic, int8 weights (ConvInteger / MatMulInteger)
  dynamic_u8    quantize_dynamic, uint8 weights

Writes DIR/<stem>.<variant>.onnx and prints one JSON object per variant on stdout:
{"variant": ..., "path": ..., "ok": true} or {"variant": ..., "ok": false, "error": "..."} when
ORT's quantizer fails or ORT cannot load its own output (reported, not hidden).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from ort_reader import SampleReader

ALL = ["qdq_tensor", "qdq_channel", "qop_tensor", "qop_channel", "dynamic", "dynamic_u8"]


def quantize(model: str, out: str, variant: str, arrays: dict[str, np.ndarray]) -> None:
    if variant.startswith("dynamic"):
        wt = QuantType.QUInt8 if variant == "dynamic_u8" else QuantType.QInt8
        quantize_dynamic(model, out, weight_type=wt)
        return
    fmt = QuantFormat.QDQ if variant.startswith("qdq") else QuantFormat.QOperator
    quantize_static(
        model,
        out,
        SampleReader.from_arrays(arrays),
        quant_format=fmt,
        per_channel=variant.endswith("channel"),
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--calib", required=True)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--variants", default=",".join(ALL))
    args = ap.parse_args()
    logging.getLogger().setLevel(logging.ERROR)
    with np.load(args.calib) as d:
        arrays = {k: d[k] for k in d.keys()}
    stem = os.path.splitext(os.path.basename(args.model))[0]
    for v in args.variants.split(","):
        if v not in ALL:
            print(f"unknown variant {v}; expected one of {ALL}", file=sys.stderr)
            return 2
        out = os.path.join(args.out_dir, f"{stem}.{v}.onnx")
        try:
            quantize(args.model, out, v, arrays)
        except Exception as e:  # noqa: BLE001 - reported per variant
            print(json.dumps({"variant": v, "ok": False, "error": f"quantizer: {e}"}), flush=True)
            continue
        try:
            so = ort.SessionOptions()
            so.log_severity_level = 3
            ort.InferenceSession(out, so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"variant": v, "ok": False, "error": f"ORT cannot load it: {e}"}), flush=True)
            continue
        print(json.dumps({"variant": v, "path": out, "ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
