"""The history ring with compressed blocks beside the same ring holding every snapshot raw, in one run.

Snapshots are this machine's real ones: a sampler over the default collectors ticks --ticks times,
--pause seconds apart on the real clock (rates over 30 ms windows vary more from one snapshot to the next
than the service's 1 s ones do, so they compress worse: a conservative figure), and each encoded snapshot
is appended to both rings. Reported per ring: bytes held (`ring.bytes`) and tracemalloc's count of what the
ring keeps, append CPU time per tick (mean, p99: the compressing appends are the tail), and the CPU time
of the history route's selections (the whole history, the latest 60, `since` the last minute), medians
over --rounds. Usage: bench_ring.py [--ticks 3600] [--pause 0.03] [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import tracemalloc

from proc_usage import commit, uptime

from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.ring import SnapshotRing
from tracklab_sysmon.sampler import Sampler


def snapshots(count: int, pause: float) -> list[tuple[int, bytes]]:
    sampler = Sampler(default_collectors(), node_id="bench", ring=SnapshotRing(1))

    async def run() -> list[tuple[int, bytes]]:
        await sampler.prime()
        out = []
        for i in range(count):
            await asyncio.sleep(pause)
            await sampler.tick()
            out.append((1_700_000_000_000 + i * 1000, sampler.latest_bytes))
        return out

    return asyncio.run(run())


def held(ring: SnapshotRing, bodies: list[tuple[int, bytes]]) -> tuple[int, list[float]]:
    """Fill the ring under tracemalloc; returns the bytes it keeps and each append's CPU time (µs)."""
    tracemalloc.start()
    times = []
    for ts, body in bodies:
        started = time.thread_time_ns()
        ring.append(ts, body)
        times.append((time.thread_time_ns() - started) / 1000)
    kept = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return kept, times


def timed(call, rounds: int) -> float:
    values = []
    for _ in range(rounds):
        started = time.thread_time_ns()
        call()
        values.append((time.thread_time_ns() - started) / 1e6)
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=3600)
    parser.add_argument("--pause", type=float, default=0.03)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    bodies = snapshots(args.ticks, args.pause)
    mean_size = statistics.mean(len(b) for _, b in bodies)
    since = bodies[-61][0]
    print(f"bench_ring: {args.ticks} real snapshots of {mean_size:.0f} B on average; commit {commit()}; "
          f"uptime {uptime()}; Python {sys.version.split()[0]}\n")
    print("| ring | bytes held | tracemalloc kept | append mean µs | append p99 µs | append max µs "
          "| select all ms | select latest 60 ms | select since last minute ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, ring in (("blocks of 64, compressed", SnapshotRing(args.ticks)),
                       ("raw (no block ever fills)", SnapshotRing(args.ticks, block=args.ticks + 1))):
        kept, times = held(ring, bodies)
        assert ring.select() == [b for _, b in bodies]
        p99 = statistics.quantiles(times, n=100)[98]
        print(f"| {name} | {ring.bytes / 2**20:.2f} MiB | {kept / 2**20:.2f} MiB | {statistics.mean(times):.1f} "
              f"| {p99:.1f} | {max(times):.0f} | {timed(ring.select, args.rounds):.2f} "
              f"| {timed(lambda r=ring: r.select(limit=60), args.rounds):.3f} "
              f"| {timed(lambda r=ring: r.select(since=since), args.rounds):.3f} |")


if __name__ == "__main__":
    main()
