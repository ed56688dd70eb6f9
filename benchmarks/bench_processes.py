"""CPU time of one /api/system/processes call (the /proc walk, the top rows), C walk and Python walk side by side.

A call is what the route does once per tick: `collect()` (every /proc/PID/stat) and `top(20)` (status, io,
statm, cmdline, cgroup and fd/ of the 20 rows), and for `tree` the same walk plus a 1,000-member tree.
Rows: the live /proc, first with `sleep` children spawned until it holds --live processes (0: none), then
as it is; and a generated fixture tree of --processes processes. CPU time (process_time) of the process,
median, min and max over rounds, steady state (the previous counters exist); the two walks take turns
within each round, so a busy neighbour slows both alike.
Usage: bench_processes.py [--rounds 31] [--processes 1000] [--live 1000] [--top 20]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))

from procs_fixture import FakeProcess, write_tree

from tracklab_sysmon import hotpath
from tracklab_sysmon.collectors.processes import ProcessesCollector

Call = Callable[[ProcessesCollector, float], object]
BACKENDS = ("cffi", "python")


def _fixture(root: pathlib.Path, count: int) -> pathlib.Path:
    """`count` processes in a forest of depth 3 (1 -> 10 parents -> the rest), each with 8 fds."""
    processes = [FakeProcess(1, ppid=0, name="init")]
    processes += [FakeProcess(pid, ppid=1, name=f"svc{pid}", utime=pid, fds=8) for pid in range(2, 12)]
    processes += [FakeProcess(pid, ppid=2 + pid % 10, name=f"work{pid}", utime=pid * 3, rss_pages=pid, fds=8,
                              cmdline=f"python\0train.py\0--rank\0{pid}\0".encode())
                  for pid in range(12, count + 1)]
    return write_tree(root, processes)


def _live_count() -> int:
    return sum(1 for entry in os.listdir("/proc") if entry.isdigit())


@contextlib.contextmanager
def _spawned_until(total: int) -> Iterator[int]:
    """`sleep` children until /proc holds `total` processes; yields how many there are; kills them after."""
    children = [subprocess.Popen(["sleep", "3600"]) for _ in range(max(0, total - _live_count()))]
    try:
        _settle(children)
        yield _live_count()
    finally:
        for child in children:
            child.kill()
        for child in children:
            child.wait()


def _settle(children: list[subprocess.Popen[bytes]], deadline_s: float = 60.0) -> None:
    """Wait until every child sleeps (state S): a thousand starting processes would load the CPU being measured."""
    deadline = time.monotonic() + deadline_s
    waiting = [child.pid for child in children]
    while waiting and time.monotonic() < deadline:
        waiting = [pid for pid in waiting if _state(pid) not in ("S", None)]
        if waiting:
            time.sleep(0.1)


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0].decode()
    except (OSError, IndexError):
        return None


def _collectors(proc_root: str, **kwargs: int) -> dict[str, ProcessesCollector]:
    """One collector per backend (each keeps its own previous counters)."""
    return {backend: ProcessesCollector(proc_root, walker=hotpath.select_walker(
        "require" if backend == "cffi" else "off")[0](proc_root), **kwargs) for backend in BACKENDS}


def _measure(collectors: dict[str, ProcessesCollector], call: Call, rounds: int) -> dict[str, list[float]]:
    """CPU ms of `call` per round for each backend, taking turns; one warm-up call each (the previous counters)."""
    now = time.monotonic()
    for collector in collectors.values():
        call(collector, now)
    times: dict[str, list[float]] = {backend: [] for backend in collectors}
    for i in range(rounds):
        for backend, collector in collectors.items():
            started = time.process_time()
            call(collector, now + i + 1)
            times[backend].append((time.process_time() - started) * 1000)
    return times


def _row(label: str, times: dict[str, list[float]]) -> None:
    cells = []
    for backend in BACKENDS:
        t = times[backend]
        cells.append(f"{statistics.median(t):8.2f} {min(t):6.2f} {max(t):6.2f}")
    ratio = statistics.median(times["cffi"]) / statistics.median(times["python"])
    print(f"{label:52} {cells[0]}   {cells[1]}   {ratio:5.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--processes", type=int, default=1000)
    parser.add_argument("--live", type=int, default=1000, help="spawn sleep children up to this many (0: none)")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    top = args.top

    def listing(collector: ProcessesCollector, now: float) -> object:
        return collector.collect(now).top(top)

    def walk(collector: ProcessesCollector, now: float) -> object:
        return collector.collect(now)

    print(f"{'call (ms of CPU)':52} {'C median    min    max':22}   {'Python median min max':22}   C/Py")
    if args.live:
        with _spawned_until(args.live) as count:
            live = _collectors("/proc")
            _row(f"live /proc ({count} processes), top {top}", _measure(live, listing, args.rounds))
            _row(f"live /proc ({count} processes), the walk alone", _measure(live, walk, args.rounds))
    here = _collectors("/proc")
    _row(f"live /proc as it is ({_live_count()} processes), top {top}", _measure(here, listing, args.rounds))
    _row(f"live /proc, tree of this process (pid {os.getpid()})",
         _measure(here, lambda c, now: c.collect(now).tree(os.getpid()), args.rounds))
    with tempfile.TemporaryDirectory() as tmp:
        root = str(_fixture(pathlib.Path(tmp), args.processes))
        fixture = _collectors(root, clock_ticks=100, page_size=4096)
        n = args.processes
        _row(f"fixture ({n} processes), the walk alone", _measure(fixture, walk, args.rounds))
        _row(f"fixture ({n} processes), top {top}", _measure(fixture, listing, args.rounds))
        _row(f"fixture, sort=memory user=0, top {top}",
             _measure(fixture, lambda c, now: c.collect(now).top(top, "memory", "0"), args.rounds))
        _row(f"fixture, tree of pid 1 ({n} members)",
             _measure(fixture, lambda c, now: c.collect(now).tree(1), max(5, args.rounds // 3)))


if __name__ == "__main__":
    main()
