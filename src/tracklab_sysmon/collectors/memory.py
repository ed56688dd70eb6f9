"""Memory and swap from /proc/meminfo; `used` = total - available, as `free` reports it."""

from __future__ import annotations

from ..errors import ParseError
from ..hotpath import CounterReader
from ..model import MemorySample, SwapSample
from ..rates import checked_counter, percent
from .base import Partial


class MemoryCollector:
    name = "memory"
    blocking = False

    def __init__(self, reader: CounterReader) -> None:
        self._reader = reader

    def collect(self, now: float) -> MemorySample | Partial[MemorySample]:
        info = self._reader.meminfo()
        if info.total is None:  # every kernel has MemTotal: without it the file is not meminfo
            raise ParseError("/proc/meminfo has no readable MemTotal line")
        problems: list[str] = []
        total, available, swap_total, swap_free = (
            _checked(v, label, problems)
            for v, label in ((info.total, "MemTotal"), (info.available, "MemAvailable"),
                             (info.swap_total, "SwapTotal"), (info.swap_free, "SwapFree"))
        )
        used = total - available if total is not None and available is not None else None
        swap_used = swap_total - swap_free if swap_total is not None and swap_free is not None else None
        # No swap configured is a known state: nothing of nothing is used, so 0 %, not null.
        swap_pct = 0.0 if swap_total == 0 else percent(swap_used, swap_total)
        sample = MemorySample(
            usage=percent(used, total),
            used=used,
            total=total,
            available=available,
            swap=SwapSample(used=swap_used, total=swap_total, percentage=swap_pct),
        )
        return Partial(sample, "; ".join(problems)) if problems else sample


def _checked(value: int | None, label: str, problems: list[str]) -> int | None:
    return checked_counter(value, label, problems) if value is not None else None
