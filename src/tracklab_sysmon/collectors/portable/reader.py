"""psutil's counters as the hot path's records: the procfs collectors' `CounterReader`, on any OS."""

from __future__ import annotations

import os
from collections.abc import Callable
from types import ModuleType
from typing import Any

import psutil

from ... import _procfs as procfs
from ..._devices_py import PyDeviceTicker, Select
from ..._sysfs import KeptFile
from ...model import CpuTimes, DiskColumns, DiskCounters, InterfaceColumns, LoadAvg, MemInfo, NetCounters, StatCounters
from ...platforms import PlatformChoice
from .wintcp import TcpEstablished

# psutil names a mode per OS; the model's name on the left, psutil's on the right.
_MODES = {"irq": ("irq", "interrupt"), "softirq": ("softirq", "dpc")}  # Windows: interrupt, DPC


def cpu_times(raw: Any) -> CpuTimes:
    """One psutil `scputimes` (any OS's fields) as CpuTimes; a mode the OS lacks is 0 s spent in it."""
    def mode(name: str) -> float:
        for field in _MODES.get(name, (name,)):
            value = getattr(raw, field, None)
            if value is not None:
                return float(value)
        return 0.0

    return CpuTimes(*(mode(m) for m in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")))


class PsutilCounterReader:
    """Per-tick counters from psutil; Linux-only sources (/proc/loadavg, /proc/net/snmp) only where the
    platform choice names them. `ps` is the psutil module, or a stand-in with the same functions."""

    def __init__(
        self,
        choice: PlatformChoice,
        *,
        ps: ModuleType | Any = psutil,
        proc_root: str = "/proc",
        tcp_established: Callable[[], int] | None = None,
    ) -> None:
        self.proc_root = proc_root
        self.choice = choice
        self._ps = ps
        if tcp_established is None and choice.connection_source == "tcpstats":
            tcp_established = TcpEstablished()
        self._tcp_established = tcp_established
        self._loadavg = KeptFile(os.path.join(proc_root, "loadavg")) if choice.thread_source == "loadavg" else None
        self._snmp = KeptFile(os.path.join(proc_root, "net/snmp")) if choice.connection_source == "snmp" else None

    def stat(self) -> StatCounters:
        cores = tuple(enumerate(cpu_times(t) for t in self._ps.cpu_times(percpu=True)))
        # The aggregate is the sum of the cores (one call, not two), as the kernel's own `cpu` line is.
        total = CpuTimes(*(sum(getattr(t, m) for _, t in cores) for m in CpuTimes.__slots__))
        return StatCounters(total=total, cores=cores)

    def diskstats(self) -> list[DiskCounters]:
        found = self._ps.disk_io_counters(perdisk=True, nowrap=False) or {}  # raw: rates.py handles resets
        return [
            DiskCounters(name, d.read_count, d.read_bytes, d.write_count, d.write_bytes) for name, d in found.items()
        ]

    def net_dev(self) -> list[NetCounters]:
        found = self._ps.net_io_counters(pernic=True, nowrap=False) or {}
        return [
            NetCounters(name, n.bytes_recv, n.packets_recv, n.bytes_sent, n.packets_sent)
            for name, n in found.items()
            if not self.is_loopback(name)
        ]

    def disk_ticker(self, select: Select) -> PyDeviceTicker[DiskColumns]:
        return PyDeviceTicker(self.diskstats, DiskColumns, select)

    def net_ticker(self, select: Select) -> PyDeviceTicker[InterfaceColumns]:
        return PyDeviceTicker(self.net_dev, InterfaceColumns, select)

    def is_loopback(self, name: str) -> bool:
        return name.startswith(self.choice.loopback)

    def meminfo(self) -> MemInfo:
        vm, swap = self._ps.virtual_memory(), self._ps.swap_memory()
        return MemInfo(int(vm.total), int(vm.available), int(swap.total), int(swap.free))

    def cpu_frequencies(self) -> list[float | None]:
        """Current MHz per entry psutil lists (one per core on Linux, one in all elsewhere); 0 is unknown."""
        found = self._ps.cpu_freq(percpu=True) or []
        return [round(float(f.current), 1) if f.current else None for f in found]

    def load_average(self) -> tuple[float, float, float] | None:
        if not self.choice.load_average:
            return None
        load1, load5, load15 = self._ps.getloadavg()
        return (round(float(load1), 2), round(float(load5), 2), round(float(load15), 2))

    def loadavg(self) -> LoadAvg:
        """/proc/loadavg where the platform has it (Linux): the only cheap all-threads count."""
        return procfs.parse_loadavg(_read(self._loadavg, "cpu.threads", self.choice))

    def tcp_established(self) -> int:
        if self._tcp_established is not None:
            return self._tcp_established()
        return procfs.parse_tcp_established(_read(self._snmp, "network.connections", self.choice))

    def process_count(self) -> int:
        return len(self._ps.pids())

    def close(self) -> None:
        for kept in (self._loadavg, self._snmp):
            if kept is not None:
                kept.close()


def _read(kept: KeptFile | None, field: str, choice: PlatformChoice) -> str:
    """A kept file's text; OSError (the collectors' "unknown") when absent here or unreadable."""
    if kept is None:
        raise OSError(choice.null_fields.get(field, f"{field} has no source on {choice.platform}"))
    text = kept.read()
    if text is None:
        raise OSError(f"cannot read {kept.path}")
    return text
