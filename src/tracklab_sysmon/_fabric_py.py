"""NVLink data counters of one GPU decoded and rated in Python: the twin of the C helper's (`_fabric_cffi`)."""

from __future__ import annotations

from collections.abc import Sequence

from . import _nvlink
from .rates import U64_MAX, CounterColumn

MAX_KIB = U64_MAX // _nvlink.KIB  # a counter in KiB above this would not fit 64 bits in bytes


class PyNvlinkCounters:
    """The tx and rx byte counters of one GPU's links (tx, rx of link 0, then link 1, ...) and their rates.

    `read` takes the bytes of one answered request and, when entries were pruned, the slot of each
    entry (`positions`; None: entry i is slot i); a slot no entry fills, or whose entry failed, is None.
    """

    def __init__(self, links: int) -> None:
        self.size = 2 * links
        self._rates = CounterColumn(self.size)

    def read(self, raw: bytes, positions: Sequence[int] | None, now: float) -> tuple[list[int | None],
                                                                                 list[float | None]]:
        kib = _nvlink.counters(raw)
        values = [v * _nvlink.KIB if v is not None and v <= MAX_KIB else None for v in kib]
        if positions is not None:
            placed: list[int | None] = [None] * self.size
            for position, value in zip(positions, values, strict=True):
                placed[position] = value
            values = placed
        return values, self._rates.rates(values, now)
