"""Disk through psutil: usage over physical mounts (each device or pool once) plus the shared IO rates."""

from __future__ import annotations

import dataclasses
import re
from types import ModuleType
from typing import Any

import psutil

from ...model import DiskSample
from ...platforms import PlatformChoice
from ..disk import MOUNT_REFRESH_SECONDS, DiskCollector, pooled_usage
from .reader import PsutilCounterReader

_APFS_VOLUME = re.compile(r"(s\d+)+$")  # disk3s1s1 (a snapshot of volume 1) -> container disk3


class PortableDiskCollector:
    name = "disk"
    section = "disk"
    blocking = False

    def __init__(
        self, reader: PsutilCounterReader, *, ps: ModuleType | Any = psutil, sys_root: str = "/sys"
    ) -> None:
        self._choice = reader.choice
        self._ps = ps
        # IO rates: the procfs collector itself over psutil's counters (same whole-disk rule and rates).
        self._io = DiskCollector(reader, sys_root=sys_root, statvfs=None)
        self._mounts: list[tuple[str, str]] = []
        self._mounts_read_at: float | None = None

    def collect(self, now: float) -> DiskSample:
        sample = self._io.collect(now)
        usage, used, total = self._usage(now)
        return dataclasses.replace(sample, usage=usage, used=used, total=total)

    def _usage(self, now: float) -> tuple[float | None, int | None, int | None]:
        if self._mounts_read_at is None or now - self._mounts_read_at >= MOUNT_REFRESH_SECONDS:
            self._mounts = physical_mounts(self._ps.disk_partitions(all=False), self._choice)
            self._mounts_read_at = now
        readings = []
        for pool, mountpoint in self._mounts:
            try:
                du = self._ps.disk_usage(mountpoint)
            except OSError:  # unmounted since, or an empty card reader on Windows
                continue
            readings.append((pool, int(du.used), int(du.free), int(du.total)))
        return pooled_usage(readings)


def physical_mounts(partitions: list[Any], choice: PlatformChoice) -> list[tuple[str, str]]:
    """(pool, mount point) per physical device, first mount wins; loop-backed images are skipped."""
    seen: set[str] = set()
    mounts = []
    for part in partitions:
        device = part.device
        if device in seen or device.startswith("/dev/loop"):
            continue
        seen.add(device)
        mounts.append((pool_of(device, part.fstype, choice), part.mountpoint))
    return mounts


def pool_of(device: str, fstype: str, choice: PlatformChoice) -> str:
    """The free-space pool a volume draws on: its ZFS pool, APFS container, else the device itself."""
    if fstype not in choice.pooled_filesystems:
        return device
    if fstype == "zfs":
        return device.split("/", 1)[0]
    return _APFS_VOLUME.sub("", device)
