"""Intel GPUs under i915 and xe: sysfs, the card's hwmon and its DRM clients; sleeping cards are not woken."""

from __future__ import annotations

import os

from ..energy import EnergyRate
from ..errors import Unavailable
from ..model import (
    AcceleratorMemory,
    AcceleratorSample,
    EngineUse,
    IntelDetails,
    IntelReadings,
    TemperatureSensor,
)
from ..rates import percent
from .drm_clients import FD_WALK_SECONDS
from .intel_cards import IntelCard, discover, read_files, read_status
from .intel_engines import WALK_SHARE, CardUse, EngineMeter

RESCAN_SECONDS = 60.0  # with no card found, look again this often (driver loaded late)


class IntelCollector:
    """One `AcceleratorSample` per i915/xe card, `id` in PCI address order (as the process list numbers them).

    Per tick: runtime status, GT frequency, hwmon energy and temperatures (kept files), and the engine
    time of the DRM clients found by the last fd walk (every `fd_walk_seconds`, stretched so walks cost at
    most `walk_share` of one core; None: never stretched). `power` is the hwmon energy's rate between ticks.
    """

    name = "intel"

    def __init__(self, sys_root: str = "/sys", proc_root: str = "/proc", *, pci_ids: str | None = None,
                 fd_walk_seconds: float = FD_WALK_SECONDS, walk_share: float | None = WALK_SHARE) -> None:
        self.sys_root, self.pci_ids = sys_root, pci_ids
        self._meter = EngineMeter(proc_root, fd_walk_seconds, walk_share)
        self._cards: tuple[IntelCard, ...] = ()
        self._by_pdev: dict[str, IntelCard] = {}
        self._scanned_at: float | None = None
        self._power: dict[str, EnergyRate] = {}

    @property
    def blocking(self) -> bool:
        """Off the loop once cards exist (hwmon reads ask the card's firmware); inline while none do."""
        return bool(self._cards)

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        if not self._cards and (self._scanned_at is None or now - self._scanned_at >= RESCAN_SECONDS):
            self._cards, self._scanned_at = discover(self.sys_root, self.pci_ids), now
            self._by_pdev = {card.bus_id: card for card in self._cards}
            self._power = {card.bus_id: EnergyRate() for card in self._cards}
        if not self._cards:
            raise Unavailable(f"no i915 or xe device under {os.path.join(self.sys_root, 'class/drm')}")
        statuses = [self._status(card) for card in self._cards]
        uses = self._meter.read(now, self._by_pdev)
        return tuple(self._sample(card, status, uses[card.bus_id], now)
                     for card, status in zip(self._cards, statuses, strict=True))

    def _status(self, card: IntelCard) -> str | None:
        """The card's runtime PM status; a card whose device folder is gone (unbound, unplugged) fails the tick
        and the cards are looked for again on the next one."""
        status = read_status(card)
        if status is None and not os.path.isdir(os.path.join(self.sys_root, "class/drm", card.card, "device")):
            self._cards, self._scanned_at = (), None
            raise OSError(f"{card.card} ({card.bus_id}) is gone from {os.path.join(self.sys_root, 'class/drm')}")
        return status

    def _sample(self, card: IntelCard, status: str | None, use: CardUse, now: float) -> AcceleratorSample:
        if status == "suspended":
            self._power[card.bus_id].update(None, now)  # its energy was not read: no rate across the sleep
            return _sample(card, status, None, None, None)
        files = read_files(card)
        joules = files.energy_uj / 1e6 if files.energy_uj is not None else None
        readings = IntelReadings(
            frequency=files.frequency,
            energy=joules,
            temperatures=files.temperatures,
            engines=tuple(EngineUse(engine, share) for engine, share in use.engines),
        )
        return _sample(card, status, readings, use.memory, self._power[card.bus_id].update(joules, now))


def _sample(card: IntelCard, status: str | None, readings: IntelReadings | None, used: int | None,
            power: float | None) -> AcceleratorSample:
    shares = [e.utilization for e in readings.engines if e.utilization is not None] if readings else []
    temps = readings.temperatures if readings else None
    return AcceleratorSample(
        id=card.index,
        type="gpu",
        name=card.name,
        utilization=max(shares) if shares else None,
        memory=AcceleratorMemory(used=used, total=card.vram_total, percentage=percent(used, card.vram_total)),
        temperature=_package_temperature(temps),
        power=power,
        fan_speed=None,  # xe reports fans in RPM (fan*_input), not the duty % this field means
        vendor="intel",
        uuid=None,
        details=IntelDetails(card=card.card, driver=card.driver, bus_id=card.bus_id, runtime_status=status,
                             readings=readings),
    )


def _package_temperature(temps: tuple[TemperatureSensor, ...] | None) -> float | None:
    """The `pkg` sensor where the card labels one, else its first sensor."""
    preferred = [t for t in temps or () if t.label == "pkg"] or list(temps or ())
    return preferred[0].celsius if preferred else None
