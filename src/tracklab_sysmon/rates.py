"""Pure counter maths: cumulative counters and elapsed seconds in, per-second rates out."""

from __future__ import annotations

from .model import CpuTimes


def counter_rate(previous: float, current: float, elapsed: float) -> float:
    """Per-second rate of a cumulative counter; 0 when it went backwards (reset, wrap, hot-plug)."""
    if elapsed <= 0:
        return 0.0
    delta = current - previous
    return delta / elapsed if delta > 0 else 0.0


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
