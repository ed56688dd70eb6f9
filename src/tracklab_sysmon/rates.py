"""Pure counter maths: cumulative counters and elapsed seconds in, per-second rates out."""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from .model import CpuTimes

U64_MAX = 2**64 - 1  # the widest counter the kernel keeps; JSON consumers (orjson) stop here too


def counter_rate(previous: float, current: float, elapsed: float) -> float:
    """Per-second rate of a cumulative counter; 0 when it went backwards (reset, wrap, hot-plug)."""
    if elapsed <= 0:
        return 0.0
    delta = current - previous
    return delta / elapsed if delta > 0 else 0.0


def rounded(rate: float | None) -> float | None:
    """A rate to 2 decimals, as published; None stays None."""
    return round(rate, 2) if rate is not None else None


def total_rate(rates: list[float | None]) -> float | None:
    """Sum of per-device rates to 2 decimals; unknown if any device's rate is unknown."""
    known = [r for r in rates if r is not None]
    return round(sum(known), 2) if len(known) == len(rates) else None


def checked_counter(value: int, label: str, problems: list[str]) -> int | None:
    """`value` if it fits an unsigned 64-bit counter; else None, with the reason added to `problems`."""
    if 0 <= value <= U64_MAX:
        return value
    problems.append(f"{label} = {value} does not fit an unsigned 64-bit counter")
    return None


@dataclass(slots=True)
class _Track:
    good: int  # the last reading at or above every earlier one since the last reset
    good_at: float
    dip: int | None = None  # a lower reading seen since: a reset if the next one stays below `good`
    dip_at: float = 0.0


class CounterRates:
    """Per-second rates of many cumulative counters, robust to transient dips, resets and wraps.

    A reading below the last good one is held as a possible reset and rates 0. If the next reading
    is back at or above the last good value, the low one was a glitch (a transient all-zero line)
    and the rate covers the whole span since the last good reading; if it stays below, the counter
    was reset (or wrapped) and counting restarts from the low reading. Either way a rate never
    exceeds what the counter advanced over the span it covers, so a glitch is never a spike.
    """

    __slots__ = ("_tracks",)

    def __init__(self) -> None:
        self._tracks: dict[Hashable, _Track] = {}

    def rate(self, key: Hashable, value: int | None, now: float) -> float | None:
        """The rate of counter `key` now; 0 at first sight or a dip, None when `value` is unknown."""
        if value is None:
            return None
        track = self._tracks.get(key)
        if track is None:
            self._tracks[key] = _Track(value, now)
            return 0.0
        if value >= track.good:
            rate = counter_rate(track.good, value, now - track.good_at)
        elif track.dip is not None and value >= track.dip:  # stayed low: a reset, count from the dip
            rate = counter_rate(track.dip, value, now - track.dip_at)
        else:  # first low reading (or lower still): hold it, report nothing yet
            track.dip, track.dip_at = value, now
            return 0.0
        track.good, track.good_at, track.dip = value, now, None
        return rate

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget counters not in `keys` (a device that went away starts afresh if it returns)."""
        keep = set(keys)
        for key in [k for k in self._tracks if k not in keep]:
            del self._tracks[key]


def busy_percent(previous: CpuTimes, current: CpuTimes) -> float | None:
    """Busy share (all but idle and iowait) of the CPU time between two readings, 0-100.

    None when no CPU time passed (the same reading twice), since a share of nothing is unknown.
    Each part is clamped at 0 because some kernels let idle time step backwards.
    """
    busy = max(0.0, current.busy - previous.busy)
    idle = max(0.0, (current.idle + current.iowait) - (previous.idle + previous.iowait))
    elapsed = busy + idle
    if elapsed <= 0:
        return None
    return round(min(100.0, 100.0 * busy / elapsed), 2)


def percent(part: float | None, whole: float | None) -> float | None:
    """part/whole in percent, None when either is unknown or whole is 0."""
    if part is None or not whole:
        return None
    return round(100.0 * part / whole, 2)
