"""Run in a subprocess with the stub on LD_LIBRARY_PATH: collect ticks, print one JSON line per tick.

Usage: probe.py TICKS [--dcgm] [--lose-after N FLAGFILE [--recover-after M]] [--touch-at N FILE]
                [--step S] [--counts NAME,...] [--modules]
Each line: {"tick", "accelerators": [...wire...], "profiling": {...}} or {"tick", "unavailable": reason};
with --counts a final line {"counts": {name: calls}} read from the stub's test-only export; with
--modules a final line {"pynvmlLoaded": bool}: whether the ticks imported pynvml.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import pathlib
import sys

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.nvidia import NvidiaCollector
from tracklab_sysmon.errors import Unavailable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ticks", type=int)
    parser.add_argument("--dcgm", action="store_true")
    parser.add_argument("--lose-after", nargs=2, metavar=("N", "FLAG"))
    parser.add_argument("--recover-after", type=int, help="remove the lose flag before this tick")
    parser.add_argument("--touch-at", nargs=2, metavar=("N", "FILE"), help="create FILE before tick N")
    parser.add_argument("--step", type=float, default=1.0, help="seconds between ticks (fake clock)")
    parser.add_argument("--counts", default="")
    parser.add_argument("--modules", action="store_true")
    args = parser.parse_args()
    collector = NvidiaCollector(enable_dcgm=args.dcgm)
    for tick in range(args.ticks):
        if args.lose_after and tick == int(args.lose_after[0]):
            pathlib.Path(args.lose_after[1]).touch()
        if args.lose_after and tick == args.recover_after:
            pathlib.Path(args.lose_after[1]).unlink()
        if args.touch_at and tick == int(args.touch_at[0]):
            pathlib.Path(args.touch_at[1]).touch()
        line: dict = {"tick": tick}
        try:
            line["accelerators"] = [wire.accelerator_to_wire(a) for a in collector.collect(100.0 + tick * args.step)]
        except Unavailable as exc:
            line["unavailable"] = str(exc)
        line["profiling"] = collector.profiling_status()
        print(json.dumps(line), flush=True)
    if args.counts:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        lib.nvmlStubCallCount.restype = ctypes.c_ulonglong
        names = args.counts.split(",")
        print(json.dumps({"counts": {n: lib.nvmlStubCallCount(n.encode()) for n in names}}), flush=True)
    if args.modules:
        print(json.dumps({"pynvmlLoaded": "pynvml" in sys.modules}), flush=True)


if __name__ == "__main__":
    main()
