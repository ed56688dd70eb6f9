"""Intel GPUs under i915 and xe: sysfs, the card's hwmon and its DRM clients; sleeping cards are not woken."""

from __future__ import annotations

import os
from typing import NamedTuple

from ..energy import EnergyRate
from ..errors import Unavailable
from ..model import (
    AcceleratorMemory,
    AcceleratorSample,
    EngineClass,
    EngineUse,
    GtFrequency,
    IntelDetails,
    IntelReadings,
    TemperatureSensor,
)
from ..rates import percent
from .drm_clients import FD_WALK_SECONDS
from .intel_cards import CardFiles, CardReader, IntelCard, discover, frequency, temperatures
from .intel_engines import WALK_SHARE, CardUse
from .intel_meter import new_engine_meter

RESCAN_SECONDS = 60.0  # with no card found, look again this often (driver loaded late)


class IntelCollector:
    """One `AcceleratorSample` per i915/xe card, `id` in PCI address order (as the process list numbers them).

    Per tick: runtime status, GT frequency, hwmon energy and temperatures (kept files), and the engine
    time of the DRM clients found by the last fd walk: on the tick after a DRM node under `dev_root` was opened,
    and every `fd_walk_seconds` stretched so timed walks cost at most `SAFETY_SHARE` of one core; where the nodes
    cannot be watched (None: never), every `fd_walk_seconds` stretched by `walk_share` (None: never stretched;
    `drm_clients.ClientWalk`). `power` is the hwmon energy's rate between ticks.
    """

    name = "intel"

    def __init__(self, sys_root: str = "/sys", proc_root: str = "/proc", *, pci_ids: str | None = None,
                 fd_walk_seconds: float = FD_WALK_SECONDS, walk_share: float | None = WALK_SHARE,
                 dev_root: str | None = "/dev") -> None:
        self.sys_root, self.pci_ids = sys_root, pci_ids
        self._meter = new_engine_meter(proc_root, fd_walk_seconds, walk_share, dev_root=dev_root)
        self._cards: tuple[IntelCard, ...] = ()
        self._reader = CardReader(())
        self._by_pdev: dict[str, IntelCard] = {}
        self._scanned_at: float | None = None
        self._power: list[EnergyRate] = []  # per card
        self._last: dict[str, _Last] = {}
        self._statuses: list[str | None] | None = None
        self._awake: list[bool] = []
        self._tick: tuple[list[str | None], list[CardFiles | None], list[CardUse], list[float | None]] | None = None
        self._samples: tuple[AcceleratorSample, ...] = ()  # built from `_tick`

    @property
    def blocking(self) -> bool:
        """Off the loop once cards exist (hwmon reads ask the card's firmware); inline while none do."""
        return bool(self._cards)

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        if not self._cards and (self._scanned_at is None or now - self._scanned_at >= RESCAN_SECONDS):
            self._cards, self._scanned_at = discover(self.sys_root, self.pci_ids), now
            self._by_pdev = {card.bus_id: card for card in self._cards}
            self._reader = CardReader(self._cards)
            self._power = [EnergyRate() for _ in self._cards]
            self._last, self._tick = {}, None  # a card found again may have other sensors behind the same address
            self._meter.walk.watch()  # its DRM nodes may be new too
        if not self._cards:
            raise Unavailable(f"no i915 or xe device under {os.path.join(self.sys_root, 'class/drm')}")
        statuses = self._reader.statuses()
        if None in statuses:
            for card, status in zip(self._cards, statuses, strict=True):
                if status is None:
                    self._gone(card)
        if statuses != self._statuses:
            self._statuses, self._awake = statuses, [status != "suspended" for status in statuses]
        files = self._reader.read(self._awake)
        uses = self._meter.read(now, self._by_pdev)  # in the cards' order, as _by_pdev is
        # A suspended card's energy was not read: no rate across the sleep.
        powers = [rate.update(each.energy_uj / 1e6 if each is not None and each.energy_uj is not None else None, now)
                  for rate, each in zip(self._power, files, strict=True)]
        tick = (statuses, files, uses, powers)
        if tick == self._tick:
            return self._samples  # each card's sample is a pure function of these: nothing on any card moved
        self._tick, self._samples = tick, tuple(
            self._sample(*each) for each in zip(self._cards, statuses, files, uses, powers, strict=True))
        return self._samples

    def _gone(self, card: IntelCard) -> None:
        """A card without a runtime PM status whose device folder is gone (unbound, unplugged) fails the tick
        and the cards are looked for again on the next one."""
        if not os.path.isdir(os.path.join(self.sys_root, "class/drm", card.card, "device")):
            self._cards, self._scanned_at = (), None
            raise OSError(f"{card.card} ({card.bus_id}) is gone from {os.path.join(self.sys_root, 'class/drm')}")

    def _sample(self, card: IntelCard, status: str | None, files: CardFiles | None, use: CardUse,
                power: float | None) -> AcceleratorSample:
        if files is None:  # suspended: its files were not read (that would wake it)
            return _sample(card, status, None, _memory(card, None), None, None, None)
        joules = files.energy_uj / 1e6 if files.energy_uj is not None else None
        # Records are immutable: last tick's are reused while what they were built from is the same.
        last = self._last.get(card.bus_id)
        if last is not None and last.files == files and last.use == use and last.power == power \
                and last.status == status:
            return last.sample  # a pure function of these: nothing on the card moved
        freq = last.frequency if last is not None and last.files[:2] == files[:2] else frequency(files)
        if last is not None and last.files.temps == files.temps:
            temps, package = last.temperatures, last.package
        else:
            temps = temperatures(card, files)
            package = _package_temperature(temps)
        memory = last.memory if last is not None and last.memory.used == use.memory else _memory(card, use.memory)
        if last is not None and last.use.engines == use.engines:  # the energy moved, the engines did not
            engines, busiest = last.engines, last.busiest
        else:
            engines = tuple([_engine_use(cls, share) for cls, share in use.engines])
            shares = [share for _, share in use.engines if share is not None]
            busiest = max(shares) if shares else None
        readings = IntelReadings(freq, joules, temps, engines)
        sample = _sample(card, status, readings, memory, package, busiest, power)
        self._last[card.bus_id] = _Last(status, files, use, power, freq, temps, package, memory, engines, busiest,
                                        sample)
        return sample


