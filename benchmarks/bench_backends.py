"""The two collector backends side by side: procfs (+ C helper, + Python twin) vs psutil.

Part 1, tick cost: `Sampler.tick()` over each backend's cpu/memory/disk/network collectors on this
machine, in rotating order for --rounds rounds of --ticks ticks; median, spread, ratio to procfs + C,
and each collector's median duration. Part 2, service overhead: `tracklab-sysmon serve
--collectors procfs|psutil` side by side for --seconds (after a warm-up), each polled once a
second; CPU % of one core and RSS, measured as bench_overhead.py does. Linux only (it reads /proc).
Usage: bench_backends.py [--rounds 9] [--ticks 200] [--seconds 60] [--warmup 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time

from bench_overhead import OUT, Contender, poll

from tracklab_sysmon import hotpath
from tracklab_sysmon._hotpath_py import PyHotReader
from tracklab_sysmon.collectors.cpu import CpuCollector
from tracklab_sysmon.collectors.disk import DiskCollector
from tracklab_sysmon.collectors.memory import MemoryCollector
from tracklab_sysmon.collectors.network import NetworkCollector
from tracklab_sysmon.collectors.portable import portable_collectors
from tracklab_sysmon.platforms import select
from tracklab_sysmon.sampler import Sampler


def procfs_collectors(reader) -> tuple:
    return (CpuCollector(reader), MemoryCollector(reader), DiskCollector(reader, statvfs=os.statvfs),
            NetworkCollector(reader))


def samplers() -> dict[str, Sampler]:
    found = {}
    try:
        cffi = hotpath.select_backend("require")[0]
        found["procfs + C helper"] = Sampler(procfs_collectors(cffi("/proc")), node_id="bench")
    except hotpath.BackendUnavailable as exc:
        print(f"note: {exc}", file=sys.stderr)
    found["procfs + Python twin"] = Sampler(procfs_collectors(PyHotReader("/proc")), node_id="bench")
    found["psutil"] = Sampler(portable_collectors(select("linux", "psutil"), host_gpus=False), node_id="bench")
    return found


def tick_costs(rounds: int, ticks: int) -> dict[str, dict]:
    loop = asyncio.new_event_loop()
    contenders = samplers()
    for sampler in contenders.values():
        loop.run_until_complete(sampler.prime())
    per_tick: dict[str, list[float]] = {name: [] for name in contenders}
    per_collector: dict[str, dict[str, list[float]]] = {name: {} for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate: noise lands on all
            sampler = contenders[name]
            started = time.perf_counter()
            for _ in range(ticks):
                loop.run_until_complete(sampler.tick())
                for collector, status in sampler.status.items():
                    per_collector[name].setdefault(collector, []).append(status.last_duration_ms or 0.0)
            per_tick[name].append((time.perf_counter() - started) / ticks * 1e6)
    loop.close()
    return {name: {"median_us": statistics.median(v), "min_us": min(v), "max_us": max(v),
                   "collectors_ms": {c: statistics.median(d) for c, d in per_collector[name].items()}}
            for name, v in per_tick.items()}


def overhead(seconds: float, warmup: float) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        contenders = []
        for backend in ("procfs", "psutil"):
            portfile = os.path.join(tmp, f"{backend}.json")
            argv = [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0",
                    "--collectors", backend, "--portfile", portfile]
            contenders.append(Contender(f"serve --collectors {backend}, polled 1/s", argv,
                                        url_path="/api/system/metrics", polled=True, portfile=portfile))
        try:
            for c in contenders:
                c.wait_ready()
            asyncio.run(poll(contenders, warmup))
            for c in contenders:
                c.mark()
            asyncio.run(poll(contenders, seconds))
            return {c.name: c.result() for c in contenders}
        finally:
            for c in contenders:
                c.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    ticks = tick_costs(args.rounds, args.ticks)
    base = next(iter(ticks.values()))["median_us"]
    load = os.getloadavg()
    print(f"tick cost, {args.rounds} rounds x {args.ticks} ticks, {os.cpu_count()} CPUs, load {load[0]:.2f}")
    print(f"{'backend':24} {'median µs':>10} {'min-max µs':>16} {'x first':>8}  per collector (median ms)")
    for name, r in ticks.items():
        parts = " ".join(f"{c} {ms:.3f}" for c, ms in r["collectors_ms"].items())
        print(f"{name:24} {r['median_us']:10.1f} {r['min_us']:7.1f}-{r['max_us']:<8.1f} "
              f"{r['median_us'] / base:8.2f}  {parts}")
    results = overhead(args.seconds, args.warmup) if args.seconds > 0 else {}
    if results:
        load = os.getloadavg()
        print(f"\nservice overhead over {args.seconds:.0f} s at 1 Hz, load at the end {load[0]:.2f}")
        print(f"{'contender':40} {'CPU % (stat)':>12} {'CPU % (sched)':>13} {'RSS MiB':>8}")
        for name, r in results.items():
            print(f"{name:40} {r['cpu_percent']:12.3f} {r['cpu_percent_schedstat']:13.3f} {r['rss_mib']:8.1f}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_backends.json").write_text(json.dumps({"ticks": ticks, "overhead": results}, indent=1))


if __name__ == "__main__":
    main()
