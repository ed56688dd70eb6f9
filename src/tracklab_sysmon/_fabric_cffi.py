"""NVLink data counters of one GPU decoded and rated by the C helper (native/fabric.c), as `_fabric_py` does."""

from __future__ import annotations

from collections.abc import Sequence

from . import _nvlink
from ._fabric_py import MAX_KIB
from ._sysmon_cffi import ffi, lib  # ImportError when the extension was not built

_RECORD = lib.FB_RECORD_BYTES  # AttributeError from an extension built before the fabric helper existed


class CffiNvlinkCounters:
    """`PyNvlinkCounters` in one C call per tick: the request's bytes in, counters and rates out."""

    def __init__(self, links: int) -> None:
        self.size = size = 2 * links
        # Kept as attributes: C writes into them every tick; the column holds the counters' baselines.
        self._column = ffi.new("fb_counter[]", size)
        self._values, self._known = ffi.new("uint64_t[]", size), ffi.new("uint8_t[]", size)
        self._rates = ffi.new("double[]", size)
        self._positions: Sequence[int] | None = None
        self._place = ffi.NULL

    def read(self, raw: bytes, positions: Sequence[int] | None, now: float) -> tuple[list[int | None],
                                                                                 list[float | None]]:
        records, rest = divmod(len(raw), _RECORD)
        if rest:
            raise ValueError(f"{len(raw)} bytes are not a whole number of {_RECORD}-byte field values")
        if records != (self.size if positions is None else len(positions)):
            raise ValueError(f"{records} field values for {self.size} counters")
        if positions is not self._positions:  # pruned once, after the request's first answer
            self._positions = positions
            self._place = ffi.NULL if positions is None else ffi.new("uint32_t[]", list(positions))
        size = self.size
        unknown = lib.fb_field_counters(ffi.from_buffer(raw), records, self._place, MAX_KIB, _nvlink.KIB,
                                        self._values, self._known, size)
        lib.fb_column_rates(self._column, size, self._values, self._known, now, self._rates)
        values: list[int | None] = ffi.unpack(self._values, size)
        rates: list[float | None] = ffi.unpack(self._rates, size)
        if unknown:
            known = ffi.unpack(self._known, size)
            values = [v if k else None for v, k in zip(values, known, strict=True)]
            rates = [r if k else None for r, k in zip(rates, known, strict=True)]
        return values, rates
