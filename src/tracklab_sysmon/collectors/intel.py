"""Intel GPUs under i915 and xe: sysfs, the card's hwmon and its DRM clients; sleeping cards are not woken."""

from __future__ import annotations

import operator
import os

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
from ..records import positional
from .drm_clients import FD_WALK_SECONDS
from .intel_cards import CardPlaces, CardReader, IntelCard, discover, frequency, temperatures
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
        self._kept: list[_Card] = []  # per card
        self._statuses: list[str | None] | None = None
        self._awake: list[bool] = []
        self._samples: tuple[AcceleratorSample, ...] = ()

    @property
    def blocking(self) -> bool:
        """Off the loop once cards exist (hwmon reads ask the card's firmware); inline while none do."""
        return bool(self._cards)

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        if not self._cards and (self._scanned_at is None or now - self._scanned_at >= RESCAN_SECONDS):
            self._cards, self._scanned_at = discover(self.sys_root, self.pci_ids), now
            self._by_pdev = {card.bus_id: card for card in self._cards}
            self._reader = CardReader(self._cards)
            # A card found again may have other sensors behind the same address: nothing of the last ones is kept.
            self._kept = [_Card(card, places) for card, places in zip(self._cards, self._reader.places, strict=True)]
            self._samples = ()
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
        values = self._reader.values(self._awake)
        uses = self._meter.read(now, self._by_pdev)  # in the cards' order, as _by_pdev is
        # Every card's rate first, in order: a sample that fails to build (a reading too large for a float) leaves
        # no card's rate behind.
        for kept, awake in zip(self._kept, self._awake, strict=True):  # inline, not a call per card
            uj = values[kept.energy] if awake and kept.energy is not None else None  # asleep: not read, no rate
            kept.joules = joules = uj / 1e6 if uj is not None else None
            kept.power = kept.rate.update(joules, now)
        samples = [kept.sample(status, values, use) if awake else kept.asleep(status)
                   for kept, status, awake, use in zip(self._kept, statuses, self._awake, uses, strict=True)]
        last = self._samples
        if len(samples) == len(last) and all(map(operator.is_, samples, last)):
            return last  # nothing on any card moved: last tick's very tuple
        self._samples = tuple(samples)
        return self._samples

    def _gone(self, card: IntelCard) -> None:
        """A card without a runtime PM status whose device folder is gone (unbound, unplugged) fails the tick
        and the cards are looked for again on the next one."""
        if not os.path.isdir(os.path.join(self.sys_root, "class/drm", card.card, "device")):
            self._cards, self._scanned_at = (), None
            raise OSError(f"{card.card} ({card.bus_id}) is gone from {os.path.join(self.sys_root, 'class/drm')}")


