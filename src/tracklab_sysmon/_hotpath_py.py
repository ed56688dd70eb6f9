"""Pure-Python hot-path reader: kept file descriptors re-read with pread, parsed by `procfs`."""

from __future__ import annotations

import os

from . import _procfs as procfs
from ._devices_py import PyDeviceTicker, Select
from ._sysfs import KeptFile
from .model import (
    FREQ_NONE,
    FREQ_READ,
    CoreColumns,
    CpuTick,
    CpuTimes,
    DiskColumns,
    DiskCounters,
    InterfaceColumns,
    LoadAvg,
    MemInfo,
    NetCounters,
    StatCounters,
)
from .rates import busy_percent

_FREQ_NAMES = ("scaling_cur_freq", "cpuinfo_cur_freq")
# One cpufreq file per CPU is read every tick: its path is checked for a replaced file only every
# this many reads (the C helper's SM_FREQ_RECHECK), which halves the syscalls of a 256-CPU tick.
CPUFREQ_RECHECK = 16


class PyHotReader:
    """Reads the per-tick counters under `proc_root`; the C helper offers the same methods."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._files: dict[str, KeptFile] = {}
        self._ticks = float(os.sysconf("SC_CLK_TCK"))

    def _read(self, relpath: str) -> str:
        kept = self._files.get(relpath)
        if kept is None:
            kept = self._files[relpath] = KeptFile(os.path.join(self.proc_root, relpath), whole=True)
        return kept.read_or_raise()

    def stat(self) -> StatCounters:
        return procfs.parse_stat(self._read("stat"), self._ticks)

    def diskstats(self) -> list[DiskCounters]:
        return procfs.parse_diskstats(self._read("diskstats"))

    def net_dev(self) -> list[NetCounters]:
        return procfs.require_interfaces(procfs.parse_net_dev(self._read("net/dev")))

    def meminfo(self) -> MemInfo:
        return procfs.parse_meminfo(self._read("meminfo"))

    def loadavg(self) -> LoadAvg:
        return procfs.parse_loadavg(self._read("loadavg"))

    def tcp_established(self) -> int:
        return procfs.parse_tcp_established(self._read("net/snmp"))

    def process_count(self) -> int:
        with os.scandir(self.proc_root) as entries:
            # ASCII digits only: what the kernel names a PID directory, and what the C helper counts.
            return sum(1 for entry in entries if entry.name.isascii() and entry.name.isdigit())

    def cpu_ticker(self, sys_root: str) -> PyCpuTicker:
        return PyCpuTicker(self, sys_root)

    def disk_ticker(self, select: Select) -> PyDeviceTicker[DiskColumns]:
        return PyDeviceTicker(self.diskstats, DiskColumns, select)

    def net_ticker(self, select: Select) -> PyDeviceTicker[InterfaceColumns]:
        return PyDeviceTicker(self.net_dev, InterfaceColumns, select)

    def close(self) -> None:
        for kept in self._files.values():
            kept.close()
        self._files.clear()


class PyCpuTicker:
    """The Python twin of the C helper's CPU tick: usage against the previous tick, cpufreq per core."""

    def __init__(self, reader: PyHotReader, sys_root: str) -> None:
        self._reader = reader
        self._cpu_dir = os.path.join(sys_root, "devices/system/cpu")
        self._freq_files: dict[int, KeptFile | None] = {}  # chosen at first sight of a core, kept open
        self._previous: StatCounters | None = None

    def tick(self) -> CpuTick:
        stat = self._reader.stat()
        previous, self._previous = self._previous, stat
        before = dict(previous.cores) if previous else {}
        ids = [cpu_id for cpu_id, _ in stat.cores]
        usage = [_usage(before.get(cpu_id), times) for cpu_id, times in stat.cores]
        frequency, sources = zip(*map(self._frequency, ids), strict=True) if ids else ((), ())
        times = tuple(list(column) for column in zip(*(t.as_tuple() for _, t in stat.cores), strict=True))
        return CpuTick(
            total=stat.total,
            overall=_usage(previous.total if previous else None, stat.total),
            cores=CoreColumns(ids, usage, list(frequency), None, times or tuple([] for _ in range(8))),
            frequency_source=list(sources),
        )

    def _frequency(self, cpu_id: int) -> tuple[float | None, int]:
        if cpu_id not in self._freq_files:
            path = cpufreq_path(self._cpu_dir, cpu_id)
            self._freq_files[cpu_id] = KeptFile(path, recheck_every=CPUFREQ_RECHECK) if path else None
        kept = self._freq_files[cpu_id]
        if kept is None:
            return None, FREQ_NONE
        return read_frequency(kept), FREQ_READ


def cpufreq_path(cpu_dir: str, cpu_id: int) -> str | None:
    """The CPU's cpufreq file (`scaling_cur_freq`, else `cpuinfo_cur_freq`), None without cpufreq."""
    base = os.path.join(cpu_dir, f"cpu{cpu_id}", "cpufreq")
    return next((p for p in (os.path.join(base, n) for n in _FREQ_NAMES) if os.path.exists(p)), None)


def read_frequency(kept: KeptFile) -> float | None:
    """One cpufreq file's value in MHz; None while it cannot be read or parsed."""
    text = kept.read()
    return procfs.parse_khz_as_mhz(text) if text is not None else None


def _usage(previous: CpuTimes | None, current: CpuTimes) -> float | None:
    return busy_percent(previous, current) if previous is not None else None
