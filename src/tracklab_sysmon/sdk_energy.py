"""The energy a run used between two `log` calls: the snapshots' joule counters, differenced per SDK key.

Keys (after the prefix): `energy.gpu.<id>.joules` per accelerator with a counter (`energy.gpu.<vendor>.<id>.joules`
where two vendors share an id, as the other GPU keys do), `energy.cpu.joules` (the RAPL package zones summed)
and `energy.dram.joules` (the DRAM zones summed).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Set

from .model import Snapshot

Device = tuple[str, int]  # (vendor, id), as scopes.visible_devices names them


def energy_totals(snapshot: Snapshot, visible: Set[Device] | None, prefix: str) -> dict[str, float]:
    """Cumulative joules per key in `snapshot`; GPUs only where `visible` holds them (None: every GPU)."""
    energy = snapshot.energy
    if energy is None:
        return {}
    totals: dict[str, float] = {}
    seen = Counter((acc.type or "gpu", acc.id) for acc in snapshot.accelerators)
    for gpu in energy.gpus:
        if visible is not None and (gpu.vendor or "", gpu.id) not in visible:
            continue
        vendor = f"{gpu.vendor or 'unknown'}." if seen["gpu", gpu.id] > 1 else ""
        totals[f"{prefix}energy.gpu.{vendor}{gpu.id}.joules"] = gpu.joules
    for key, domain in (("cpu", "package"), ("dram", "dram")):
        zones = [z.joules for z in energy.cpu if z.domain == domain]
        if zones:
            totals[f"{prefix}energy.{key}.joules"] = sum(zones)
    return totals


class EnergyBetweenLogs:
    """Thread-safe: the refresh thread `see`s each snapshot's totals, each log call `take`s what was used since."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._base: tuple[int, dict[str, float]] | None = None  # (timestamp, totals) at the previous log
        self._latest: tuple[int, dict[str, float]] | None = None

    def see(self, timestamp: int, totals: dict[str, float]) -> None:
        """The newest snapshot's totals; the first one seen is where the run's count starts."""
        with self._lock:
            self._latest = (timestamp, totals)
            if self._base is None:
                self._base = self._latest

    def take(self) -> dict[str, float]:
        """Joules per key since the previous `take` (the first: since the first snapshot seen).

        Nothing when no newer snapshot arrived (the energy since is not measured yet: the next call has it);
        a key whose counter fell (a restarted service or driver) restarts its count and is left out once.
        """
        with self._lock:
            base, latest = self._base, self._latest
            if base is None or latest is None or latest[0] == base[0]:
                return {}
            self._base = latest
        return {key: round(now - base[1][key], 6) for key, now in latest[1].items()
                if key in base[1] and now >= base[1][key]}
