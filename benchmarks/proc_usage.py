"""Shared by the benchmarks: a process's CPU from schedstat (ns, all threads), memory from smaps_rollup,
mean/median/p99 summaries and the line that says on what machine state and commit a table was taken."""

from __future__ import annotations

import math
import os
import pathlib
import statistics
import subprocess
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


class ProcessCpu:
    """CPU time of one process from `/proc/PID/task/*/schedstat` (run time in ns, not 10 ms ticks).

    Every thread is summed; a thread that ended keeps the last value read for it, so a worker
    thread that comes and goes between two reads loses at most its work since the earlier read."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._threads: dict[str, int] = {}

    def run_ns(self) -> int:
        task = f"/proc/{self.pid}/task"
        for tid in os.listdir(task):
            try:
                with open(f"{task}/{tid}/schedstat") as handle:
                    self._threads[tid] = int(handle.read().split()[0])
            except (OSError, IndexError, ValueError):  # ended between the listing and the read
                pass
        return sum(self._threads.values())


class CpuSeries:
    """Per-interval CPU % of one core for one process: call `sample()` at each interval's end."""

    def __init__(self, pid: int) -> None:
        self.cpu = ProcessCpu(pid)
        self.percents: list[float] = []
        self._mark = self._first = (time.monotonic(), self.cpu.run_ns())

    def sample(self) -> None:
        now = (time.monotonic(), self.cpu.run_ns())
        self.percents.append(100.0 * (now[1] - self._mark[1]) / 1e9 / (now[0] - self._mark[0]))
        self._mark = now

    def window_percent(self) -> float:
        """CPU % over the whole window (total run time / elapsed): what the mean of the samples estimates."""
        return 100.0 * (self._mark[1] - self._first[1]) / 1e9 / (self._mark[0] - self._first[0])

    def seconds(self) -> float:
        return self._mark[0] - self._first[0]


def memory_mib(pid: int) -> dict[str, float]:
    """Rss, Pss and Anonymous of `pid` from /proc/PID/smaps_rollup, in MiB."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss", "Anonymous"):
                found[name.lower()] = int(rest.split()[0]) / 1024
    return found


def summary(values: list[float]) -> dict[str, float]:
    """Mean, median and p99 (nearest rank) of `values`; NaN for none."""
    if not values:
        return {"mean": math.nan, "median": math.nan, "p99": math.nan, "n": 0}
    ordered = sorted(values)
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]
    return {"mean": statistics.fmean(ordered), "median": statistics.median(ordered), "p99": p99, "n": len(ordered)}


def memory_tmpdir() -> tempfile.TemporaryDirectory[str]:
    """A temporary folder in memory (/dev/shm where there is one) for a tree rewritten between timed ticks.

    sysfs and /proc hold their values in memory; a stand-in tree on a disk filesystem turns every rewrite into block
    IO, and where the kernel has no IRQ time accounting (CONFIG_IRQ_TIME_ACCOUNTING off, as on this project's
    VMs) the disk's completion interrupts are charged to whichever thread runs next: the one being timed."""
    shm = "/dev/shm"
    return tempfile.TemporaryDirectory(dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None)


def filesystem(path: str) -> str:
    """The type of the filesystem `path` is on (tmpfs, ext4, ...), from /proc/self/mounts; "unknown" without it."""
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mounts") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 2 and (path == fields[1] or path.startswith(fields[1].rstrip("/") + "/")) \
                        and len(fields[1]) > len(best):
                    best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def uptime() -> str:
    """`uptime`'s line (the load averages beside a table), or /proc/loadavg where it is missing."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "loadavg " + pathlib.Path("/proc/loadavg").read_text().strip()


def commit() -> str:
    """The measured commit, `+dirty` when src/, native/ or benchmarks/ have uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "native", "benchmarks"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")
