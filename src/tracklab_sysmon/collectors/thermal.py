"""CPU temperatures from hwmon (coretemp, k10temp, zenpower) and thermal zones under `sys_root`."""

from __future__ import annotations

import os

from .. import _procfs as procfs
from .. import _sysfs as sysfs
from .cpuinfo import read_cpuinfo

# Sensor names are compared by `_kind`: case-blind, `-` read as `_` (the kernel names a thermal
# zone's hwmon after the zone's type with `-` turned into `_`, and device trees spell both).
_PACKAGE_SENSORS = ("k10temp", "zenpower", "cpu_thermal", "soc_thermal", "bcm2835_thermal", "cpu_therm")
_PACKAGE_LABELS = ("Tdie", "Tctl", "Package id 0")  # Tdie first: Tctl may carry a fan-control offset
# Thermal-zone types that measure the CPU package or the SoC die, best first: Intel's package
# sensor; the `cpu-thermal` zone of Raspberry Pi 4/5, Allwinner, Amlogic and Jetson Orin; older
# Jetsons' `CPU-therm`; Rockchip's `soc-thermal`; Raspberry Pi 1-3 on 4.x kernels. `acpitz` is
# left out on purpose: it is a board point the firmware picked (a constant on many VMs), so a
# machine with only that zone reports null rather than a made-up package temperature.
_PACKAGE_ZONES = ("x86_pkg_temp", "cpu_thermal", "cpu_therm", "soc_thermal", "bcm2835_thermal")


class CpuThermal:
    """Finds the sensor files once; each read opens only the files that exist."""

    def __init__(self, sys_root: str = "/sys", *, proc_root: str | None = None) -> None:
        """`proc_root`, when given, lends /proc/cpuinfo's topology to CPUs that sysfs gives none."""
        self._core_paths: dict[int, str] = {}
        self._package_path: str | None = None
        self._discover(sys_root, proc_root)
        # Kept open and re-read with pread: no open/close per core per tick.
        kept = {path: sysfs.KeptFile(path) for path in {*self._core_paths.values(), self._package_path} if path}
        self._core_files = {cpu_id: kept[path] for cpu_id, path in self._core_paths.items()}
        self._package_file = kept.get(self._package_path) if self._package_path else None

    def core_temperatures(self) -> dict[int, float]:
        temps = {}
        for cpu_id, kept in self._core_files.items():
            value = _read_celsius(kept)
            if value is not None:
                temps[cpu_id] = value
        return temps

    def package_temperature(self) -> float | None:
        return _read_celsius(self._package_file) if self._package_file else None

    def _discover(self, sys_root: str, proc_root: str | None) -> None:
        hwmon_root = os.path.join(sys_root, "class/hwmon")
        core_by_key: dict[tuple[int, int], str] = {}
        coretemp_package = 0
        for hwmon in sysfs.list_dir(hwmon_root):
            base = os.path.join(hwmon_root, hwmon)
            name = (sysfs.read_text(os.path.join(base, "name")) or "").strip()
            labels = _labelled_inputs(base)
            if name == "coretemp":
                package = coretemp_package
                coretemp_package += 1
                for label, path in labels.items():
                    if label.startswith(("Package id ", "Physical id ")):  # the latter before 3.x
                        package = int(label.split()[-1]) if label.split()[-1].isdigit() else package
                        # hwmon numbering follows probe order, so pick package 0 by its label.
                        if self._package_path is None or package == 0:
                            self._package_path = path
                for label, path in labels.items():
                    if label.startswith("Core ") and label.split()[-1].isdigit():
                        core_by_key[(package, int(label.split()[-1]))] = path
            elif _kind(name) in _PACKAGE_SENSORS and self._package_path is None:
                chosen = next((labels[label] for label in _PACKAGE_LABELS if label in labels), None)
                self._package_path = chosen or next(iter(labels.values()), None)
        if core_by_key:
            self._core_paths = _map_cores_to_cpus(_topology(sys_root, proc_root), core_by_key)
        if self._package_path is None:
            self._package_path = _thermal_zone(sys_root)


def _labelled_inputs(hwmon_dir: str) -> dict[str, str]:
    """label -> tempN_input path; an input without a label is named by its file."""
    found = {}
    for entry in sysfs.list_dir(hwmon_dir):
        if entry.startswith("temp") and entry.endswith("_input"):
            stem = entry[: -len("_input")]
            label = (sysfs.read_text(os.path.join(hwmon_dir, stem + "_label")) or stem).strip()
            found[label] = os.path.join(hwmon_dir, entry)
    return found


def _map_cores_to_cpus(topology: dict[int, tuple[int, int]], core_by_key: dict[tuple[int, int], str]) -> dict[int, str]:
    return {cpu: core_by_key[key] for cpu, key in topology.items() if key in core_by_key}


def _topology(sys_root: str, proc_root: str | None) -> dict[int, tuple[int, int]]:
    """CPU -> (package, core) from sysfs; CPUs it has no topology for take /proc/cpuinfo's
    `physical id` / `core id` (sandboxes and captures without `devices/system/cpu/*/topology`)."""
    cpu_dir = os.path.join(sys_root, "devices/system/cpu")
    found: dict[int, tuple[int, int]] = {}
    for entry in sysfs.list_dir(cpu_dir):
        if not (entry.startswith("cpu") and entry[3:].isdigit()):
            continue
        topo = os.path.join(cpu_dir, entry, "topology")
        package = _read_int(os.path.join(topo, "physical_package_id"))
        core = _read_int(os.path.join(topo, "core_id"))
        if package is not None and core is not None:
            found[int(entry[3:])] = (package, core)
    for cpu, block in (read_cpuinfo(proc_root) if proc_root is not None else {}).items():
        if cpu not in found and block.package is not None and block.core is not None:
            found[cpu] = (block.package, block.core)
    return found


def _thermal_zone(sys_root: str) -> str | None:
    """The `temp` of the best-ranked package zone (see `_PACKAGE_ZONES`), whatever the zone numbering."""
    zones = os.path.join(sys_root, "class/thermal")
    ranked = []
    for zone in sysfs.list_dir(zones):
        kind = _kind(sysfs.read_text(os.path.join(zones, zone, "type")) or "")
        if kind in _PACKAGE_ZONES:
            ranked.append((_PACKAGE_ZONES.index(kind), os.path.join(zones, zone, "temp")))
    return min(ranked)[1] if ranked else None


def _kind(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def _read_int(path: str) -> int | None:
    text = sysfs.read_text(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def _read_celsius(kept: sysfs.KeptFile) -> float | None:
    text = kept.read()
    return procfs.parse_millidegrees(text) if text is not None else None
