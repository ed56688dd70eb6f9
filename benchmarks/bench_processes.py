"""CPU time of one /api/system/processes call (the /proc walk, the top rows), on this machine and on 1,000 processes.

A call is what the route does once per tick: `collect()` (every /proc/PID/stat) and `top(20)` (status, io,
statm, cmdline, cgroup and fd/ of the 20 rows), and for `tree` the same walk plus a 1,000-member tree.
CPU time (process_time) of the calling thread's process, median and spread over rounds, steady state (the
previous counters exist). Usage: bench_processes.py [--rounds 21] [--processes 1000] [--top 20]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from procs_fixture import FakeProcess, write_tree

from tracklab_sysmon.collectors.processes import ProcessesCollector


def _cpu_ms(call: Callable[[float], object], rounds: int) -> tuple[float, float, float]:
    """(median, min, max) CPU ms of `call(now)` over `rounds` calls, after one warm-up call."""
    now = time.monotonic()
    call(now)
    times = []
    for i in range(rounds):
        started = time.process_time()
        call(now + i + 1)
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times), min(times), max(times)


def _fixture(root: pathlib.Path, count: int) -> pathlib.Path:
    """`count` processes in a forest of depth 3 (1 -> 10 parents -> the rest), each with 8 fds."""
    processes = [FakeProcess(1, ppid=0, name="init")]
    processes += [FakeProcess(pid, ppid=1, name=f"svc{pid}", utime=pid, fds=8) for pid in range(2, 12)]
    processes += [FakeProcess(pid, ppid=2 + pid % 10, name=f"work{pid}", utime=pid * 3, rss_pages=pid, fds=8,
                              cmdline=f"python\0train.py\0--rank\0{pid}\0".encode())
                  for pid in range(12, count + 1)]
    return write_tree(root, processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    host = ProcessesCollector()
    with tempfile.TemporaryDirectory() as tmp:
        fixture = ProcessesCollector(str(_fixture(pathlib.Path(tmp), args.processes)), clock_ticks=100, page_size=4096)
        rows = [
            (f"this machine ({len(host.collect(time.monotonic()))} processes), top {args.top}",
             lambda now: host.collect(now).top(args.top)),
            (f"fixture ({args.processes} processes), the walk alone", fixture.collect),
            (f"fixture ({args.processes} processes), top {args.top}",
             lambda now: fixture.collect(now).top(args.top)),
            (f"fixture, sort=memory user=0, top {args.top}",
             lambda now: fixture.collect(now).top(args.top, "memory", "0")),
            (f"fixture, tree of pid 1 ({args.processes} members)", lambda now: fixture.collect(now).tree(1)),
            (f"this machine, tree of this process (pid {os.getpid()})",
             lambda now: host.collect(now).tree(os.getpid())),
        ]
        print(f"{'call':58} {'median ms':>10} {'min':>7} {'max':>7}")
        for label, call in rows:
            median, low, high = _cpu_ms(call, args.rounds)
            print(f"{label:58} {median:10.2f} {low:7.2f} {high:7.2f}")


if __name__ == "__main__":
    main()
