"""NVLink data counters decoded and rated in Python: the twin of the C helper's (`_fabric_cffi`), one GPU's answer
at a time (`PyNvlinkCounters`) or every GPU of a tick (`PyNvlinkReader`, which asks NVML through ctypes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from . import _nvlink
from .rates import U64_MAX, CounterColumn

MAX_KIB = U64_MAX // _nvlink.KIB  # a counter in KiB above this would not fit 64 bits in bytes

# A tick's reading: (position in the GPUs given, NVML's return code) of each GPU whose call failed, then every
# GPU's counters and rates, GPU after GPU (tx, rx of link 0, then link 1, ...); None for each slot of a failed GPU.
Reading = tuple[list[tuple[int, int]], list[int | None], list[float | None]]


class NvlinkCounters(Protocol):
    """One GPU's tx/rx byte counters and their rates from the bytes of one answered request."""

    size: int

    def read(self, raw: bytes, positions: Sequence[int] | None, now: float) -> tuple[list[int | None],
                                                                                 list[float | None]]: ...


class NvlinkTarget(Protocol):
    """What a reader needs of one GPU: its NVML handle, its data-counter request, the slot of each of the
    request's entries once pruned (None: entry i is slot i; it changes only with the request) and its counters."""

    @property
    def handle(self) -> Any: ...

    @property
    def counters(self) -> _nvlink.Request: ...

    @property
    def positions(self) -> Sequence[int] | None: ...

    @property
    def meter(self) -> NvlinkCounters: ...


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


class PyNvlinkReader:
    """One tick of every given GPU's data counters: NVML asked GPU by GPU through ctypes (or pynvml's public call
    where the bindings give no function pointer), each answer read by the GPU's counters; the twin of
    `CffiNvlinkReader`. A failed call leaves that GPU's counters as they were."""

    def read(self, pynvml: Any, gpus: Sequence[NvlinkTarget], now: float) -> Reading:
        failures: list[tuple[int, int]] = []
        values: list[int | None] = []
        rates: list[float | None] = []
        for i, gpu in enumerate(gpus):
            meter = gpu.meter
            ret = _nvlink.call(pynvml, gpu.handle, gpu.counters)
            if ret == _nvlink.SUCCESS:
                got, rated = meter.read(_nvlink.answer(gpu.counters), gpu.positions, now)
                values += got
                rates += rated
            else:
                failures.append((i, ret))
                values += [None] * meter.size
                rates += [None] * meter.size
        return failures, values, rates
