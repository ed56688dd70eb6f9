"""Intel GPUs (i915, xe) under `sys_root`: the cards and their files found once, and the files read each tick.

Paths follow the kernel's documents: hwmon per Documentation/ABI/testing/sysfs-driver-intel-{i915,xe}-hwmon;
i915 frequencies `cardN/gt_act_freq_mhz` and `gt_max_freq_mhz` (else `cardN/gt/gt0/rps_*_freq_mhz`,
drivers/gpu/drm/i915/gt/intel_gt_sysfs_pm.c); xe frequencies `device/tile0/gt0/freq0/{act,max}_freq`
(DOC: Xe GT Frequency Management, drivers/gpu/drm/xe/xe_gt_freq.c); engines `cardN/engine/<rcs0...>` (i915)
and `device/tile*/gt*/engines/<rcs...>` (xe); `device/tile*/physical_vram_size_bytes` (xe in v6.8).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .._sysfs import list_dir, read_text
from ..model import EngineClass, GtFrequency, TemperatureSensor
from .pci_ids import device_name, marketing_name
from .sysfs_ints import new_int_files, new_text_files

INTEL_DRIVERS = ("i915", "xe")
ENGINE_ORDER: tuple[EngineClass, ...] = ("render", "copy", "video", "video-enhance", "compute")
# Frequency, energy and temperature files are checked for a replaced file every RECHECK reads, not every read
# (sysfs never renames over an attribute; a card unbound is caught by its runtime_status, checked every read).
RECHECK = 16
_CARD = re.compile(r"card(\d+)$")  # card0-DP-1 and friends are connectors, not devices
# i915 names engine classes in fdinfo (render, video-enhance) and its engine folders by instance (rcs0, vecs1);
# xe names classes rcs, bcs, vcs, vecs, ccs in both.
_ENGINE_NAMES: dict[str, EngineClass] = {
    "render": "render", "copy": "copy", "video": "video", "video-enhance": "video-enhance", "compute": "compute",
    "rcs": "render", "bcs": "copy", "vcs": "video", "vecs": "video-enhance", "ccs": "compute",
}


def engine_class(name: str) -> EngineClass | None:
    """The class of an engine as i915 or xe name it (`render`, `rcs`, `rcs0`); None for others (xe's gsccs)."""
    return _ENGINE_NAMES.get(name) or _ENGINE_NAMES.get(name.rstrip("0123456789"))


@dataclass(frozen=True, slots=True)
class IntelSlot:
    """A DRM card bound to i915 or xe, with the PCI address fdinfo's `drm-pdev` names it by."""

    card: str
    bus_id: str  # lower case
    driver: str
    pci_id: str | None  # VVVV:DDDD


def intel_slots(sys_root: str) -> list[IntelSlot]:
    """Every i915/xe card under `sys_root/class/drm`, in PCI address order: the order their ids follow."""
    drm = os.path.join(sys_root, "class/drm")
    found: list[IntelSlot] = []
    for entry in list_dir(drm):
        if _CARD.match(entry):
            uevent = _uevent(read_text(os.path.join(drm, entry, "device/uevent")) or "")
            driver, slot = uevent.get("DRIVER"), uevent.get("PCI_SLOT_NAME")
            if driver in INTEL_DRIVERS and slot:
                found.append(IntelSlot(entry, slot.lower(), driver, uevent.get("PCI_ID")))
    return sorted(found, key=lambda s: s.bus_id)


@dataclass(frozen=True, slots=True)
class IntelCard:
    """One Intel GPU: where its files are and what it has, found once; its status and files are read each tick."""

    index: int
    card: str
    driver: str
    bus_id: str
    name: str
    engines: tuple[EngineClass, ...]  # classes its sysfs lists (fdinfo may name more)
    vram_total: int | None  # bytes
    discrete: bool  # memory of its own (a hwmon or a VRAM size says so; integrated GPUs have neither)
    status: str  # device/power/runtime_status; it and the files below are read by `CardReader`
    act_freq: str | None
    max_freq: str | None
    energy: str | None  # hwmon energy1_input (card), else energy2_input (package); µJ
    temps: tuple[tuple[str, str], ...]  # (label, temp*_input in m°C)


def discover(sys_root: str, pci_ids: str | None = None) -> tuple[IntelCard, ...]:
    """The Intel cards under `sys_root`, indexed from 0 in PCI address order; names from `pci_ids` when given."""
    database = (read_text(pci_ids) or "") if pci_ids else ""
    return tuple(_card(sys_root, index, slot, database) for index, slot in enumerate(intel_slots(sys_root)))


def _card(sys_root: str, index: int, slot: IntelSlot, database: str) -> IntelCard:
    card_dir = os.path.join(sys_root, "class/drm", slot.card)
    device = os.path.join(card_dir, "device")
    hwmon = _hwmon(device, slot.driver)
    vram = _vram_total(device) if slot.driver == "xe" else None
    act, top = _frequency_files(card_dir, device, slot.driver)
    return IntelCard(
        index=index,
        card=slot.card,
        driver=slot.driver,
        bus_id=slot.bus_id,
        name=_name(slot.pci_id, database),
        engines=_engines(card_dir, device, slot.driver),
        vram_total=vram,
        discrete=hwmon is not None or vram is not None,
        status=os.path.join(device, "power/runtime_status"),
        act_freq=act,
        max_freq=top,
        energy=_file(hwmon, "energy1_input") or _file(hwmon, "energy2_input"),
        temps=_temperature_files(hwmon),
    )


class CardPlaces(NamedTuple):
    """Where one card's files sit in `CardReader.values`: all of them in [start, stop), the temperatures last, from
    `temps` to `stop` (one per `IntelCard.temps` entry); the index of each other file, None where the card has none."""

    start: int
    stop: int
    act_freq: int | None  # MHz
    max_freq: int | None  # MHz
    energy: int | None  # µJ
    temps: int  # m°C


class CardReader:
    """The per-tick files of every card, read together through kept descriptors (in one C call each where built):
    first every runtime status (checked for a replaced file on every read), then the files of the cards awake."""

    def __init__(self, cards: Sequence[IntelCard]) -> None:
        self._status = new_text_files([card.status for card in cards], 1)
        self._texts: list[str | None] | None = None
        self._statuses: list[str | None] = []
        paths: list[str] = []
        self.places: list[CardPlaces] = []  # per card, in the cards' order
        for card in cards:
            start = len(paths)
            act, top, energy = _place(paths, card.act_freq), _place(paths, card.max_freq), _place(paths, card.energy)
            temps = len(paths)
            paths.extend(path for _, path in card.temps)
            self.places.append(CardPlaces(start, len(paths), act, top, energy, temps))
        self._owner = [index for index, places in enumerate(self.places) for _ in range(places.start, places.stop)]
        self._files = new_int_files(paths, RECHECK)
        self._awake: list[bool] | None = None
        self._want: list[bool] = []  # per file: whether its card is awake

    def statuses(self) -> list[str | None]:
        """power/runtime_status of each card (active, suspended, ...); None where runtime PM is not there."""
        texts = self._status.read()
        if texts is not self._texts:  # the C reader hands back the same list while no text changed
            self._texts = texts
            self._statuses = [text.strip() or None if text is not None else None for text in texts]
        return self._statuses

    def values(self, awake: Sequence[bool]) -> list[int | None]:
        """Every card's files where `awake` says so (hwmon reads wake a suspended card), else None, at `places`."""
        if awake != self._awake:  # which cards sleep changes seldom: the files' flags follow only then
            self._awake = wanted = list(awake)
            self._want = [wanted[owner] for owner in self._owner]
        return self._files.read(self._want)


def _place(paths: list[str], path: str | None) -> int | None:
    if path is None:
        return None
    paths.append(path)
    return len(paths) - 1


def frequency(act_freq: int | None, max_freq: int | None) -> GtFrequency:
    return GtFrequency(actual=_float(act_freq), max=_float(max_freq))


def temperatures(card: IntelCard, values: Sequence[int | None]) -> tuple[TemperatureSensor, ...] | None:
    """The sensors that could be read (`values` in m°C, one per `card.temps` entry), in °C; None for a card without
    any (or none readable)."""
    temps = tuple(TemperatureSensor(label, value / 1000)
                  for (label, _), value in zip(card.temps, values, strict=True) if value is not None)
    return temps or None


# ---------------------------------------------------------------- found once


def _uevent(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _name(pci_id: str | None, database: str) -> str:
    vendor, _, device = (pci_id or "").partition(":")
    entry = device_name(database, vendor, device) if database and device else None
    return marketing_name("Intel", entry) if entry else f"Intel GPU {pci_id or 'unknown'}"


def _hwmon(device: str, driver: str) -> str | None:
    """The device-level hwmon (named i915 or xe); i915's per-GT ones (i915_gt0, ...) are left aside."""
    base = os.path.join(device, "hwmon")
    for entry in list_dir(base):
        folder = os.path.join(base, entry)
        if (read_text(os.path.join(folder, "name")) or "").strip() == driver:
            return folder
    return None


def _file(folder: str | None, name: str) -> str | None:
    if folder is None or not os.path.isfile(os.path.join(folder, name)):
        return None
    return os.path.join(folder, name)


def _frequency_files(card_dir: str, device: str, driver: str) -> tuple[str | None, str | None]:
    if driver == "xe":
        freq = os.path.join(device, "tile0/gt0/freq0")
        return _file(freq, "act_freq"), _file(freq, "max_freq")
    if os.path.isfile(os.path.join(card_dir, "gt_act_freq_mhz")):
        return _file(card_dir, "gt_act_freq_mhz"), _file(card_dir, "gt_max_freq_mhz")
    gt0 = os.path.join(card_dir, "gt/gt0")
    return _file(gt0, "rps_act_freq_mhz"), _file(gt0, "rps_max_freq_mhz")


def _engines(card_dir: str, device: str, driver: str) -> tuple[EngineClass, ...]:
    if driver == "i915":
        names = list_dir(os.path.join(card_dir, "engine"))
    else:
        names = [name for tile in list_dir(device) if tile.startswith("tile")
                 for gt in list_dir(os.path.join(device, tile)) if gt.startswith("gt")
                 for name in list_dir(os.path.join(device, tile, gt, "engines"))]
    found = {engine_class(name) for name in names}
    return tuple(e for e in ENGINE_ORDER if e in found)


def _vram_total(device: str) -> int | None:
    sizes = [_text_int(read_text(os.path.join(device, tile, "physical_vram_size_bytes")))
             for tile in list_dir(device) if tile.startswith("tile")]
    known = [size for size in sizes if size is not None]
    return sum(known) if known else None


def _temperature_files(hwmon: str | None) -> tuple[tuple[str, str], ...]:
    if hwmon is None:
        return ()
    found = []
    for n in range(1, 8):
        path = _file(hwmon, f"temp{n}_input")
        if path is not None:
            label = (read_text(os.path.join(hwmon, f"temp{n}_label")) or "").strip()
            found.append((label or f"temp{n}", path))
    return tuple(found)


# ---------------------------------------------------------------- read each tick


def _text_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float(value: int | None) -> float | None:
    return float(value) if value is not None else None
