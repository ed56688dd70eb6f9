"""CPU time of one /api/system/processes call (the /proc walk, the top rows), C walk and Python walk side by side.

A call is what the route does once per tick: `collect()` (every /proc/PID/stat) and `top(20)` (status, io,
statm, cmdline, cgroup and fd/ of the 20 rows), and for `tree` the same walk plus a 1,000-member tree.
Rows: the live /proc, first with `sleep` children spawned until it holds --live processes (0: none), then
as it is; and a generated fixture tree of --processes processes. CPU time (process_time) of the process,
median, min and max over rounds, steady state (the previous counters exist); the contenders take turns
within each round, so a busy neighbour slows them alike. For the walks alone, `floor` is the same
syscalls made from C with nothing parsed (benchmarks/floor_procwalk.c, built into out/), and `kept`
the stat files re-read through descriptors kept open (one pread each: no open, close or listing).
Usage: bench_processes.py [--rounds 31] [--processes 1000] [--live 1000] [--top 20]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import pathlib
import resource
import shutil
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
HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "out"


def _build_floor() -> ctypes.CDLL | None:
    """floor_procwalk.c as a shared library in out/; None (and say why) without a C compiler."""
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        print("note: no C compiler, so no syscall floor", file=sys.stderr)
        return None
    OUT.mkdir(exist_ok=True)
    library = OUT / "floor_procwalk.so"
    subprocess.run([cc, "-O2", "-shared", "-fPIC", str(HERE / "floor_procwalk.c"), "-o", str(library)], check=True)
    return ctypes.CDLL(str(library))


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


def _measure(contenders: dict[str, Callable[[float], object]], rounds: int) -> dict[str, list[float]]:
    """CPU ms of each contender's call per round, taking turns; one warm-up call each (the previous counters)."""
    now = time.monotonic()
    for call in contenders.values():
        call(now)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(rounds):
        for name, call in contenders.items():
            started = time.process_time()
            call(now + i + 1)
            times[name].append((time.process_time() - started) * 1000)
    return times


def _both(collectors: dict[str, ProcessesCollector], call: Call, **floors: Callable[[float], object]
          ) -> dict[str, Callable[[float], object]]:
    """The two walks' collectors with `call`, and the floors, as contenders."""
    contenders: dict[str, Callable[[float], object]] = {
        backend: (lambda now, c=collector: call(c, now)) for backend, collector in collectors.items()}
    return {**contenders, **floors}


def _row(label: str, times: dict[str, list[float]]) -> None:
    cells = []
    for backend in BACKENDS:
        t = times[backend]
        cells.append(f"{statistics.median(t):8.2f} {min(t):6.2f} {max(t):6.2f}")
    ratio = statistics.median(times["cffi"]) / statistics.median(times["python"])
    floors = "".join(f"{statistics.median(times[name]):8.2f}" if name in times else "" for name in ("floor", "kept"))
    print(f"{label:52} {cells[0]}   {cells[1]}   {ratio:5.2f} {floors}", flush=True)


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

    floor = _build_floor()
    # Kept descriptors: one per process, as the service allows itself (it raises the soft limit to the hard one).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def floors(root: str, *, kept: bool = False) -> dict[str, Callable[[float], object]]:
        if floor is None:
            return {}
        found = {"floor": lambda now: floor.floor_walk(os.fsencode(root))}
        if kept:
            found["kept"] = lambda now: floor.floor_kept(os.fsencode(root))
        return found

    heads = f"{'C median    min    max':22}   {'Python median min max':22}   C/Py   floor    kept"
    print(f"{'call (ms of CPU)':52} {heads}")
    if args.live:
        with _spawned_until(args.live) as count:
            # Both rows in the same rounds (their own collectors): the first rounds after a thousand spawns
            # are not quieter or busier for one of them.
            listed = {f"list {name}": call for name, call in _both(_collectors("/proc"), listing).items()}
            times = _measure({**listed, **_both(_collectors("/proc"), walk, **floors("/proc", kept=True))},
                             args.rounds)
            _row(f"live /proc ({count} processes), top {top}",
                 {backend: times[f"list {backend}"] for backend in BACKENDS})
            _row(f"live /proc ({count} processes), the walk alone", times)
    here = _collectors("/proc")
    _row(f"live /proc as it is ({_live_count()} processes), top {top}", _measure(_both(here, listing), args.rounds))
    _row(f"live /proc, tree of this process (pid {os.getpid()})",
         _measure(_both(here, lambda c, now: c.collect(now).tree(os.getpid())), args.rounds))
    with tempfile.TemporaryDirectory() as tmp:
        root = str(_fixture(pathlib.Path(tmp), args.processes))
        fixture = _collectors(root, clock_ticks=100, page_size=4096)
        n = args.processes
        _row(f"fixture ({n} processes), the walk alone", _measure(_both(fixture, walk, **floors(root)), args.rounds))
        _row(f"fixture ({n} processes), top {top}", _measure(_both(fixture, listing), args.rounds))
        _row(f"fixture, sort=memory user=0, top {top}",
             _measure(_both(fixture, lambda c, now: c.collect(now).top(top, "memory", "0")), args.rounds))
        _row(f"fixture, tree of pid 1 ({n} members)",
             _measure(_both(fixture, lambda c, now: c.collect(now).tree(1)), max(5, args.rounds // 3)))
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


if __name__ == "__main__":
    main()
