"""Pure parser of DRM client usage stats in /proc/PID/fdinfo/N (a leaf: imports nothing of the package).

Follows the kernel's Documentation/gpu/drm-usage-stats.rst: `drm-driver`, `drm-pdev`, `drm-client-id`,
`drm-engine-<name>: <ns> ns`, `drm-engine-capacity-<name>`, `drm-cycles-<name>` with
`drm-total-cycles-<name>` (xe), and memory as `drm-memory-<region>` (legacy) or
`drm-total-`/`drm-resident-<region>`, each `<n> [KiB|MiB]` (bytes without a unit).
"""

from __future__ import annotations

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
    fields = _fields(text)
    driver, client = fields.get("drm-driver"), _int(fields.get("drm-client-id"))
    if not driver or client is None:
        return None
    return DrmClient(
        driver=driver,
        pdev=fields.get("drm-pdev") or None,
        client_id=client,
        engines=_engines(fields),
        regions=_regions(fields),
    )


def _fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.startswith("drm-"):
            fields[key.strip()] = value.strip()
    return fields


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def _engines(fields: dict[str, str]) -> tuple[EngineTime, ...]:
    engines: list[EngineTime] = []
    for key, value in fields.items():
        if key.startswith("drm-engine-capacity-"):
            continue
        if key.startswith("drm-engine-"):
            name, busy, total = key[len("drm-engine-"):], _int(value.removesuffix("ns").strip()), None
        elif key.startswith("drm-cycles-"):
            name, busy = key[len("drm-cycles-"):], _int(value)
            total = _int(fields.get(f"drm-total-cycles-{name}"))
            if total is None:
                continue  # cycles mean nothing without the clock they count against
        else:
            continue
        if busy is not None:
            capacity = _int(fields.get(f"drm-engine-capacity-{name}")) or 1
            engines.append(EngineTime(name=name, busy=busy, total=total, capacity=capacity))
    return tuple(engines)


def _regions(fields: dict[str, str]) -> tuple[RegionMemory, ...]:
    found: dict[str, dict[str, int]] = {}
    for key, value in fields.items():
        kind, _, region = key[len("drm-"):].partition("-")
        if kind in _REGION_KINDS and region and not region.startswith("cycles-"):
            amount = _bytes(value)
            if amount is not None:
                found.setdefault(region, {})[kind] = amount
    return tuple(
        RegionMemory(region, next(kinds[k] for k in _REGION_KINDS if k in kinds)) for region, kinds in found.items()
    )


def _bytes(value: str) -> int | None:
    parts = value.split()
    if not 1 <= len(parts) <= 2:
        return None
    scale = _UNITS.get(parts[1] if len(parts) == 2 else "")
    amount = _int(parts[0])
    return amount * scale if amount is not None and scale is not None else None


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
