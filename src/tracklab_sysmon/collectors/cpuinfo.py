"""/proc/cpuinfo per CPU (`cpu MHz`, `physical id`, `core id`): the fallback where sysfs has no cpufreq or topology."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

from .. import _sysfs as sysfs

# Reading /proc/cpuinfo is not free: on x86 the kernel samples every CPU's APERF/MPERF for
# `cpu MHz` (an IPI per CPU on many kernels) and prints ~1.3 KB per CPU. A VM's value is the
# host's nominal clock and rarely moves, so re-read it at most this often, and only for CPUs
# that have no cpufreq.
REFRESH_SECONDS = 10.0

_N = TypeVar("_N", int, float)


@dataclass(frozen=True, slots=True)
class CpuinfoEntry:
    """What one `processor` block says; None where the architecture does not print the key (arm64)."""

    mhz: float | None = None
    package: int | None = None
    core: int | None = None


_WANTED = ("processor", "cpu MHz", "physical id", "core id")


def parse_cpuinfo(text: str) -> dict[int, CpuinfoEntry]:
    """Entries by `processor` number (offline CPUs are absent, so numbers can skip); keys before
    the first `processor` line (s390) and unreadable values are ignored."""
    blocks: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if not line.startswith(_WANTED):  # most lines (flags, bugs, ...): skipped without splitting
            continue
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "processor" and sep:
            current = blocks.setdefault(int(value), {}) if value.isdigit() else None
        elif current is not None and sep:
            current.setdefault(key, value)
    return {
        cpu: CpuinfoEntry(
            mhz=_clock(block.get("cpu MHz")),
            package=_number(block.get("physical id"), int),
            core=_number(block.get("core id"), int),
        )
        for cpu, block in blocks.items()
    }


def read_cpuinfo(proc_root: str) -> dict[int, CpuinfoEntry]:
    """Parsed `proc_root/cpuinfo`, {} when it is missing or unreadable."""
    return parse_cpuinfo(sysfs.read_text(os.path.join(proc_root, "cpuinfo")) or "")


class CpuinfoClock:
    """`cpu MHz` per CPU, re-read from /proc/cpuinfo at most every `refresh` seconds of the caller's clock."""

    def __init__(self, proc_root: str, refresh: float = REFRESH_SECONDS) -> None:
        self._proc_root = proc_root
        self._refresh = refresh
        self._read_at: float | None = None
        self._mhz: dict[int, float | None] = {}

    def mhz(self, cpu_id: int, now: float) -> float | None:
        if self._read_at is None or now - self._read_at >= self._refresh or now < self._read_at:
            self._mhz = {cpu: entry.mhz for cpu, entry in read_cpuinfo(self._proc_root).items()}
            self._read_at = now
        return self._mhz.get(cpu_id)


def _clock(text: str | None) -> float | None:
    mhz = _number(text, float)
    return mhz if mhz is not None and 0 < mhz < float("inf") else None  # "0.000" means unknown, not stopped


def _number(text: str | None, kind: type[_N]) -> _N | None:
    try:
        return kind(text) if text is not None else None
    except ValueError:
        return None
