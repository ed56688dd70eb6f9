"""AMD GPUs from the amdgpu driver's sysfs files under `sys_root`; runtime-suspended cards are not woken."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .._sysfs import list_dir, read_text
from ..errors import Unavailable
from ..model import (
    AcceleratorMemory,
    AcceleratorSample,
    AmdgpuDetails,
    AmdgpuReadings,
    Clocks,
    MemoryUse,
    TemperatureSensor,
)
from ..rates import percent

RESCAN_SECONDS = 60.0  # with no card found, look again this often (driver loaded late)
_CARD = re.compile(r"card(\d+)$")  # card0-DP-1 and friends are connectors, not devices


@dataclass(frozen=True, slots=True)
class AmdCard:
    """One amdgpu device: where its files are, found once at discovery."""

    index: int
    card: str
    device: str
    hwmon: str | None
    bus_id: str | None
    name: str
    uuid: str | None
    has_energy: bool = False  # hwmon energy1_input exists (looked for once: most amdgpu cards have none)


def discover(sys_root: str) -> tuple[AmdCard, ...]:
    """Every `class/drm/cardN` whose driver is amdgpu, in card-number order, indexed from 0."""
    drm = os.path.join(sys_root, "class/drm")
    cards = sorted((int(m.group(1)), e) for e in list_dir(drm) if (m := _CARD.match(e)))
    found: list[AmdCard] = []
    for _, card in cards:
        device = os.path.join(drm, card, "device")
        uevent = _uevent(read_text(os.path.join(device, "uevent")) or "")
        if uevent.get("DRIVER") != "amdgpu":
            continue
        hwmon = _hwmon(device)
        found.append(
            AmdCard(
                index=len(found),
                card=card,
                device=device,
                hwmon=hwmon,
                bus_id=uevent.get("PCI_SLOT_NAME"),
                name=_line(device, "product_name") or f"AMD GPU {uevent.get('PCI_ID', 'unknown')}",
                uuid=_line(device, "unique_id"),
                has_energy=hwmon is not None and os.path.isfile(os.path.join(hwmon, "energy1_input")),
            )
        )
    return tuple(found)


def read_card(card: AmdCard) -> AcceleratorSample:
    """One sample from the card's files; a missing file is null, a suspended card is left asleep."""
    status = _line(card.device, "power/runtime_status")
    if status == "suspended":
        return _sample(card, status)
    dev, hw = card.device, card.hwmon
    used, total = _int(dev, "mem_info_vram_used"), _int(dev, "mem_info_vram_total")
    gtt_used, gtt_total = _int(dev, "mem_info_gtt_used"), _int(dev, "mem_info_gtt_total")
    power = _scaled(hw, "power1_average", 1e6)
    if power is None:
        power = _scaled(hw, "power1_input", 1e6)  # newer GPUs/kernels report only the instant value
    return _sample(
        card,
        status,
        utilization=_float(_int(dev, "gpu_busy_percent")),
        memory=AcceleratorMemory(used=used, total=total, percentage=percent(used, total)),
        temperature=_scaled(hw, "temp1_input", 1000),
        power=power,
        fan_speed=_fan(hw),
        readings=AmdgpuReadings(
            memory_utilization=_float(_int(dev, "mem_busy_percent")),
            gtt=MemoryUse(used=gtt_used, total=gtt_total),
            temperatures=_temperatures(hw),
            power_limit=_scaled(hw, "power1_cap", 1e6),
            clocks=Clocks(sm=_dpm(dev, "pp_dpm_sclk"), memory=_dpm(dev, "pp_dpm_mclk")),
            energy=_scaled(hw, "energy1_input", 1e6) if card.has_energy else None,  # µJ
        ),
    )


class AmdCollector:
    name = "amd"

    def __init__(self, sys_root: str = "/sys") -> None:
        self.sys_root = sys_root
        self._cards: tuple[AmdCard, ...] | None = None
        self._scanned_at: float | None = None

    @property
    def blocking(self) -> bool:
        """Off the loop once cards exist (gpu_busy_percent asks the firmware); inline while none do."""
        return bool(self._cards)

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        if not self._cards and (self._scanned_at is None or now - self._scanned_at >= RESCAN_SECONDS):
            self._cards, self._scanned_at = discover(self.sys_root), now
        if not self._cards:
            raise Unavailable(f"no amdgpu device under {os.path.join(self.sys_root, 'class/drm')}")
        return tuple(read_card(card) for card in self._cards)


# ---------------------------------------------------------------- small readers


def _sample(card: AmdCard, status: str | None, *, utilization: float | None = None,
            memory: AcceleratorMemory | None = None, temperature: float | None = None, power: float | None = None,
            fan_speed: float | None = None, readings: AmdgpuReadings | None = None) -> AcceleratorSample:
    return AcceleratorSample(
        id=card.index,
        type="gpu",
        name=card.name,
        utilization=utilization,
        memory=memory or AcceleratorMemory(None, None, None),
        temperature=temperature,
        power=power,
        fan_speed=fan_speed,
        vendor="amd",
        uuid=card.uuid,
        details=AmdgpuDetails(card=card.card, bus_id=card.bus_id, runtime_status=status, readings=readings),
    )


def _uevent(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _hwmon(device: str) -> str | None:
    base = os.path.join(device, "hwmon")
    entries = [e for e in list_dir(base) if e.startswith("hwmon")]
    return os.path.join(base, entries[0]) if entries else None


def _line(folder: str | None, name: str) -> str | None:
    if folder is None:
        return None
    text = read_text(os.path.join(folder, name))
    return text.strip() or None if text is not None else None


def _int(folder: str | None, name: str) -> int | None:
    text = _line(folder, name)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _float(value: int | None) -> float | None:
    return float(value) if value is not None else None


def _scaled(folder: str | None, name: str, divisor: float) -> float | None:
    value = _int(folder, name)
    return round(value / divisor, 3) if value is not None else None


def _fan(hwmon: str | None) -> float | None:
    """Fan duty in percent from pwm1/pwm1_max (what the driver sets), None without a fan."""
    pwm, top = _int(hwmon, "pwm1"), _int(hwmon, "pwm1_max") or 255
    return round(100.0 * pwm / top, 1) if pwm is not None else None


def _temperatures(hwmon: str | None) -> tuple[TemperatureSensor, ...] | None:
    """Every labelled sensor (edge, junction, mem) in °C; a label listed twice keeps its first place, last value."""
    if hwmon is None:
        return None
    temps: dict[str, float] = {}
    for n in range(1, 8):
        value = _scaled(hwmon, f"temp{n}_input", 1000)
        if value is not None:
            temps[_line(hwmon, f"temp{n}_label") or f"temp{n}"] = value
    return tuple(TemperatureSensor(label, celsius) for label, celsius in temps.items()) or None


def _dpm(device: str, name: str) -> float | None:
    """The current level (marked `*`) of a pp_dpm_* table, in MHz."""
    for line in (read_text(os.path.join(device, name)) or "").splitlines():
        if line.rstrip().endswith("*"):
            match = re.search(r"(\d+)\s*Mhz", line, re.IGNORECASE)
            return float(match.group(1)) if match else None
    return None
