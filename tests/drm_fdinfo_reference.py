"""The DRM fdinfo parser as it was before its records became NamedTuples (commit a29d059): the parity reference."""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {"": 1, "KiB": 1024, "MiB": 1024 * 1024, "GiB": 1024**3}
_REGION_KINDS = ("resident", "memory", "total")  # preferred first: what sits in the region, then what is allotted


@dataclass(frozen=True, slots=True)
class EngineTime:
    """One engine's busy time: `busy` ns (or GPU cycles), `total` the matching cycle clock for xe, else None."""

    name: str
    busy: int
    total: int | None = None
    capacity: int = 1  # identical engines behind the name; busy can reach capacity x wall time


@dataclass(frozen=True, slots=True)
class RegionMemory:
    """Bytes one client holds in one memory region (vram, gtt, system, local0, ...)."""

    region: str
    bytes: int


@dataclass(frozen=True, slots=True)
class DrmClient:
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
    counters: dict[tuple[str, str], tuple[int, str]] = {}
    for kind, name, value, unit in _NUMBERS.findall(text):
        counters[kind, name] = (int(value), unit)
    return DrmClient(
        driver=driver,
        pdev=meta.get("pdev") or None,
        client_id=client,
        engines=_engines(counters),
        regions=_regions(counters),
    )


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
    for (kind, name), (busy, unit) in counters.items():
        if kind == "engine" and unit in ("", "ns"):
            total = None
        elif kind == "cycles" and not unit:
            total = _plain(counters.get(("total-cycles", name)))
            if total is None:
                continue  # cycles mean nothing without the clock they count against
        else:
            continue
        engines.append(EngineTime(name, busy, total, _plain(counters.get(("engine-capacity", name))) or 1))
    return tuple(engines)


def _regions(counters: _Counters) -> tuple[RegionMemory, ...]:
    found: dict[str, dict[str, int]] = {}
    for (kind, region), (amount, unit) in counters.items():
        if kind in _REGION_KINDS and unit != "ns":
            found.setdefault(region, {})[kind] = amount * _UNITS[unit]
    return tuple(
        RegionMemory(region, next(kinds[k] for k in _REGION_KINDS if k in kinds)) for region, kinds in found.items()
    )


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
