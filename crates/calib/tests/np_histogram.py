"""numpy's histograms as ONNX Runtime's HistogramCollector makes them: the reference of
tests/np_histogram.rs.

Usage: python np_histogram.py DIR OUT.json

DIR holds NAME__BINS.npy files (float32, 1-D). For each, with x the finite values:
- "value": ORT's collect_value histogram, np.histogram(x, BINS, range=(-T, T)) with
  T = np.array(max(abs(nanmin), abs(nanmax)), float32) (NaN values are in the file: numpy drops
  them from a histogram with a range, as in ORT);
- "abs": ORT's collect_absolute_value histogram, np.histogram(np.absolute(x), bins=BINS).
Each is {"counts": [...], "edges": [float32 bit patterns]}, or null where numpy refuses the layout
(ValueError, e.g. "Too many bins for data range"), which is where ORT's calibration fails.
"sum": np.sum of the finite values (float32 bit pattern), numpy's pairwise float32 summation,
which ORT's entropy search uses.
"""

import json
import os
import sys

import numpy as np


def hist(data, bins, rng):
    try:
        if rng is None:
            h, e = np.histogram(data, bins=bins)
        else:
            h, e = np.histogram(data, bins, range=rng)
    except ValueError:
        return None
    assert e.dtype == np.float32, e.dtype
    return {"counts": [int(v) for v in h], "edges": [int(v) for v in e.view(np.uint32)]}


def main():
    src, out = sys.argv[1], sys.argv[2]
    result = {}
    for f in sorted(os.listdir(src)):
        if not f.endswith(".npy"):
            continue
        name, bins = f[:-4].split("__")
        bins = int(bins)
        arr = np.load(os.path.join(src, f)).reshape(-1)
        assert arr.dtype == np.float32
        finite = arr[np.isfinite(arr)]
        # ORT's collect_value on the whole array (NaN included: nanmin/nanmax skip it).
        min_value, max_value = np.nanmin(arr), np.nanmax(arr)
        threshold = np.array(max(abs(min_value), abs(max_value)), dtype=arr.dtype)
        result[f[:-4]] = {
            "value": hist(arr, bins, (-threshold, threshold)),
            "abs": hist(np.absolute(finite), bins, None),
            "sum": int(np.array(np.sum(finite), dtype=np.float32).view(np.uint32)),
        }
    with open(out, "w") as fh:
        json.dump(result, fh, sort_keys=True)


if __name__ == "__main__":
    main()
