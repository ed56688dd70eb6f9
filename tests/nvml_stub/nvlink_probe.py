"""Run in a subprocess with the stub on LD_LIBRARY_PATH: tick the NVLink collector, print one JSON line per tick.

Usage: nvlink_probe.py TICKS [--step S] [--flag-at N FILE] [--unflag-at N] [--counts NAME,...] [--public-call]
                      [--down-at N GPU:LINK,...] [--env-at N KEY=VALUE]...
--public-call reads through pynvml's public nvmlDeviceGetFieldValues (the path for bindings without
the function-pointer helper) instead of the prepared array. --down-at sets NVML_STUB_NVLINK_DOWN before tick N
(the stub reads it on every call): those links turn inactive from then on. --env-at sets any such variable
before tick N (NVML_STUB_NVLINK_BASE: the data counters dip or jump).
Each line: {"tick", "nvlink": [...wire...], "degraded": reason|null} or {"tick", "unavailable": reason}
or {"tick", "error": text}; with --reader a line {"reader": class name}, with --counts a final line
{"counts": {name: calls}}.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pathlib

from tracklab_sysmon import _nvlink, wire
from tracklab_sysmon.collectors.base import Partial
from tracklab_sysmon.collectors.nvlink import NvlinkCollector
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.model import FabricSample


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("ticks", type=int)
    parser.add_argument("--step", type=float, default=1.0, help="seconds between ticks (fake clock)")
    parser.add_argument("--flag-at", nargs=2, metavar=("N", "FILE"), help="create FILE before tick N")
    parser.add_argument("--unflag-at", type=int, help="remove the flag file before this tick")
    parser.add_argument("--counts", default="")
    parser.add_argument("--public-call", action="store_true")
    parser.add_argument("--reader", action="store_true", help="end with a line naming the reader that ran")
    parser.add_argument("--down-at", nargs=2, metavar=("N", "GPU:LINK,..."))
    parser.add_argument("--env-at", nargs=2, action="append", default=[], metavar=("N", "KEY=VALUE"))
    args = parser.parse_args()
    if args.public_call:
        _nvlink._function = lambda pynvml: None  # as if the bindings had no _nvmlGetFunctionPointer
    collector = NvlinkCollector()
    for tick in range(args.ticks):
        if args.flag_at and tick == int(args.flag_at[0]):
            pathlib.Path(args.flag_at[1]).touch()
        if args.flag_at and tick == args.unflag_at:
            pathlib.Path(args.flag_at[1]).unlink()
        if args.down_at and tick == int(args.down_at[0]):
            os.environ["NVML_STUB_NVLINK_DOWN"] = args.down_at[1]
        for at, setting in args.env_at:
            if tick == int(at):
                key, _, value = setting.partition("=")
                os.environ[key] = value
        line: dict = {"tick": tick}
        try:
            value = collector.collect(100.0 + tick * args.step)
        except Unavailable as exc:
            line["unavailable"] = str(exc)
        except Exception as exc:  # what the sampler would record as the collector's error
            line["error"] = f"{type(exc).__name__}: {exc}"
        else:
            sample = value.value if isinstance(value, Partial) else value
            line["nvlink"] = wire.fabric_to_wire(FabricSample(nvlink=sample))["nvlink"]
            line["degraded"] = value.reason if isinstance(value, Partial) else None
        print(json.dumps(line), flush=True)
    if args.reader:
        print(json.dumps({"reader": type(collector._reader).__name__}), flush=True)
    if args.counts:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        lib.nvmlStubCallCount.restype = ctypes.c_ulonglong
        names = args.counts.split(",")
        print(json.dumps({"counts": {n: lib.nvmlStubCallCount(n.encode()) for n in names}}), flush=True)


if __name__ == "__main__":
    main()
