"""Pure counter maths: cumulative counters and elapsed seconds in, per-second rates out."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

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
    total = 0.0
    for rate in rates:  # left to right, as the C helper adds (sum() compensates on Python >= 3.12)
        if rate is None:
            return None
        total += rate
    return round(total, 2)


def checked_counter(value: int, label: str, problems: list[str]) -> int | None:
    """`value` if it fits an unsigned 64-bit counter; else None, with the reason added to `problems`."""
    if 0 <= value <= U64_MAX:
        return value
    problems.append(f"{label} does not fit an unsigned 64-bit counter")  # no value: one log line, not one per tick
    return None


class CounterRates:
    """Per-second rates of many cumulative counters, robust to transient dips, resets and wraps.

    Each counter keeps baselines: its last good reading and, below it, the readings of a run that
    dropped (strictly decreasing, newest last). A reading at or above the good one rates from it
    over the whole span since: the drop was a glitch (a transient all-zero line) or a reset the
    counter has outgrown. A reading that rises above a low baseline proves a reset or wrap (only a
    reset makes an honest counter fall); it rates from that baseline, over the span since the
    reading before it (when the counter was still high, so the reset lies inside the span), and
    counting restarts from it. A reading below every baseline rates 0. So no rate exceeds what the
    counter advanced over the span it covers, and a glitch is never a spike.
    """

    __slots__ = ("_baselines",)
    max_baselines = 8  # bounds the memory of a counter that keeps falling

    def __init__(self) -> None:
        self._baselines: dict[Hashable, list[tuple[int, float]]] = {}

    def rate(self, key: Hashable, value: int | None, now: float) -> float | None:
        """The rate of counter `key` now; 0 at first sight or a drop, None when `value` is unknown."""
        if value is None:
            return None
        baselines = self._baselines.get(key)
        if baselines is None:
            baselines = self._baselines[key] = []
        elif value >= baselines[0][0]:  # the usual tick: no allocation beyond the new reading
            good, good_at = baselines[0]
            baselines[0] = (value, now)
            del baselines[1:]
            return counter_rate(good, value, now - good_at)
        return _below_good(baselines, value, now, self.max_baselines)

    def device(
        self, name: str, fields: tuple[str, ...], counters: tuple[int, ...], now: float, problems: list[str]
    ) -> tuple[list[int | None], list[float | None]]:
        """One device's counters (in `fields` order) checked to 64 bits, and their rates; a counter that does
        not fit is None, with the reason added to `problems` (the text is built only then)."""
        values: list[int | None] = []
        rates: list[float | None] = []
        for field, counter in zip(fields, counters, strict=True):
            value = counter if 0 <= counter <= U64_MAX else None
            if value is None:
                problems.append(f"{name} {field} does not fit an unsigned 64-bit counter")
            values.append(value)
            rates.append(self.rate((name, field), value, now))
        return values, rates

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget counters not in `keys` (a device that went away starts afresh if it returns)."""
        keep = set(keys)
        for key in [k for k in self._baselines if k not in keep]:
            del self._baselines[key]


def _below_good(baselines: list[tuple[int, float]], value: int, now: float, max_baselines: int) -> float:
    """CounterRates' rule for a reading below the good one (or a first one): a dip, a reset or a wrap."""
    for depth in range(1, len(baselines)):
        low, _ = baselines[depth]
        if value >= low:
            if value == low:  # still flat after the drop: maybe a longer glitch, keep every baseline
                return 0.0
            since = baselines[depth - 1][1]
            baselines[:] = [(value, now)]
            return counter_rate(low, value, now - since)
    if len(baselines) < max_baselines:  # when full, skip the reading: later ones rate from older baselines
        baselines.append((value, now))  # below every baseline (or first sight): nothing to rate yet
    return 0.0


class CounterColumn:
    """`CounterRates` over a column of counters, counter i at index i: one call a tick rates them all.

    The same rule, reading for reading, as `CounterRates.rate` with the keys 0..size-1 (a parity test
    holds them together); it saves the per-counter call and key lookup where a source rates hundreds
    of counters a tick (NVLink: 288 at 8 GPUs x 18 links; benchmarks/bench_accel_all.py). Rates come
    rounded to cents (2 decimals, as published). A None reading rates None and leaves its baselines.
    """

    __slots__ = ("_baselines",)
    max_baselines = CounterRates.max_baselines

    def __init__(self, size: int) -> None:
        self._baselines: list[list[tuple[int, float]]] = [[] for _ in range(size)]

    def __len__(self) -> int:
        return len(self._baselines)

    def rates(self, values: Sequence[int | None], now: float) -> list[float | None]:
        """Each counter's rate now, rounded to cents; `values` has one reading per counter, in order."""
        out: list[float | None] = []
        append = out.append
        for baselines, value in zip(self._baselines, values, strict=True):
            if value is None:
                append(None)
                continue
            if baselines and value >= baselines[0][0]:
                good, good_at = baselines[0]
                baselines[0] = (value, now)
                if len(baselines) > 1:
                    del baselines[1:]
                elapsed = now - good_at
                # counter_rate, inlined; then cents as `cents` rounds them
                append(int((value - good) / elapsed * 100 + 0.5) / 100 if elapsed > 0 and value > good else 0.0)
            else:
                append(cents(_below_good(baselines, value, now, self.max_baselines)))
        return out


def cents(rate: float | None) -> float | None:
    """A rate (never negative) to 2 decimals, half up: rounded's precision at a quarter of round()'s cost."""
    return int(rate * 100 + 0.5) / 100 if rate is not None else None


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
