"""The one module that touches the compiled C helper: same methods and records as the Python twin."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TypeVar

from . import _procfs as procfs
from ._devices_cffi import CffiDeviceTicker
from ._devices_py import Select
from ._sysfs import NOT_REGULAR
from ._sysmon_cffi import ffi, lib  # ImportError when the extension was not built
from .errors import ParseError
from .model import (
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

R = TypeVar("R", DiskCounters, NetCounters)
_PATHS = {
    lib.SM_STAT: "stat",
    lib.SM_DISKSTATS: "diskstats",
    lib.SM_NET_DEV: "net/dev",
    lib.SM_MEMINFO: "meminfo",
    lib.SM_LOADAVG: "loadavg",
    lib.SM_SNMP: "net/snmp",
}
_CPU_ROW, _DEV_ROW, _CORE_ROW = lib.SM_CPU_ROW, lib.SM_DEV_ROW, lib.SM_CORE_ROW
_NAN = float("nan")  # the C side's None


class Deferred:
    """Returned by a C parser for text outside its canonical subset: the Python parser decides."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = Deferred()


class _Buffers:
    """Caller-provided output rows for the C parsers, grown when a tree has more rows."""

    def __init__(self, rows: int = 64) -> None:
        self.total = ffi.new("double[8]")
        self.loads = ffi.new("double[3]")
        self.ints = ffi.new("int64_t[4]")
        self.cpu_rows = self.dev_rows = 0
        self.grow_cpus(rows)
        self.grow_devs(rows)

    def grow_cpus(self, rows: int) -> None:
        self.cpu_rows = rows
        self.cpus = ffi.new("double[]", rows * _CPU_ROW)

    def grow_devs(self, rows: int) -> None:
        self.dev_rows = rows
        self.devs = ffi.new("int64_t[]", rows * _DEV_ROW)


