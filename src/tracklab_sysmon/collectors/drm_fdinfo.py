"""Pure parser of DRM client usage stats in /proc/PID/fdinfo/N (a leaf: imports nothing of the package).

Follows the kernel's Documentation/gpu/drm-usage-stats.rst: `drm-driver`, `drm-pdev`, `drm-client-id`,
`drm-engine-<name>: <ns> ns`, `drm-engine-capacity-<name>`, `drm-cycles-<name>` with
`drm-total-cycles-<name>` (xe), and memory as `drm-memory-<region>` (legacy) or
`drm-total-`/`drm-resident-<region>`, each `<n> [KiB|MiB]` (bytes without a unit).
"""

from __future__ import annotations

import re
from typing import NamedTuple

_UNITS = {"": 1, "KiB": 1024, "MiB": 1024 * 1024, "GiB": 1024**3}
# Preferred first: what sits in the region, then what is allotted.
_REGION_RANK = {"resident": 0, "memory": 1, "total": 2}

# The records are NamedTuples, not frozen dataclasses: every Intel client is parsed each tick (10 records an xe
# client), and a tuple is built 3-5x faster (benchmarks/bench_accel_all.py).


class EngineTime(NamedTuple):
    """One engine's busy time: `busy` ns (or GPU cycles), `total` the matching cycle clock for xe, else None."""

    name: str
    busy: int
    total: int | None = None
    capacity: int = 1  # identical engines behind the name; busy can reach capacity x wall time


class RegionMemory(NamedTuple):
    """Bytes one client holds in one memory region (vram, gtt, system, local0, ...)."""

    region: str
    bytes: int


class DrmClient(NamedTuple):
    """One open DRM file: driver, PCI address, client id, engine times and memory per region."""

    driver: str
    pdev: str | None
    client_id: int
    engines: tuple[EngineTime, ...]
    regions: tuple[RegionMemory, ...]


def parse_fdinfo(text: str) -> DrmClient | None:
    """The DRM client an fdinfo file describes; None for a non-DRM fd or one without driver and client id."""
    text = "\n" + text + "\n"  # every line between newlines: the patterns start with a literal, found fast
    meta = dict(_META.findall(text))  # a key written twice counts with its last value
    driver, client = meta.get("driver"), _int(meta.get("client-id"))
    if not driver or client is None:
        return None
    counters = {(kind, name): (int(value), unit) for kind, name, value, unit in _NUMBERS.findall(text)}
    return DrmClient(driver, meta.get("pdev") or None, client, _engines(counters), _regions(counters))


# Two regular expressions find the lines a client is made of in C; the memory lines it does not use
# (shared, active, purgeable) cost no Python at all. Every Intel client is parsed each tick
# (benchmarks/bench_intel_energy.py). Alternatives are ordered so `engine-capacity` is not read as `engine`.
_SEP, _END = r"[ \t]*:[ \t]*", r"[ \t\r]*(?=\n)"
_META = re.compile(rf"\ndrm-(driver|client-id|pdev){_SEP}(\S*){_END}")
_NUMBERS = re.compile(rf"\ndrm-(engine-capacity|total-cycles|engine|cycles|resident|memory|total)-([^:\s]+)"
                      rf"{_SEP}(\d+)[ \t]*(ns|KiB|MiB|GiB)?{_END}")
_Counters = dict[tuple[str, str], tuple[int, str]]  # (kind, name) -> (value, unit)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def _engines(counters: _Counters) -> tuple[EngineTime, ...]:
    engines: list[EngineTime] = []
    get, new = counters.get, tuple.__new__
    for (kind, name), (busy, unit) in counters.items():
        if kind == "engine" and unit in ("", "ns"):
            total = None
        elif kind == "cycles" and not unit:
            total = _plain(get(("total-cycles", name)))
            if total is None:
                continue  # cycles mean nothing without the clock they count against
        else:
            continue
        engines.append(new(EngineTime, (name, busy, total, _plain(get(("engine-capacity", name))) or 1)))
    return tuple(engines)


def _regions(counters: _Counters) -> tuple[RegionMemory, ...]:
    best: dict[str, tuple[int, int]] = {}  # region -> (rank of the kind read, bytes); regions in order of first sight
    for (kind, region), (amount, unit) in counters.items():
        rank = _REGION_RANK.get(kind)
        if rank is not None and unit != "ns":
            old = best.get(region)
            if old is None or rank < old[0]:
                best[region] = (rank, amount * _UNITS[unit])
    new = tuple.__new__
    return tuple(new(RegionMemory, (region, amount)) for region, (_, amount) in best.items())


def _plain(counter: tuple[int, str] | None) -> int | None:
    """A count without a unit (capacity, total cycles); None where absent or written with one."""
    return counter[0] if counter is not None and not counter[1] else None


def busy_percent(before: EngineTime, after: EngineTime, wall_seconds: float) -> float | None:
    """% of the engine (all `capacity` instances) busy between two readings; None without a usable interval.

    Cycle counters (xe) are divided by their own clock's delta, engine ns by the wall interval. A counter
    that went backwards (fd closed and its client id reused) gives None rather than a negative share.
    """
    busy = after.busy - before.busy
    if after.total is not None and before.total is not None:
        span = float(after.total - before.total)
    else:
        span = wall_seconds * 1e9
    if busy < 0 or span <= 0:
        return None
    return min(100.0, 100.0 * busy / (span * max(after.capacity, 1)))
