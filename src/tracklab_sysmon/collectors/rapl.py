"""CPU package, core, uncore, DRAM and psys energy from the RAPL powercap zones under `sys_root`, wraps undone.

Zones are `class/powercap/intel-rapl:N` (packages, psys) and `intel-rapl:N:M` (their core, uncore and
dram subzones), as Documentation/power/powercap/powercap.rst lays them out; AMD CPUs use the same driver
and names. `intel-rapl-mmio:*` zones repeat the package zone through another interface and are left out.
`energy_uj` counts µJ up to `max_energy_range_uj` and starts again from 0: a reading below the previous
one is a wrap, undone by adding the range. Since Linux 5.10 `energy_uj` is readable by root only.
"""

from __future__ import annotations

import errno
import math
import os
import re
from dataclasses import dataclass

from .._sysfs import KeptFile, list_dir, read_text
from ..errors import Unavailable, describe
from ..model import EnergySample, RaplZone
from .base import Partial
from .sysfs_ints import MOVING, IntFiles, new_int_files

RESCAN_SECONDS = 60.0  # with no zone found, look again this often (driver loaded late)
_ZONE = re.compile(r"intel-rapl:(\d+)(?::(\d+))?$")
_PACKAGE = re.compile(r"package-(\d+)(?:-die-\d+)?$")
_DOMAINS = ("core", "uncore", "dram", "psys")
_new = tuple.__new__
ROOT_ONLY = ("energy_uj is readable by root only (Linux 5.10 and later, CVE-2020-8694): run the service as root "
             "or give its user read access to class/powercap/intel-rapl:*/energy_uj")


def zone_domain(name: str) -> tuple[str, int | None]:
    """(domain, package) from a zone's `name`: `package-1` is (package, 1), `dram` is (dram, None)."""
    text = name.strip()
    match = _PACKAGE.match(text)
    if match:
        return "package", int(match.group(1))
    return (text if text in _DOMAINS else "other"), None


def unwrap(previous: int, current: int, max_range: int | None) -> int | None:
    """µJ spent between two readings of a counter that starts again from 0 after `max_range`.

    None when the step cannot be known: a reading outside 0..max_range, or a counter that fell without a
    known range. A counter that wrapped more than once between the readings cannot be told apart.
    """
    if previous < 0 or current < 0 or (max_range is not None and (previous > max_range or current > max_range)):
        return None
    if current >= previous:
        return current - previous
    return current + max_range - previous if max_range else None


@dataclass(frozen=True, slots=True)
class ZoneFiles:
    """One zone, found once: its identity, range and the kept energy_uj file."""

    zone: str
    domain: str
    package: int | None
    max_range: int | None  # µJ
    energy: KeptFile


def discover(sys_root: str) -> tuple[ZoneFiles, ...]:
    """Every `intel-rapl:*` zone under `sys_root/class/powercap`, packages before their subzones."""
    base = os.path.join(sys_root, "class/powercap")
    matches = [(m, entry) for entry in list_dir(base) if (m := _ZONE.match(entry))]
    matches.sort(key=lambda pair: (int(pair[0].group(1)), -1 if pair[0].group(2) is None else int(pair[0].group(2))))
    packages: dict[str, int | None] = {}
    zones: list[ZoneFiles] = []
    for match, entry in matches:
        folder = os.path.join(base, entry)
        domain, package = zone_domain(read_text(os.path.join(folder, "name")) or "")
        if match.group(2) is None:
            packages[match.group(1)] = package
        else:  # a subzone belongs to its parent's package
            package = packages.get(match.group(1))
        zones.append(ZoneFiles(entry, domain, package, _int(read_text(os.path.join(folder, "max_energy_range_uj"))),
                               KeptFile(os.path.join(folder, "energy_uj"))))
    return tuple(zones)


