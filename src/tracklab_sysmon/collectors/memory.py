"""Memory and swap from /proc/meminfo; `used` = total - available, as `free` reports it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import MemorySample, SwapSample
from ..rates import percent

if TYPE_CHECKING:  # the hot path imports this package's parsers, so only for typing
    from ..hotpath import CounterReader


class MemoryCollector:
    name = "memory"
    section = "memory"
    blocking = False

    def __init__(self, reader: CounterReader) -> None:
        self._reader = reader

    def collect(self, now: float) -> MemorySample:
        info = self._reader.meminfo()
        used = info.total - info.available if info.total is not None and info.available is not None else None
        swap_used = (
            info.swap_total - info.swap_free
            if info.swap_total is not None and info.swap_free is not None
            else None
        )
        # No swap configured is a known state: nothing of nothing is used, so 0 %, not null.
        swap_pct = 0.0 if info.swap_total == 0 else percent(swap_used, info.swap_total)
        return MemorySample(
            usage=percent(used, info.total),
            used=used,
            total=info.total,
            available=info.available,
            swap=SwapSample(used=swap_used, total=info.swap_total, percentage=swap_pct),
        )
