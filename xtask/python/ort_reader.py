"""The calibration-data reader that feeds samples to ONNX Runtime's quantizer and calibrators, shared
by ort_static_configs.py, ort_calib_ranges.py and ort_quantize_real.py (each imports it from this
directory: Python puts a script's own directory first on sys.path).

A sample is one model run: a dict {input name: array with its batch axis}. The reader hands them
out in order, one per get_next() call, and rewind() starts over (quantize_static calls it between
its calibration passes).
"""

from __future__ import annotations

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


class SampleReader(CalibrationDataReader):
    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self.samples = list(samples)
        self.pos = 0

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "SampleReader":
        """One array per input with the samples on the first axis: sample i is array[i:i+1]
        (as many samples as the shortest array has)."""
        n = min(a.shape[0] for a in arrays.values()) if arrays else 0
        return cls([{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)])

    def get_next(self):
        if self.pos >= len(self.samples):
            return None
        self.pos += 1
        return self.samples[self.pos - 1]

    def rewind(self):
        self.pos = 0