class CffiHotReader:
    """Reads the per-tick counters under `proc_root` through the C helper's kept descriptors."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        self._ticks = float(os.sysconf("SC_CLK_TCK"))
        raw = lib.sm_open(os.fsencode(proc_root))
        if raw == ffi.NULL:
            raise MemoryError("cannot allocate the C hot-path reader")
        self._reader = ffi.gc(raw, lib.sm_close)
        self._buffers = _Buffers()

    def _read(self, which: int) -> tuple[object, int]:
        length = lib.sm_read(self._reader, which)
        if length < 0:
            path = os.path.join(self.proc_root, _PATHS[which])
            if length == lib.SM_ENOTREG:  # the same error the Python twin raises for a FIFO or device
                raise OSError(errno.EINVAL, NOT_REGULAR, path)
            raise OSError(-length, os.strerror(-length), path)
        return lib.sm_text(self._reader, which), length

    def cpu_ticker(self, sys_root: str) -> CffiCpuTicker:
        return CffiCpuTicker(self, sys_root)

    def disk_ticker(self, select: Select) -> CffiDeviceTicker[DiskColumns]:
        return CffiDeviceTicker(self, DiskColumns, select, procfs.parse_diskstats)

    def net_ticker(self, select: Select) -> CffiDeviceTicker[InterfaceColumns]:
        return CffiDeviceTicker(self, InterfaceColumns, select,
                                lambda text: procfs.require_interfaces(procfs.parse_net_dev(text)))

    def stat(self) -> StatCounters:
        text, length = self._read(lib.SM_STAT)
        found = _stat(text, length, self._ticks, self._buffers)
        return procfs.parse_stat(_decode(text, length), self._ticks) if isinstance(found, Deferred) else found

    def diskstats(self) -> list[DiskCounters]:
        text, length = self._read(lib.SM_DISKSTATS)
        found = _rows(lib.sm_parse_diskstats, DiskCounters, text, length, self._buffers)
        return procfs.parse_diskstats(_decode(text, length)) if isinstance(found, Deferred) else found

    def net_dev(self) -> list[NetCounters]:
        text, length = self._read(lib.SM_NET_DEV)
        found = _rows(lib.sm_parse_net_dev, NetCounters, text, length, self._buffers)
        rows = procfs.parse_net_dev(_decode(text, length)) if isinstance(found, Deferred) else found
        return procfs.require_interfaces(rows)

    def meminfo(self) -> MemInfo:
        text, length = self._read(lib.SM_MEMINFO)
        found = _meminfo(text, length, self._buffers)
        return procfs.parse_meminfo(_decode(text, length)) if isinstance(found, Deferred) else found

    def loadavg(self) -> LoadAvg:
        text, length = self._read(lib.SM_LOADAVG)
        found = _loadavg(text, length, self._buffers)
        return procfs.parse_loadavg(_decode(text, length)) if isinstance(found, Deferred) else found

    def tcp_established(self) -> int:
        text, length = self._read(lib.SM_SNMP)
        found = _tcp_established(text, length, self._buffers)
        return procfs.parse_tcp_established(_decode(text, length)) if isinstance(found, Deferred) else found

    def process_count(self) -> int:
        count = lib.sm_process_count(self._reader)
        if count < 0:
            raise OSError(-count, os.strerror(-count), self.proc_root)
        return int(count)

    def close(self) -> None:
        """Close the kept descriptors; a later read opens them again, as the Python twin does."""
        lib.sm_reset(self._reader)


class CffiCpuTicker:
    """A CPU tick in two C calls (read /proc/stat; parse it, rate it against the last tick, read each
    core's cpufreq): Python gets the rows as columns and builds no object per core."""

    def __init__(self, reader: CffiHotReader, sys_root: str) -> None:
        self._reader = reader
        raw = lib.sm_cpu_open(os.fsencode(sys_root))
        if raw == ffi.NULL:
            raise MemoryError("cannot allocate the C CPU tick state")
        self._cpu = ffi.gc(raw, lib.sm_cpu_close)
        self._total = ffi.new("double[8]")
        self._json = ffi.new("char **")
        self._ticks = 0  # ticks so far: the C rows (and so the JSON) are those of the newest only

    def tick(self) -> CpuTick:
        text, length = self._reader._read(lib.SM_STAT)
        count = lib.sm_cpu_parse(self._cpu, text, length, self._reader._ticks)
        if count == lib.SM_DEFER:  # text outside the C parser's subset: Python parses, C does the rest
            count = self._update(procfs.parse_stat(_decode(text, length), self._reader._ticks))
        elif count == lib.SM_EPARSE:
            raise ParseError("/proc/stat has no aggregate 'cpu' line")
        elif count < 0:
            raise MemoryError("cannot grow the C CPU tick state")
        return self._columns(count)

    def _update(self, stat: StatCounters) -> int:
        self._total[0:8] = stat.total.as_tuple()
        rows = ffi.new("double[]", [v for cpu_id, times in stat.cores for v in (cpu_id, *times.as_tuple())] or [0.0])
        count = lib.sm_cpu_update(self._cpu, self._total, rows, len(stat.cores))
        if count < 0:
            raise MemoryError("cannot grow the C CPU tick state")
        return int(count)

    def _columns(self, count: int) -> CpuTick:
        flat = ffi.unpack(lib.sm_cpu_rows(self._cpu), count * _CORE_ROW)
        sources = list(map(int, flat[3::_CORE_ROW]))
        self._ticks += 1
        tick = CpuTick(
            total=CpuTimes(*ffi.unpack(lib.sm_cpu_total(self._cpu), 8)),
            overall=_known(lib.sm_cpu_overall(self._cpu)),
            cores=CoreColumns(
                list(map(int, flat[0::_CORE_ROW])),
                [None if v != v else v for v in flat[1::_CORE_ROW]],  # NaN: unknown (the C side's None)
                [None if v != v else v for v in flat[2::_CORE_ROW]],
                None,
                tuple(flat[k::_CORE_ROW] for k in range(4, _CORE_ROW)),
            ),
            frequency_source=sources,
        )
        tick.cores.encoder = self._encoder(self._ticks, completed=any(sources))
        return tick

    def _encoder(self, tick: int, *, completed: bool) -> Callable[[CoreColumns], bytes | None]:
        """Writes tick `tick`'s cores as JSON in C while they are still the newest; `completed`: the
        collector filled in frequencies the C side left to it, so C must take Python's column."""

        def encode(cores: CoreColumns) -> bytes | None:
            if tick != self._ticks:
                return None
            frequency = _doubles(cores.frequency) if completed else ffi.NULL
            temperature = _doubles(cores.temperature) if cores.temperature is not None else ffi.NULL
            length = lib.sm_cpu_json(self._cpu, frequency, temperature, self._json)
            return ffi.unpack(self._json[0], length) if length >= 0 else None

        return encode


def _doubles(column: list[float | None]) -> object:
    return ffi.new("double[]", [_NAN if v is None else v for v in column])


def parse_native(kind: str, data: bytes, ticks_per_second: float = 100.0) -> object:
    """Run one C parser on `data` alone (no Python fallback): a record, DEFERRED, or ParseError."""
    buffers = _Buffers(rows=1)
    text = ffi.from_buffer(data)
    if kind == "stat":
        return _stat(text, len(data), ticks_per_second, buffers)
    if kind == "diskstats":
        return _rows(lib.sm_parse_diskstats, DiskCounters, text, len(data), buffers)
    if kind == "net_dev":
        return _rows(lib.sm_parse_net_dev, NetCounters, text, len(data), buffers)
    parsers = {"meminfo": _meminfo, "loadavg": _loadavg, "tcp_established": _tcp_established}
    return parsers[kind](text, len(data), buffers)


def _known(value: float) -> float | None:
    return None if value != value else value  # NaN: unknown


def _decode(text: object, length: int) -> str:
    data: bytes = ffi.unpack(text, length)
    return data.decode("utf-8", "replace")


def _stat(text: object, length: int, ticks: float, buf: _Buffers) -> StatCounters | Deferred:
    while True:
        found = lib.sm_parse_stat(text, length, ticks, buf.total, buf.cpus, buf.cpu_rows)
        if found <= buf.cpu_rows:
            break
        buf.grow_cpus(found)  # more cores than rows: parse the same text again
    if found == lib.SM_DEFER:
        return DEFERRED
    if found == lib.SM_EPARSE:
        raise ParseError("/proc/stat has no aggregate 'cpu' line")
    flat = ffi.unpack(buf.cpus, found * _CPU_ROW)
    # Column slices fed to map() build the records at C speed; a per-row loop costs twice as much.
    times = map(CpuTimes, *(flat[k::_CPU_ROW] for k in range(1, _CPU_ROW)))
    cores = tuple(zip(map(int, flat[0::_CPU_ROW]), times, strict=True))
    return StatCounters(total=CpuTimes(*ffi.unpack(buf.total, 8)), cores=cores)


def _rows(
    parse: Callable[..., int], record: Callable[..., R], text: object, length: int, buf: _Buffers
) -> list[R] | Deferred:
    while True:
        found = parse(text, length, buf.devs, buf.dev_rows)
        if found <= buf.dev_rows:
            break
        buf.grow_devs(found)
    if found == lib.SM_DEFER:
        return DEFERRED
    flat = ffi.unpack(buf.devs, found * _DEV_ROW)
    raw = ffi.unpack(text, length).decode("ascii")  # canonical text: byte offsets are str offsets
    names = [raw[start : start + size] for start, size in zip(flat[0::_DEV_ROW], flat[1::_DEV_ROW], strict=True)]
    return list(map(record, names, *(flat[k::_DEV_ROW] for k in range(2, _DEV_ROW))))


def _meminfo(text: object, length: int, buf: _Buffers) -> MemInfo | Deferred:
    if lib.sm_parse_meminfo(text, length, buf.ints) == lib.SM_DEFER:
        return DEFERRED
    return MemInfo(*(None if v < 0 else v for v in ffi.unpack(buf.ints, 4)))


def _loadavg(text: object, length: int, buf: _Buffers) -> LoadAvg | Deferred:
    rc = lib.sm_parse_loadavg(text, length, buf.loads, buf.ints)
    if rc == lib.SM_DEFER:
        return DEFERRED
    if rc == lib.SM_EPARSE:
        raise ParseError(f"/proc/loadavg is malformed: {_decode(text, length)[:60]!r}")
    return LoadAvg(*ffi.unpack(buf.loads, 3), *ffi.unpack(buf.ints, 2))


def _tcp_established(text: object, length: int, buf: _Buffers) -> int | Deferred:
    rc = lib.sm_parse_tcp_established(text, length, buf.ints)
    if rc == lib.SM_DEFER:
        return DEFERRED
    if rc == lib.SM_EPARSE:
        raise ParseError("/proc/net/snmp has no readable Tcp CurrEstab")
    if rc == lib.SM_ENOTABLE:
        raise ParseError("/proc/net/snmp has no Tcp table")
    return int(buf.ints[0])