class _Last(NamedTuple):
    """What a card's previous sample was built from (status, files, use, power) and the records built."""

    status: str | None
    files: CardFiles
    use: CardUse
    power: float | None  # W
    frequency: GtFrequency
    temperatures: tuple[TemperatureSensor, ...] | None
    package: float | None  # °C
    memory: AcceleratorMemory
    engines: tuple[EngineUse, ...]
    busiest: float | None  # % of the busiest engine class
    sample: AcceleratorSample


_ENGINE_USES: dict[tuple[EngineClass, float | None], EngineUse] = {}  # at most 5 classes x 1,002 shares


def _engine_use(engine: EngineClass, share: float | None) -> EngineUse:
    """One `EngineUse` per (class, share): shares are rounded to 0.1 %, so the records are few and reused."""
    use = _ENGINE_USES.get((engine, share))
    if use is None:
        use = _ENGINE_USES[(engine, share)] = EngineUse(engine, share)
    return use


def _memory(card: IntelCard, used: int | None) -> AcceleratorMemory:
    return AcceleratorMemory(used=used, total=card.vram_total, percentage=percent(used, card.vram_total))


def _sample(card: IntelCard, status: str | None, readings: IntelReadings | None, memory: AcceleratorMemory,
            temperature: float | None, utilization: float | None, power: float | None) -> AcceleratorSample:
    return AcceleratorSample(
        id=card.index,
        type="gpu",
        name=card.name,
        utilization=utilization,  # the busiest engine class
        memory=memory,
        temperature=temperature,
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
