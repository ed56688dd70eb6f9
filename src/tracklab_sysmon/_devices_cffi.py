"""Whole disks and interfaces rated by the C helper (native/devices.c), handed over as columns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol

from ._devices_py import Select
from ._sysmon_cffi import ffi, lib  # ImportError when the extension was not built
from .model import DEVICE_COUNTERS, DEVICE_RATES, ColumnsT, DeviceTick, DiskColumns, DiskCounters, NetCounters
from .rates import U64_MAX


class KernelText(Protocol):
    """What the ticker needs of the C hot-path reader: one kernel file's text as the C side read it."""

    def _read(self, which: int) -> tuple[object, int]: ...

_DISK_ORDER = ("reads", "read_bytes", "writes", "write_bytes")  # the C parser's counter order
_NET_ORDER = ("bytes_recv", "packets_recv", "bytes_sent", "packets_sent")


class CffiDeviceTicker(Generic[ColumnsT]):
    """One file read, parsed and rated in C per tick; Python builds no object per device, and asks
    `select` which rows count only when their names change."""

    def __init__(self, reader: KernelText, columns: type[ColumnsT], select: Select,
                 parse: Callable[[str], Sequence[DiskCounters | NetCounters]]) -> None:
        """`parse`: the Python parser, for text outside the C parser's subset."""
        self._reader, self._select, self._parse = reader, select, parse
        self._columns: type[ColumnsT] = columns
        self._file = lib.SM_DISKSTATS if columns is DiskColumns else lib.SM_NET_DEV
        raw = lib.sm_devs_open(self._file)
        if raw == ffi.NULL:
            raise MemoryError("cannot allocate the C device table")
        self._devs = ffi.gc(raw, lib.sm_devs_close)
        self._names: tuple[str, ...] = ()  # the selected rows' names, kept while the rows stay
        self._loaded_invalid = False  # rows parsed by Python had a counter too wide for 64 bits
        self._ticks = 0
        self._json = ffi.new("char **")
        self._spans = ffi.new("int64_t **")

    def tick(self, now: float) -> DeviceTick[ColumnsT]:
        text, length = self._reader._read(self._file)
        found = lib.sm_devs_parse(self._devs, text, length)
        self._loaded_invalid = False
        if found == lib.SM_DEFER:
            found = self._load(self._parse(_decode(text, length)))
        elif found < 0:
            raise MemoryError("cannot grow the C device table")
        elif found == 0 and self._file == lib.SM_NET_DEV:
            self._parse("")  # no interface line: the Python parser's own error says so
        if lib.sm_devs_changed(self._devs):
            self._reselect(found)
        count = lib.sm_devs_rate(self._devs, now)
        if count < 0:
            raise MemoryError("cannot grow the C device table")
        return self._tick(count)

    def _load(self, rows: Sequence[DiskCounters | NetCounters]) -> int:
        order = _DISK_ORDER if self._file == lib.SM_DISKSTATS else _NET_ORDER
        names = [row.name.encode("utf-8", "surrogateescape") for row in rows]
        values = [getattr(row, field) for row in rows for field in order]
        fits = [0 <= v <= U64_MAX for v in values]
        self._loaded_invalid = not all(fits)
        spans: list[int] = []
        at = 0
        for name in names:
            spans += (at, len(name))
            at += len(name)
        found = lib.sm_devs_load(self._devs, b"".join(names), spans or [0], [v if ok else 0 for v, ok in zip(
            values, fits, strict=True)] or [0], bytes(fits) or b"\0", len(rows))
        if found < 0:
            raise MemoryError("cannot grow the C device table")
        return int(found)

    def _reselect(self, found: int) -> None:
        text = lib.sm_devs_names(self._devs, self._spans)
        flat = ffi.unpack(self._spans[0], 2 * found) if found else []
        arena = ffi.unpack(text, flat[-2] + flat[-1]) if found else b""
        names = [arena[at : at + size].decode("utf-8", "surrogateescape") for at, size in zip(
            flat[0::2], flat[1::2], strict=True)]
        wanted = self._select(names)
        if lib.sm_devs_select(self._devs, bytes(wanted) or b"\0") < 0:
            raise MemoryError("cannot grow the C device table")
        self._names = tuple(name for name, keep in zip(names, wanted, strict=True) if keep)

    def _tick(self, count: int) -> DeviceTick[ColumnsT]:
        self._ticks += 1
        # One bytes copy per column (the snapshot outlives the C buffers), read through memoryviews.
        counters = memoryview(ffi.buffer(lib.sm_devs_counters(self._devs), count * DEVICE_COUNTERS * 8)[:])
        rates = memoryview(ffi.buffer(lib.sm_devs_rates(self._devs), count * DEVICE_RATES * 8)[:])
        invalid = None
        if self._loaded_invalid:
            valid = ffi.buffer(lib.sm_devs_valid(self._devs), count * DEVICE_COUNTERS)[:]
            invalid = bytes(1 - v for v in valid)
        columns = self._columns(self._names, counters.cast("Q"), rates.cast("d"), invalid)
        columns.encoder = self._encoder(self._ticks)
        totals = tuple(None if t != t else t for t in ffi.unpack(lib.sm_devs_totals(self._devs), DEVICE_RATES))
        return DeviceTick(columns, totals)

    def _encoder(self, tick: int) -> Callable[[], bytes | None]:
        """Writes tick `tick`'s devices as JSON in C while they are still the newest."""

        def encode() -> bytes | None:
            if tick != self._ticks:
                return None
            length = lib.sm_devs_json(self._devs, self._json)
            return ffi.unpack(self._json[0], length) if length >= 0 else None

        return encode


def _decode(text: object, length: int) -> str:
    data: bytes = ffi.unpack(text, length)
    return data.decode("utf-8", "replace")