class _Card:
    """One card's power rate, and what its last sample was built from with the records built: records are immutable,
    so those whose inputs repeat are reused (a busy card's energy and clock move every tick; its temperatures,
    memory and engine shares less often)."""

    __slots__ = ("act", "built_power", "busiest", "card", "energy", "engine_uses", "engines", "files", "joules", "last",
                 "memory", "package", "power", "rate", "sleeping", "start", "status", "stop", "temp_values",
                 "temperatures", "temps", "top", "use")

    def __init__(self, card: IntelCard, places: CardPlaces) -> None:
        self.card = card
        self.start, self.stop, self.act, self.top, self.energy = places[:5]
        self.temps = places.temps - places.start  # in the card's own values
        self.rate = EnergyRate()
        self.joules: float | None = None  # this tick's energy, J
        self.power: float | None = None  # W, this tick's rate of the energy
        # The last sample and what it was built from (status, the card's values, use, power):
        self.last: AcceleratorSample | None = None
        self.status: str | None = None
        self.files: list[int | None] = []
        self.use: CardUse | None = None
        self.built_power: float | None = None
        # The records in it, each with what it comes from:
        self.temp_values: list[int | None] | None = None
        self.temperatures: tuple[TemperatureSensor, ...] | None = None
        self.package: float | None = None  # °C
        self.memory: AcceleratorMemory | None = None
        self.engines: tuple[tuple[EngineClass, float | None], ...] | None = None
        self.engine_uses: tuple[EngineUse, ...] = ()
        self.busiest: float | None = None  # % of the busiest engine class
        self.sleeping: tuple[str | None, AcceleratorSample] | None = None  # the sample while suspended

    def asleep(self, status: str | None) -> AcceleratorSample:
        """Suspended: its files were not read (that would wake it)."""
        if self.sleeping is None or self.sleeping[0] != status:
            self.sleeping = (status, _sample(self.card, status, None, _memory(self.card, None), None, None, None))
        return self.sleeping[1]

    def sample(self, status: str | None, values: list[int | None], use: CardUse) -> AcceleratorSample:
        """The card's sample from this tick's status, `CardReader.values`, use and power."""
        files, power, last = values[self.start:self.stop], self.power, self.last
        if last is not None and files == self.files and use == self.use and power == self.built_power \
                and status == self.status:
            return last  # a pure function of these: nothing on the card moved
        card = self.card
        act = values[self.act] if self.act is not None else None
        top = values[self.top] if self.top is not None else None
        freq = _FREQUENCIES.get((act, top)) or _frequency(act, top)
        # Each record in it is kept with what it comes from (reused while that repeats):
        temp_values = files[self.temps:]
        if temp_values != self.temp_values:
            temps = temperatures(card, temp_values)
            self.temp_values, self.temperatures, self.package = temp_values, temps, _package_temperature(temps)
        memory = self.memory
        if memory is None or memory.used != use.memory:
            memory = self.memory = _memory(card, use.memory)
        if use.engines != self.engines:
            shares = [share for _, share in use.engines if share is not None]
            self.engine_uses = tuple([_engine_use(cls, share) for cls, share in use.engines])
            self.busiest, self.engines = max(shares) if shares else None, use.engines
        sample = _sample(card, status, _readings(freq, self.joules, self.temperatures, self.engine_uses), memory,
                         self.package, self.busiest, power)
        # Kept only once the sample is built: one that failed leaves the card's last as it was.
        self.last, self.status, self.files, self.use, self.built_power = sample, status, files, use, power
        return sample


_FREQUENCIES: dict[tuple[int | None, int | None], GtFrequency] = {}  # the clock moves in steps: few pairs recur
_MAX_FREQUENCIES = 4096


def _frequency(act: int | None, top: int | None) -> GtFrequency:
    """`frequency(act, top)`, one record per pair while they are few (a clock that never repeats: the oldest
    thousands are forgotten at once)."""
    freq = frequency(act, top)
    if len(_FREQUENCIES) >= _MAX_FREQUENCIES:
        _FREQUENCIES.clear()
    _FREQUENCIES[(act, top)] = freq
    return freq


_ENGINE_USES: dict[tuple[EngineClass, float | None], EngineUse] = {}  # at most 5 classes x 1,002 shares


def _engine_use(engine: EngineClass, share: float | None) -> EngineUse:
    """One `EngineUse` per (class, share): shares are rounded to 0.1 %, so the records are few and reused."""
    use = _ENGINE_USES.get((engine, share))
    if use is None:
        use = _ENGINE_USES[(engine, share)] = EngineUse(engine, share)
    return use


def _memory(card: IntelCard, used: int | None) -> AcceleratorMemory:
    return AcceleratorMemory(used=used, total=card.vram_total, percentage=percent(used, card.vram_total))


# A busy card's three records are new every tick (its energy moves): built by position, their slots set straight
# (records.positional), in the records' field order (model.py).
_readings = positional(IntelReadings)  # frequency, energy, temperatures, engines
_details = positional(IntelDetails)
_accelerator = positional(AcceleratorSample)


def _sample(card: IntelCard, status: str | None, readings: IntelReadings | None, memory: AcceleratorMemory,
            temperature: float | None, utilization: float | None, power: float | None) -> AcceleratorSample:
    details = _details(card.card, card.driver, card.bus_id, status, readings)  # runtime_status: status
    return _accelerator(
        card.index,  # id
        "gpu",
        card.name,
        utilization,  # the busiest engine class
        memory,
        temperature,
        power,
        None,  # fan_speed: xe reports fans in RPM (fan*_input), not the duty % this field means
        "intel",  # vendor
        None,  # uuid
        details,
    )


def _package_temperature(temps: tuple[TemperatureSensor, ...] | None) -> float | None:
    """The `pkg` sensor where the card labels one, else its first sensor."""
    preferred = [t for t in temps or () if t.label == "pkg"] or list(temps or ())
    return preferred[0].celsius if preferred else None
