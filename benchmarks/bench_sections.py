"""What each section of the snapshot costs a service at 1 Hz, idle: cold (a tick a second) against hot (back to back).

Contenders, all running at the same time for --seconds (default 120) after a warm-up, none polled: the floor
(floor_service.py) and one `sections_service.py` per group of collectors (none, each available section alone,
the container and pressure pair, the collectors this host has no hardware for, all). CPU is % of one core from
schedstat, as in bench_overhead.py; "ms/s above none" is the group's cost above the service with no collector.
The hot column is the same collectors' `collect()` timed in this process, 2,000 calls in a row (thread CPU):
the ratio of the two is what a tick costs once a second with the caches cold against back to back.
`--polled`: instead, the request's cost: the floor, the service with no collector, the same without its
middlewares (`sections_service.py --bare`) and with all collectors, each polled once a second
(GET /api/system/metrics). Writes out/bench_sections.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time

from bench_overhead import HERE, OUT, Contender, run_window
from proc_usage import commit, summary, uptime

from tracklab_sysmon.collectors import close_collectors, default_collectors
from tracklab_sysmon.collectors.base import Collector
from tracklab_sysmon.errors import Unavailable

HOT_CALLS = 2000


def groups(collectors: list[Collector]) -> dict[str, list[str]]:
    """Group name -> collector names: each available section alone, container with pressure, the unavailable ones."""
    available, missing = [], []
    for c in collectors:
        try:
            c.collect(time.monotonic())
            available.append(c.name)
        except Unavailable:
            missing.append(c.name)
    found = {"none": []}
    job = [name for name in available if name in ("container", "pressure")]
    found.update({name: [name] for name in available if name not in job})
    if job:
        found["+".join(job)] = job
    if missing:
        found["unavailable"] = missing
    found["all"] = available + missing
    return found


def hot_ms(collectors: list[Collector], names: list[str]) -> float:
    """Thread CPU of one call of every named collector's `collect()`, ms, over HOT_CALLS calls in a row."""
    chosen = [c for c in collectors if c.name in names]
    now = time.monotonic()
    started = time.thread_time()
    for tick in range(HOT_CALLS):
        for c in chosen:
            with contextlib.suppress(Unavailable):
                c.collect(now + tick)
    return (time.thread_time() - started) * 1000 / HOT_CALLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--polled", action="store_true", help="weigh a poll instead of each section")
    args = parser.parse_args()
    collectors = default_collectors("/proc", "/sys", statvfs=os.statvfs)
    try:
        plan = groups(collectors)
        if args.polled:
            plan = {"none": [], "none, no middlewares": [], "all": plan["all"]}
        hot = {name: hot_ms(collectors, names) for name, names in plan.items()}
    finally:
        close_collectors(collectors)
    mode, path = ("polled", "/api/system/metrics") if args.polled else ("idle", "/api/health")
    before = uptime()
    with tempfile.TemporaryDirectory() as tmp:
        contenders = [Contender("floor", mode, [sys.executable, str(HERE / "floor_service.py"), "--port", "0",
                                                "--portfile", f"{tmp}/floor.json"],
                                url_path="/api/system/metrics", portfile=f"{tmp}/floor.json")]
        for index, (name, names) in enumerate(plan.items()):
            portfile = f"{tmp}/{index}.json"
            argv = [sys.executable, str(HERE / "sections_service.py"), "--keep", ",".join(names) or "none",
                    "--portfile", portfile, *(["--bare"] if "no middlewares" in name else [])]
            contenders.append(Contender(name, mode, argv, url_path=path, portfile=portfile))
        try:
            for c in contenders:
                c.wait_ready()
            asyncio.run(run_window(contenders, args.warmup, measure=False))
            asyncio.run(run_window(contenders, args.seconds, measure=True))
            results = {c.kind: summary(c.series.percents) for c in contenders if c.series is not None}
        finally:
            for c in contenders:
                c.stop()
    report(plan, results, hot, args, before, uptime())


def report(plan: dict[str, list[str]], results: dict[str, dict[str, float]], hot: dict[str, float],
           args: argparse.Namespace, before: str, after: str) -> None:
    mode = "polled" if args.polled else "idle"
    print(f"sections at 1 Hz, {mode}, {args.seconds:.0f} s after {args.warmup:.0f} s, {os.cpu_count()} CPUs, "
          f"commit {commit()}\nuptime before: {before}\nuptime after:  {after}")
    floor, none = results["floor"]["mean"], results["none"]["mean"]
    print(f"{'contender':18} {'mean %':>7} {'median':>7} {'p99':>7} {'x floor':>7} {'ms/s above none':>15} "
          f"{'hot ms/tick':>11} {'cold/hot':>8}  collectors")
    for name, stats in results.items():
        above = (stats["mean"] - none) * 10  # % of a core -> ms of CPU a second
        hot_tick = hot.get(name)
        ratio = f"{above / hot_tick:8.1f}" if hot_tick and hot_tick > 0.001 else f"{'':8}"
        above_text = "" if name == "floor" else f"{above:15.3f}"
        hot_text = "" if hot_tick is None else f"{hot_tick:11.3f}"
        print(f"{name:18} {stats['mean']:7.4f} {stats['median']:7.4f} {stats['p99']:7.4f} "
              f"{stats['mean'] / floor:7.2f} {above_text:>15} {hot_text:>11} {ratio}  {','.join(plan.get(name, []))}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_sections.json").write_text(json.dumps({"commit": commit(), "uptime": [before, after],
                                                         "results": results, "hot_ms": hot, "plan": plan}, indent=1))


if __name__ == "__main__":
    main()
