"""The Python twin of the C helper's device rates (native/devices.c): whole disks and interfaces as columns."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Generic

from .model import (
    DEVICE_RATES,
    ColumnsT,
    DeviceTick,
    DiskColumns,
    DiskCounters,
    NetCounters,
)
from .rates import CounterRates, rounded, total_rate

Select = Callable[[list[str]], list[bool]]  # the rows' names -> which of them count
# CounterRates' fields per kind, and where each lands among the wire's counters.
_DISK_FIELDS = ("reads", "read_bytes", "writes", "write_bytes")
_NET_FIELDS = ("bytes_recv", "bytes_sent", "packets_recv", "packets_sent")
_DISK_WIRE = (1, 3, 0, 2)  # read bytes, write bytes, reads, writes
_NET_WIRE = (0, 1, 2, 3)


class PyDeviceTicker(Generic[ColumnsT]):
    """Rates the rows `read` returns, of the devices `select` keeps (asked when the names change)."""

    def __init__(self, read: Callable[[], Sequence[DiskCounters | NetCounters]], columns: type[ColumnsT],
                 select: Select) -> None:
        self._read, self._select = read, select
        self._columns: type[ColumnsT] = columns
        self._disk = columns is DiskColumns
        self._fields = _DISK_FIELDS if self._disk else _NET_FIELDS
        self._rates = CounterRates()
        self._names: list[str] | None = None
        self._wanted: list[bool] = []

    def tick(self, now: float) -> DeviceTick[ColumnsT]:
        rows = self._read()
        names = [row.name for row in rows]
        if names != self._names:
            self._names, self._wanted = names, self._select(names)
        selected = [row for row, wanted in zip(rows, self._wanted, strict=True) if wanted]
        wire = _DISK_WIRE if self._disk else _NET_WIRE
        counters: list[int] = []
        invalid = bytearray()
        published: list[list[float | None]] = []
        problems: list[str] = []  # the columns say the same (overflow_problems)
        for row in selected:
            raw_counters = tuple(getattr(row, field) for field in self._fields)
            values, raw = self._rates.device(row.name, self._fields, raw_counters, now, problems)
            counters.extend(values[k] or 0 for k in wire)  # None (too wide) is 0 here, marked invalid
            invalid.extend(values[k] is None for k in wire)
            published.append(self._published(raw))
        self._rates.retain((row.name, field) for row in selected for field in self._fields)
        columns = self._columns(tuple(row.name for row in selected), counters,
                                [_nan(r) for rates in published for r in rates],
                                bytes(invalid) if any(invalid) else None)
        totals = tuple(total_rate([rates[j] for rates in published]) if published else None
                       for j in range(DEVICE_RATES))
        return DeviceTick(columns, totals)

    def _published(self, raw: list[float | None]) -> list[float | None]:
        if not self._disk:
            return [rounded(r) for r in raw]
        reads, read_bytes, writes, write_bytes = raw
        iops = round(reads + writes, 2) if reads is not None and writes is not None else None
        return [rounded(read_bytes), rounded(write_bytes), iops, None]


def _nan(value: float | None) -> float:
    return math.nan if value is None else value
