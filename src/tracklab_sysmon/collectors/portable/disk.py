"""Disk through psutil: usage over physical mounts (each device or pool once) plus the shared IO rates."""

from __future__ import annotations

import dataclasses
import os
import re
from types import ModuleType
from typing import Any

import psutil

from ...model import DiskSample
from ...platforms import PlatformChoice
from ..base import Partial
from ..disk import MOUNT_REFRESH_SECONDS, DiskCollector, pooled_usage
from .reader import PsutilCounterReader

_APFS_VOLUME = re.compile(r"(s\d+)+$")  # disk3s1s1 (a snapshot of volume 1) -> container disk3


class PortableDiskCollector:
    name = "disk"
    blocking = False

    def __init__(
        self, reader: PsutilCounterReader, *, ps: ModuleType | Any = psutil, sys_root: str = "/sys"
    ) -> None:
        self._choice = reader.choice
        self._ps = ps
        # IO rates: the procfs collector itself over psutil's counters (same whole-disk rule and rates).
        # Off Linux there is no /sys/block: a root that cannot be listed makes it keep psutil's disks
        # (psutil lists whole disks there: IOMedia "Whole" on macOS, PhysicalDriveN on Windows).
        io_root = sys_root if self._choice.whole_disks == "sysfs" else os.path.join(os.devnull, "none")
        self._io = DiskCollector(reader, sys_root=io_root, statvfs=None)
        self._mounts: list[tuple[str, str, str]] = []
        self._mounts_read_at: float | None = None

    def collect(self, now: float) -> DiskSample | Partial[DiskSample]:
        found = self._io.collect(now)
        usage, used, total = self._usage(now)
        if isinstance(found, Partial):  # some IO counters nulled: keep the reason, add the usage
            return Partial(dataclasses.replace(found.value, usage=usage, used=used, total=total), found.reason)
        return dataclasses.replace(found, usage=usage, used=used, total=total)

    def _usage(self, now: float) -> tuple[float | None, int | None, int | None]:
        if self._mounts_read_at is None or now - self._mounts_read_at >= MOUNT_REFRESH_SECONDS:
            self._mounts = physical_mounts(self._ps.disk_partitions(all=False), self._choice)
            self._mounts_read_at = now
        readings = []
        for pool, mountpoint, fstype in self._mounts:
            try:
                du = self._ps.disk_usage(mountpoint)
            except OSError:  # unmounted since, or an empty card reader on Windows
                continue
            # An APFS volume reports its container's size and free space but only its own used:
            # one volume stands for the whole container, whose used is size - free.
            used = int(du.total - du.free) if fstype == "apfs" else int(du.used)
            readings.append((pool, used, int(du.free), int(du.total)))
        return pooled_usage(readings)


def physical_mounts(partitions: list[Any], choice: PlatformChoice) -> list[tuple[str, str, str]]:
    """(pool, mount point, fs type) per physical device (an APFS container once), first mount wins;
    loop-backed images are skipped."""
    seen: set[str] = set()
    mounts = []
    for part in partitions:
        pool = pool_of(part.device, part.fstype, choice)
        key = pool if part.fstype == "apfs" else part.device
        if key in seen or part.device.startswith("/dev/loop"):
            continue
        seen.add(key)
        mounts.append((pool, part.mountpoint, part.fstype))
    return mounts


def pool_of(device: str, fstype: str, choice: PlatformChoice) -> str:
    """The free-space pool a volume draws on: its ZFS pool, APFS container, else the device itself."""
    if fstype not in choice.pooled_filesystems:
        return device
    if fstype == "zfs":
        return device.split("/", 1)[0]
    return _APFS_VOLUME.sub("", device)
