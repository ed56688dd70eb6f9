"""The process list: one /proc/PID/stat walk per collection, the costlier files read only for the rows asked for.

Not a snapshot section: `ProcessesCollector.collect` has the collector's shape (`name`, `blocking`,
`collect(now)`) but returns a `ProcessTable`, which the server caches for one tick (server/processes.py).
A process is keyed by (pid, start time), so a rate is never computed across a reused pid.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TypeVar

from .. import hotpath
from .._procfs_pid import parse_btime, parse_cmdline, parse_pid_io, parse_statm_resident, parse_status_uid
from .._procwalk_py import read_head as _read
from ..errors import ParseError
from ..model import GpuProcessUse, PidIo, PidStat, ProcessSample, ProcessSort, ProcessTree
from .cgroup_files import CgroupEntry, parse_identity, parse_proc_cgroup

GpuUsage = Callable[[], Mapping[int, Sequence[GpuProcessUse]]]
ProcessKey = tuple[int, int]  # (pid, start ticks)

log = logging.getLogger(__name__)
N = TypeVar("N", int, float)
_RERANK_MARGIN = 16
_USER_HZ, _PAGE_BYTES = 100, 4096  # Linux's USER_HZ and the usual page, where os.sysconf is missing


def no_gpu_usage() -> Mapping[int, Sequence[GpuProcessUse]]:
    """The default GPU source: no process uses an accelerator."""
    return {}


@lru_cache(maxsize=1024)
def user_name(uid: int) -> str:
    """The account name of `uid`, or its number where the passwd database has none (a container's user)."""
    try:
        import pwd  # POSIX only; imported here so the server still imports where it is absent (Windows)

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return str(uid)


class ProcessesCollector:
    """Walks `proc_root`; keeps the previous cpu and io counters per (pid, start time) for the rates."""

    name = "processes"
    blocking = True  # one open/read per process: run off the event loop

    def __init__(
        self, proc_root: str = "/proc", *, gpu_usage: GpuUsage = no_gpu_usage,
        clock_ticks: int | None = None, page_size: int | None = None, walker: hotpath.ProcessWalker | None = None,
    ) -> None:
        self.proc_root = proc_root
        # The stat of every process: one C call where the helper is built (hotpath's choice), else Python.
        self.walker = walker if walker is not None else hotpath.open_walker(proc_root)
        self.gpu_usage = gpu_usage
        # Looked up here, not at import: os.sysconf is POSIX-only, and without /proc nothing is read anyway.
        sysconf = getattr(os, "sysconf", None)
        self.clock_ticks = clock_ticks or (sysconf("SC_CLK_TCK") if sysconf else _USER_HZ)
        self.page_size = page_size or (sysconf("SC_PAGE_SIZE") if sysconf else _PAGE_BYTES)
        self._btime: int | None = None
        self._previous_time: float | None = None  # of the previous collection
        self._previous_cpu: dict[ProcessKey, int] = {}  # utime + stime ticks at the previous collection
        self._previous_io: dict[ProcessKey, tuple[float, PidIo]] = {}
        self._lock = threading.Lock()  # the io counters are touched by detail reads of concurrent requests
        self._collecting = threading.Lock()

    def collect(self, now: float) -> ProcessTable:
        """Read every /proc/PID/stat once; `now` is monotonic seconds (the cpu rates' clock).

        Collections never overlap (a slow one still running when the next tick asks): each rate needs
        the one before it.
        """
        with self._collecting:
            stats, cpu = self._walk(now)
        return ProcessTable(self, now, stats, cpu, self._gpu_use())

    def _gpu_use(self) -> Mapping[int, Sequence[GpuProcessUse]]:
        try:
            return self.gpu_usage()
        except Exception as exc:  # a vendor library's failure costs the GPU columns, not the process list
            log.warning("per-process GPU use unavailable: %s", exc)
            return {}

    def _walk(self, now: float) -> tuple[dict[int, PidStat], dict[int, float | None]]:
        """Every process's stat and cpu %; the loop is the whole cost of a call on a busy host, hence its shape."""
        before_time, self._previous_time = self._previous_time, now
        elapsed = now - before_time if before_time is not None else 0.0
        scale = 100.0 / self.clock_ticks / elapsed if elapsed > 0 else None  # % of one core per tick
        stats: dict[int, PidStat] = {}
        cpu: dict[int, float | None] = {}
        previous_ticks, current = self._previous_cpu.get, {}
        for stat in self.walker.stats():  # `Unavailable` without proc_root; exited processes are left out
            pid, _, _, _, cpu_ticks, _, start_ticks, _ = stat  # one unpacking: cheaper than three attribute reads
            key = (pid, start_ticks)
            stats[pid] = stat
            current[key] = cpu_ticks
            ticks = previous_ticks(key)  # None for a new process, and for a reused pid (new start time)
            if ticks is None or scale is None:
                cpu[pid] = None
            else:
                cpu[pid] = (cpu_ticks - ticks) * scale if cpu_ticks > ticks else 0.0
        self._previous_cpu = current
        with self._lock:  # forget the io counters of processes that are gone
            self._previous_io = {k: v for k, v in self._previous_io.items() if k in current}
        return stats, cpu

    def start_time_ms(self, start_ticks: int) -> int:
        if self._btime is None:
            with open(f"{self.proc_root}/stat", encoding="ascii", errors="replace") as f:
                self._btime = parse_btime(f.read())
        return round((self._btime + start_ticks / self.clock_ticks) * 1000)

    def uid(self, pid: int) -> int | None:
        try:
            return parse_status_uid(_read(f"{self.proc_root}/{pid}/status").decode("utf-8", "replace"))
        except (OSError, ParseError):
            return None

    def io_rates(self, stat: PidStat, now: float) -> tuple[float | None, float | None]:
        """Bytes/s read and written since this process's io was last read; (None, None) where not permitted."""
        try:
            io = parse_pid_io(_read(f"{self.proc_root}/{stat.pid}/io").decode("ascii", "replace"))
        except (OSError, ParseError):
            return None, None
        key = (stat.pid, stat.start_ticks)
        with self._lock:
            before = self._previous_io.get(key)
            if before is None or before[0] < now:
                self._previous_io[key] = (now, io)
        if before is None or before[0] >= now:
            return None, None
        elapsed = now - before[0]
        return (max(0, io.read_bytes - before[1].read_bytes) / elapsed,
                max(0, io.write_bytes - before[1].write_bytes) / elapsed)

    def rss(self, stat: PidStat) -> int:
        """Resident bytes from statm, as top shows them; stat's own count (ranking only) where statm is gone."""
        try:
            pages = parse_statm_resident(_read(f"{self.proc_root}/{stat.pid}/statm").decode("ascii", "replace"))
        except (OSError, ParseError):
            pages = stat.rss_pages
        return pages * self.page_size

    def fds(self, pid: int) -> int | None:
        try:
            return len(os.listdir(f"{self.proc_root}/{pid}/fd"))
        except OSError:
            return None

    def cmdline(self, pid: int) -> str:
        try:
            return parse_cmdline(_read(f"{self.proc_root}/{pid}/cmdline"))
        except OSError:
            return ""

    def cgroup(self, pid: int) -> tuple[str | None, str | None]:
        """(cgroup path, container id) from /proc/PID/cgroup."""
        try:
            return _cgroup_of(_read(f"{self.proc_root}/{pid}/cgroup").decode("utf-8", "replace"))
        except (OSError, ParseError):
            return None, None


@lru_cache(maxsize=512)
def _cgroup_of(text: str) -> tuple[str | None, str | None]:
    """(cgroup path, container id) of one /proc/PID/cgroup text. Cached by text: most processes share a few
    texts, and parsing one (~10 lines on a v1 host) costs 20-30 us, half the cost of a row."""
    entry = _described_entry(parse_proc_cgroup(text))
    if entry is None:
        return None, None
    return entry.path, parse_identity(entry.path, 2 if entry.hierarchy == 0 else 1).container_id


def _described_entry(entries: Sequence[CgroupEntry]) -> CgroupEntry | None:
    """The v1 memory (or cpu) hierarchy where there is one (a hybrid's v2 line often holds only systemd's
    path), else the v2 line."""
    for controller in ("memory", "cpu"):
        for entry in entries:
            if controller in entry.controllers:
                return entry
    return next((e for e in entries if e.hierarchy == 0), entries[0] if entries else None)


class ProcessTable:
    """One collection: every process's stat and cpu rate; rows are completed (user, io, fds...) on demand."""

    def __init__(
        self, source: ProcessesCollector, now: float, stats: dict[int, PidStat],
        cpu: dict[int, float | None], gpu: Mapping[int, Sequence[GpuProcessUse]],
    ) -> None:
        self.source = source
        self.now = now
        self.stats = stats
        self.cpu = cpu
        self.gpu = gpu
        self._rows: dict[int, ProcessSample] = {}
        self._uids: dict[int, int | None] = {}
        self._rss: dict[int, int] = {}  # statm's resident bytes, read once per table
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.stats)

    def top(self, count: int, sort: ProcessSort = "cpu", user: str | None = None) -> tuple[ProcessSample, ...]:
        """The `count` first processes by `sort` (largest first, ties by pid), of `user` (name or uid) if given."""
        pids: Iterable[int] = self.stats
        if user is not None:
            pids = [pid for pid in pids if self._user_matches(pid, user)]
        first = [pid for _, pid in heapq.nsmallest(
            2 * count + _RERANK_MARGIN if sort == "memory" else count, self._ranks(pids, sort))]
        if sort == "memory":  # ranked by stat's rss, which lags statm's a little: re-rank a margin by statm's
            first = sorted(first, key=lambda pid: (-self._resident(pid), pid))[:count]
        return tuple(self.row(pid) for pid in first)

    def _resident(self, pid: int) -> int:
        if pid not in self._rss:
            self._rss[pid] = self.source.rss(self.stats[pid])
        return self._rss[pid]

    def _ranks(self, pids: Iterable[int], sort: ProcessSort) -> list[tuple[float, int]]:
        """(negated figure, pid) per process: the smallest come first. Built in one pass, no key function."""
        if sort == "memory":
            stats = self.stats
            return [(-stats[pid].rss_pages, pid) for pid in pids]
        if sort == "gpu_memory":
            gpu = self.gpu
            return [(-sum(use.memory or 0 for use in gpu.get(pid, ())), pid) for pid in pids]
        cpu = self.cpu  # a first read (no rate yet) ranks last
        return [(-(rate if (rate := cpu[pid]) is not None else -1.0), pid) for pid in pids]

    def _user_matches(self, pid: int, user: str) -> bool:
        uid = self._uid(pid)
        return uid is not None and (user == str(uid) or user == user_name(uid))

    def _uid(self, pid: int) -> int | None:
        if pid not in self._uids:
            self._uids[pid] = self.source.uid(pid)
        return self._uids[pid]

    def row(self, pid: int) -> ProcessSample:
        """The full row of `pid` (a KeyError if it was not in this collection); read once per table."""
        with self._lock:
            if pid not in self._rows:
                self._rows[pid] = self._complete(self.stats[pid])
            return self._rows[pid]

    def _complete(self, stat: PidStat) -> ProcessSample:
        source = self.source
        uid = self._uid(stat.pid)
        read_rate, write_rate = source.io_rates(stat, self.now)
        cgroup, container_id = source.cgroup(stat.pid)
        return ProcessSample(
            pid=stat.pid, ppid=stat.ppid, name=stat.name, cmdline=source.cmdline(stat.pid),
            user=user_name(uid) if uid is not None else None, state=stat.state, cpu=self.cpu[stat.pid],
            rss=self._resident(stat.pid), threads=stat.threads, fds=source.fds(stat.pid),
            read_rate=read_rate, write_rate=write_rate, start_time=source.start_time_ms(stat.start_ticks),
            cgroup=cgroup, container_id=container_id, gpu=tuple(self.gpu.get(stat.pid, ())),
        )

    def tree(self, pid: int) -> ProcessTree:
        """`pid` and every descendant, summed (a KeyError if `pid` was not in this collection)."""
        root = self.row(pid)
        children: dict[int, list[int]] = {}
        for stat in self.stats.values():
            children.setdefault(stat.ppid, []).append(stat.pid)
        members, stack = [], [pid]
        while stack:
            member = stack.pop()
            members.append(member)
            stack.extend(child for child in children.get(member, ()) if child != member)
        rows = [root] + [self.row(m) for m in sorted(members[1:])]
        return ProcessTree(
            root=root, pids=tuple(r.pid for r in rows), cpu=_known_sum(r.cpu for r in rows),
            rss=sum(r.rss for r in rows), threads=sum(r.threads for r in rows),
            fds=_known_sum(r.fds for r in rows), read_rate=_known_sum(r.read_rate for r in rows),
            write_rate=_known_sum(r.write_rate for r in rows), gpu=sum_gpu_use(u for r in rows for u in r.gpu),
        )


def _known_sum(values: Iterable[N | None]) -> N | None:
    """The sum of the values that are known; None when none is."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def sum_gpu_use(uses: Iterable[GpuProcessUse]) -> tuple[GpuProcessUse, ...]:
    """One entry per (vendor, device): memory and utilisation summed over the known values."""
    grouped: dict[tuple[str, int], list[GpuProcessUse]] = {}
    for use in uses:
        grouped.setdefault((use.vendor, use.device), []).append(use)
    return tuple(
        GpuProcessUse(device, vendor, _known_sum(u.memory for u in group), _known_sum(u.utilization for u in group))
        for (vendor, device), group in sorted(grouped.items())
    )
