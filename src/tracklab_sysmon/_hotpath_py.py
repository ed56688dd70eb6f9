"""Pure-Python hot-path reader: kept file descriptors re-read with pread, parsed by `procfs`."""

from __future__ import annotations

import os

from . import _procfs as procfs
from ._sysfs import KeptFile
from .model import DiskCounters, LoadAvg, MemInfo, NetCounters, StatCounters


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

    def close(self) -> None:
        for kept in self._files.values():
            kept.close()
        self._files.clear()
