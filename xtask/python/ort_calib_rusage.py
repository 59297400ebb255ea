#!/usr/bin/env python3
"""Run a command as a child and report its wall time and peak memory: the meter of the calibration
benchmark (`cargo xtask bench --filter calib`), used the same way for qtool and for ONNX Runtime.

Usage: ort_calib_rusage.py OUT.json -- CMD [ARGS...]

Peak memory is the child's maximum resident set size as the kernel reports it to the parent in
wait4()'s rusage (ru_maxrss, KiB on Linux): exact, with no polling. Wall time is measured around
the child from spawn to reaping. The child's stdout is passed through; its exit status and
stdout are written to OUT.json as {"status", "wall_s", "max_rss_kib", "cpu_s", "stdout"} (cpu_s:
the child's user + system CPU time, less sensitive than wall time to other load on the machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out, cmd = sys.argv[1], sys.argv[3:]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    stdout = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    with open(out, "w") as f:
        json.dump(
            {
                "status": p.returncode,
                "wall_s": wall,
                "max_rss_kib": ru.ru_maxrss,
                "cpu_s": ru.ru_utime + ru.ru_stime,
                "stdout": stdout.decode("utf-8", "replace"),
            },
            f,
        )
    return 0 if p.returncode == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