class RaplCollector:
    """Cumulative joules per zone since the service started reading (the first reading is the origin)."""

    name = "rapl"
    blocking = False  # a few MSR reads through sysfs: microseconds

    def __init__(self, sys_root: str = "/sys") -> None:
        self.sys_root = sys_root
        self._zones: tuple[ZoneFiles, ...] = ()
        self._scanned_at: float | None = None
        self._kept: dict[str, _Counter] = {}  # zone -> its counter as last read
        self._readings: IntFiles | None = None  # every zone's energy_uj, opened on the first read after discovery
        self._want: list[bool] = []
        self._tops: list[float] = []  # per zone: max_range, or no bound

    def collect(self, now: float) -> EnergySample | Partial[EnergySample]:
        if not self._zones and (self._scanned_at is None or now - self._scanned_at >= RESCAN_SECONDS):
            self._zones, self._scanned_at = discover(self.sys_root), now
        if not self._zones:
            raise Unavailable(f"no RAPL zone under {os.path.join(self.sys_root, 'class/powercap')} "
                              "(no intel_rapl driver, or a virtual machine)")
        if self._readings is None:
            # Read as MovingFile reads (energy_uj moves every busy tick): the path is stat()ed only after a read that
            # failed or repeats, so a zone gone or replaced is seen as KeptFile sees it and never read stale.
            self._readings = new_int_files([files.energy.path for files in self._zones], MOVING)
            self._want = [True] * len(self._zones)
            # The highest reading unwrap() takes as it is: a reading from the last one up to it is a plain step.
            self._tops = [math.inf if files.max_range is None else files.max_range for files in self._zones]
        zones: list[RaplZone] = []
        problems: list[Exception] = []
        denied = 0
        # Every zone in one C call where the helper is built; one that gives no integer is read again on its own,
        # whose error (root only, gone) or text is what the problem then says.
        kept_by_zone = self._kept
        for files, top, raw in zip(self._zones, self._tops, self._readings.read(self._want), strict=True):
            # The usual tick: a counter that rose within its range, unwrap()'s plain step; the zone made by
            # tuple.__new__ (what RaplZone's own constructor does, in a third of the time).
            kept = kept_by_zone.get(files.zone)
            if kept is not None and raw is not None and (last := kept.raw) is not None and 0 <= last <= raw <= top:
                kept.raw = raw
                kept.total += raw - last
                zones.append(_new(RaplZone, (files.zone, files.domain, files.package, kept.total / 1e6, None)))
                continue
            text = None
            if raw is None:
                try:
                    text = files.energy.read_or_raise()
                except OSError as exc:
                    denied += exc.errno in (errno.EACCES, errno.EPERM)
                    problems.append(exc)
                    continue
                raw = _int(text)
            zone = self._advance(files, raw)
            if zone is None:
                shown = (str(raw) if text is None else text).strip()[:40]
                problems.append(ValueError(f"{files.zone}/energy_uj: {shown!r} is not a reading within "
                                           f"0..{files.max_range}"))
            else:
                zones.append(zone)
        return _outcome(EnergySample(cpu=tuple(zones)), problems, denied)

    def _advance(self, files: ZoneFiles, raw: int | None) -> RaplZone | None:
        """The zone's unwrapped total after reading `raw`; None (and the next reading starts afresh) for a bad one."""
        kept = self._kept.get(files.zone)
        if raw is None:
            if kept is not None:
                kept.raw = None
            return None
        if kept is None:  # the first reading is the origin
            kept = self._kept[files.zone] = _Counter(raw)
        else:
            step = 0 if kept.raw is None else unwrap(kept.raw, raw, files.max_range)
            kept.raw = None if step is None else raw
            if step is None:
                return None
            kept.total += step
        return RaplZone(files.zone, files.domain, files.package, kept.total / 1e6)


class _Counter:
    """One zone's energy_uj as last read (None: the next reading starts afresh) and its total, wraps undone."""

    __slots__ = ("raw", "total")

    def __init__(self, raw: int) -> None:
        self.raw: int | None = raw
        self.total = raw  # µJ


def _outcome(sample: EnergySample, problems: list[Exception], denied: int) -> EnergySample | Partial[EnergySample]:
    if not problems:
        return sample
    if not sample.cpu:
        if denied == len(problems):
            raise Unavailable(ROOT_ONLY)
        raise problems[0]
    return Partial(sample, "; ".join(describe(p) for p in problems))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
