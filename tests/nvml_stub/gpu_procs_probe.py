"""Run with the stub on LD_LIBRARY_PATH: call gpu_usage_by_pid CALLS times under PROC_ROOT, one JSON line each.

Usage: gpu_procs_probe.py PROC_ROOT CALLS [--counts NAME,...]
Each line maps pid -> [[device, vendor, memory, utilization], ...]; with --counts a final line
{"counts": {name: calls}} read from the stub's test-only export.
"""

from __future__ import annotations

import argparse
import ctypes
import json

from tracklab_sysmon.collectors.gpu_procs import GpuProcessReader


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("proc_root")
    parser.add_argument("calls", type=int)
    parser.add_argument("--counts", default="")
    args = parser.parse_args()
    reader = GpuProcessReader(args.proc_root, "/nonexistent-sys")
    for _ in range(args.calls):
        usage = reader.gpu_usage_by_pid()
        print(json.dumps({pid: [[u.device, u.vendor, u.memory, u.utilization] for u in uses]
                          for pid, uses in usage.items()}), flush=True)
    if args.counts:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        lib.nvmlStubCallCount.restype = ctypes.c_ulonglong
        names = args.counts.split(",")
        print(json.dumps({"counts": {n: lib.nvmlStubCallCount(n.encode()) for n in names}}), flush=True)


if __name__ == "__main__":
    main()
