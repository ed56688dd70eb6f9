"""Per-sample cost, side by side: syscall floor (C), the C helper, the Python twin, psutil, one tick.

Every round runs each contender for the same number of samples, in rotating order, so machine
noise lands on all of them; the table gives the median over rounds, the spread (min-max) and the
ratio to the syscall floor for the same files. Usage: bench_hotpath.py [--rounds 9] [--samples 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

import psutil

from tracklab_sysmon import hotpath
from tracklab_sysmon._hotpath_py import PyHotReader
from tracklab_sysmon.collectors.cpu import CpuCollector
from tracklab_sysmon.collectors.disk import DiskCollector
from tracklab_sysmon.collectors.memory import MemoryCollector
from tracklab_sysmon.collectors.network import NetworkCollector
from tracklab_sysmon.sampler import Sampler

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "out"
READS = ("stat", "diskstats", "net_dev", "meminfo", "loadavg", "tcp_established", "process_count")


def build_floor() -> str | None:
    """Compile floor.c into out/; None (and say how to fix it) when there is no C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        print("note: no C compiler, so no syscall floor (Debian: apt-get install gcc)", file=sys.stderr)
        return None
    OUT.mkdir(exist_ok=True)
    binary = OUT / "floor"
    subprocess.run([cc, "-O2", str(HERE / "floor.c"), "-o", str(binary)], check=True)
    return str(binary)


def reader_sample(reader) -> callable:
    methods = [getattr(reader, name) for name in READS]

    def sample() -> None:
        for method in methods:
            method()

    return sample


def psutil_sample() -> None:
    """The psutil calls that give the same counters (psutil has no cheap established-TCP count)."""
    psutil.cpu_times()
    psutil.cpu_times(percpu=True)
    psutil.disk_io_counters(perdisk=True)
    psutil.net_io_counters(pernic=True)
    psutil.virtual_memory()
    psutil.swap_memory()
    psutil.getloadavg()
    len(psutil.pids())


def make_sampler(reader, proc_root: str, sys_root: str) -> Sampler:
    """The default collectors around one given reader, as default_collectors builds them."""
    collectors = (
        CpuCollector(reader, proc_root=proc_root, sys_root=sys_root),
        MemoryCollector(reader),
        DiskCollector(reader, proc_root=proc_root, sys_root=sys_root,
                      statvfs=os.statvfs if proc_root == "/proc" else None),
        NetworkCollector(reader),
    )
    return Sampler(collectors, node_id="bench", interval=1.0)


def tick_runner(sampler: Sampler, loop: asyncio.AbstractEventLoop) -> callable:
    async def ticks(n: int) -> None:
        for _ in range(n):
            await sampler.tick()

    loop.run_until_complete(sampler.prime())
    return lambda n: loop.run_until_complete(ticks(n))


def time_python(sample, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        sample()
    return (time.perf_counter() - started) / n * 1e6


def time_batch(run, n: int) -> float:
    started = time.perf_counter()
    run(n)
    return (time.perf_counter() - started) / n * 1e6


def contenders(proc_root: str, sys_root: str, loop) -> dict[str, callable]:
    """name -> f(n) returning microseconds per sample."""
    found: dict[str, callable] = {}
    floor = build_floor()
    if floor:
        def run_floor(n: int, key: str) -> float:
            out = subprocess.run([floor, proc_root, str(n)], capture_output=True, text=True, check=True).stdout
            return dict(line.split() for line in out.splitlines())[key] and float(
                dict(line.split() for line in out.splitlines())[key]) / 1000
        found["floor: 1 pread per file"] = lambda n: run_floor(n, "single")
        found["floor: same syscalls as helper"] = lambda n: run_floor(n, "full")
    backends = {"python": PyHotReader}
    try:
        backends["cffi"] = hotpath.select_backend("require")[0]
    except hotpath.BackendUnavailable as exc:
        print(f"note: {exc}", file=sys.stderr)
    for name, cls in sorted(backends.items()):
        sample = reader_sample(cls(proc_root))
        found[f"{name} reader: 7 reads"] = lambda n, s=sample: time_python(s, n)
    if proc_root == "/proc":
        found["psutil equivalent calls"] = lambda n: time_python(psutil_sample, n)
    for name, cls in sorted(backends.items()):
        run = tick_runner(make_sampler(cls(proc_root), proc_root, sys_root), loop)
        found[f"{name}: whole sampler tick"] = lambda n, r=run: time_batch(r, n)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--proc-root", default="/proc")
    parser.add_argument("--sys-root", default="/sys")
    args = parser.parse_args()
    loop = asyncio.new_event_loop()
    runs = contenders(args.proc_root, args.sys_root, loop)
    results: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for round_no in range(args.rounds):
        order = names[round_no % len(names):] + names[: round_no % len(names)]
        for name in order:
            results[name].append(runs[name](args.samples))
    loop.close()
    report(results, args)


def report(results: dict[str, list[float]], args) -> None:
    floor = results.get("floor: same syscalls as helper")
    base = statistics.median(floor) if floor else None
    print(f"per-sample cost, {args.rounds} rounds x {args.samples} samples, {os.cpu_count()} CPUs, "
          f"proc_root={args.proc_root}")
    print(f"{'contender':34} {'median us':>10} {'min-max us':>17} {'x floor':>8}")
    for name, values in results.items():
        median = statistics.median(values)
        ratio = f"{median / base:8.2f}" if base else "       -"
        print(f"{name:34} {median:10.1f} {min(values):8.1f}-{max(values):<8.1f} {ratio}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_hotpath.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
