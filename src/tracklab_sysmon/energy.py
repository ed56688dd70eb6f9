"""The energy ledger: each tick, the accelerators' energy counters joined to the RAPL zones, with average watts.

Pure arithmetic over records (no I/O): the sampler hands it every assembled snapshot. A counter's watts are
its joules' change over the monotonic time between two ticks; the first reading, and a counter that went
backwards (a driver reload), give None rather than a made-up or negative figure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from .model import (
    AcceleratorSample,
    AmdgpuDetails,
    EnergySample,
    GpuEnergy,
    IntelDetails,
    NvmlDetails,
    RaplZone,
)

_WITH_ENERGY = (NvmlDetails, AmdgpuDetails, IntelDetails)  # a tuple: isinstance checks it in 0.15 µs, a union in 0.36


class EnergyRate:
    """Average watts of one cumulative joule counter between consecutive readings."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None  # (joules, monotonic seconds)

    def update(self, joules: float | None, now: float) -> float | None:
        """Watts since the previous reading; None first, after a missing reading, or when the counter fell."""
        last = self._last
        self._last = (joules, now) if joules is not None else None
        if joules is None or last is None or now <= last[1] or joules < last[0]:
            return None
        return round((joules - last[0]) / (now - last[1]), 3)


def gpu_joules(acc: AcceleratorSample) -> float | None:
    """The device's cumulative energy counter in joules, from whichever source read it; None without one."""
    details = acc.details
    if isinstance(details, _WITH_ENERGY) and details.readings is not None:
        return details.readings.energy
    return None


class EnergyLedger:
    """Fills a snapshot's `energy` section: its RAPL zones get watts, and every accelerator with a counter joins."""

    def __init__(self) -> None:
        self._rates: defaultdict[tuple[str, ...], EnergyRate] = defaultdict(EnergyRate)

    def section(self, energy: EnergySample | None, accelerators: Sequence[AcceleratorSample],
                now: float) -> EnergySample | None:
        """The `energy` section of a tick whose RAPL collector gave `energy`: every counter and its watts; None when
        the node has none."""
        rates = self._rates
        zones = tuple([RaplZone(z.zone, z.domain, z.package, z.joules, rates[("rapl", z.zone)].update(z.joules, now))
                       for z in (energy.cpu if energy else ())])
        gpus = tuple([GpuEnergy(acc.id, acc.vendor, acc.uuid, joules, rates[_gpu_key(acc)].update(joules, now))
                      for acc in accelerators if (joules := gpu_joules(acc)) is not None])
        return EnergySample(cpu=zones, gpus=gpus) if zones or gpus else None


def _gpu_key(acc: AcceleratorSample) -> tuple[str, ...]:
    return ("gpu", acc.uuid) if acc.uuid else ("gpu", acc.vendor or "", str(acc.id))
