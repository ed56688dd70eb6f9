"""`run.log()` cost with and without system metrics: 10,000 calls per contender, repeated.

Contenders, interleaved round by round against one real service (a SystemMonitor child
ticking every 0.1 s, so the SDK's refresh thread really works during the loop):
  plain       no system metrics (baseline)
  system      system metrics from the background cache (cache_duration 0.1 s)
  aggregate   the same, with per-step mean/min/max over the samples since the last log
  fetch/call  a naive SDK that GETs /api/system/metrics inside every log call (fewer calls,
              scaled per call): the network wait the cache removes
Reported: median and spread (min-max over rounds) of the whole loop, per-call p50/p99/max,
and the ratio to the baseline. Run logs are written under out/bench_sdk/ and removed.
Usage: bench_sdk.py [--calls 10000] [--rounds 5] [--naive-calls 500]
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import statistics
import time
import urllib.request

import orjson

from tracklab_sysmon.monitor import SystemMonitor
from tracklab_sysmon.sdk import (
    SystemMetricsConfig,
    flatten_snapshot,
    init,
    init_system_metrics,
    shutdown_system_metrics,
)

OUT = pathlib.Path(__file__).resolve().parent.parent / "out" / "bench_sdk"


def _loop(run, calls: int, before_log=None) -> list[int]:
    """Log `calls` lines; return each call's duration in ns."""
    durations = []
    clock = time.perf_counter_ns
    for step in range(calls):
        data = {"loss": 1.0 / (step + 1), "accuracy": step / calls}
        start = clock()
        if before_log is not None:
            data = {**data, **before_log()}
        run.log(data)
        durations.append(clock() - start)
    return durations


def _naive_fetch(url: str):
    def fetch() -> dict:
        with urllib.request.urlopen(url + "/api/system/metrics", timeout=5) as resp:
            return flatten_snapshot(orjson.loads(resp.read())[0])

    return fetch


def _contender(name: str, url: str, calls: int, round_no: int) -> list[int]:
    shutdown_system_metrics()
    before = None
    if name == "system":
        init_system_metrics(SystemMetricsConfig(service_url=url, cache_duration=0.1))
    elif name == "aggregate":
        init_system_metrics(SystemMetricsConfig(service_url=url, cache_duration=0.1, aggregate=True))
    elif name == "fetch/call":
        before = _naive_fetch(url)
    run = init(project="bench", name=f"{name.replace('/', '-')}-{round_no}", dir=OUT)
    try:
        durations = _loop(run, calls, before)
    finally:
        run.finish()
        shutdown_system_metrics()
    lines = run.path.read_bytes().count(b"\n")
    assert lines == calls, f"{name}: {lines} lines for {calls} calls"
    if name != "plain":  # the contender really logged system metrics
        last = orjson.loads(run.path.read_bytes().splitlines()[-1])
        assert "system/memory.usage" in last, f"{name}: no system metrics in {last}"
    return durations


def _pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--naive-calls", type=int, default=500)
    args = parser.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    names = ["plain", "system", "aggregate", "fetch/call"]
    totals: dict[str, list[float]] = {n: [] for n in names}  # ms per `calls` log calls
    per_call: dict[str, list[int]] = {n: [] for n in names}
    with SystemMonitor(rest_port=0, interval=0.1) as service:
        for round_no in range(args.rounds):
            for name in names:
                calls = args.naive_calls if name == "fetch/call" else args.calls
                durations = _contender(name, service.url, calls, round_no)
                totals[name].append(sum(durations) / 1e6 * args.calls / calls)
                per_call[name].extend(durations)
    shutil.rmtree(OUT, ignore_errors=True)
    base = statistics.median(totals["plain"])
    print(f"run.log(): {args.calls} calls x {args.rounds} rounds ({args.naive_calls} calls for fetch/call, scaled)")
    print(f"{'contender':<11} {'median ms':>10} {'spread ms':>17} {'us/call':>8} {'p50 us':>7} "
          f"{'p99 us':>8} {'max us':>9} {'ratio':>7}")
    for name in names:
        med = statistics.median(totals[name])
        spread = f"{min(totals[name]):.1f}-{max(totals[name]):.1f}"
        d = per_call[name]
        print(f"{name:<11} {med:>10.1f} {spread:>17} {med * 1000 / args.calls:>8.2f} {_pct(d, 0.5) / 1000:>7.2f} "
              f"{_pct(d, 0.99) / 1000:>8.2f} {max(d) / 1000:>9.1f} {med / base:>6.2f}x")


if __name__ == "__main__":
    main()
