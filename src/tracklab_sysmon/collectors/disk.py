"""Disk: usage over physical filesystems and IO rates over whole disks only."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence

from .. import _procfs as procfs
from .. import _sysfs as sysfs
from ..hotpath import CounterReader
from ..model import DiskColumns, DiskDeviceSample, DiskSample
from .base import Partial

_VIRTUAL_PREFIXES = ("loop", "ram", "zram")
_STACKED_PREFIXES = ("dm-", "md")
_PARTITION_SUFFIX = re.compile(r"p?\d+$")
HOST_STATVFS = getattr(os, "statvfs", None)  # Windows has none (the psutil backend runs there)
MOUNT_REFRESH_SECONDS = 30.0  # mounts change rarely; re-reading them every tick is waste


class DiskCollector:
    name = "disk"
    blocking = False

    def __init__(
        self,
        reader: CounterReader,
        *,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
        statvfs: Callable[[str], os.statvfs_result] | None = HOST_STATVFS,
    ) -> None:
        self._reader = reader
        self._proc_root = proc_root
        self._block_dir = os.path.join(sys_root, "block")
        self._statvfs = statvfs
        self._mounts: list[tuple[str, str]] = []  # (pool, mount point)
        self._mounts_read_at: float | None = None
        self._disk_names: frozenset[str] | None = None
        self._whole_disks: frozenset[str] = frozenset()
        self._ticker = reader.disk_ticker(self._select)

    def collect(self, now: float) -> DiskSample | Partial[DiskSample]:
        usage, used, total = self._usage(now)
        try:
            tick = self._ticker.tick(now)
        except FileNotFoundError:  # no /proc/diskstats (some containers): usage stands, IO is unknown
            devices: Sequence[DiskDeviceSample] = ()
            io_read = io_write = iops = None
        else:
            devices = tick.devices
            io_read, io_write, iops = tick.totals[:3]  # None when no whole disk is counted: unknown, not zero
        sample = DiskSample(usage=usage, used=used, total=total, io_read=io_read, io_write=io_write, iops=iops,
                            devices=devices)
        problems = devices.overflow_problems() if isinstance(devices, DiskColumns) else []
        return Partial(sample, "; ".join(problems)) if problems else sample

    def _select(self, names: list[str]) -> list[bool]:
        """Which rows count: whole disks, re-decided when the set of devices changes (hot-plug)."""
        if (distinct := frozenset(names)) != self._disk_names:
            self._disk_names = distinct
            self._whole_disks = whole_disks(distinct, self._block_dir)
        return [name in self._whole_disks for name in names]

    def _usage(self, now: float) -> tuple[float | None, int | None, int | None]:
        if self._statvfs is None:
            return None, None, None
        if self._mounts_read_at is None or now - self._mounts_read_at >= MOUNT_REFRESH_SECONDS:
            self._mounts = physical_filesystems(self._proc_root)
            self._mounts_read_at = now
        readings = []
        for pool, mountpoint in self._mounts:
            try:
                st = self._statvfs(mountpoint)
            except OSError:
                continue
            used_here = (st.f_blocks - st.f_bfree) * st.f_frsize
            readings.append((pool, used_here, st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize))
        return pooled_usage(readings)


def pooled_usage(readings: Iterable[tuple[str, int, int, int]]) -> tuple[float | None, int | None, int | None]:
    """(usage %, used, total) over (pool, used, avail, size) per mount, each pool counted once.

    The pool is a device, or the ZFS pool / APFS container whose datasets share one free space:
    their used adds up, the pool's free space does not.
    """
    pools: dict[str, tuple[int, int, int]] = {}  # (used, avail, size) per device or pool
    for pool, used_here, avail_here, size_here in readings:
        if pool in pools:
            used_before, avail, size = pools[pool]
            pools[pool] = (used_before + used_here, avail, size + used_here)
        else:
            pools[pool] = (used_here, avail_here, size_here)
    if not pools:
        return None, None, None
    used = sum(u for u, _, _ in pools.values())
    avail = sum(a for _, a, _ in pools.values())
    total = sum(t for _, _, t in pools.values())
    # Use% as df computes it: used over the space an unprivileged user could fill.
    usage = round(100.0 * used / (used + avail), 2) if used + avail else None
    return usage, used, total


def physical_mountpoints(proc_root: str) -> list[str]:
    """One mount point per physical device (first seen), skipping loop-backed images."""
    return [mountpoint for _, mountpoint in physical_filesystems(proc_root)]


def physical_filesystems(proc_root: str) -> list[tuple[str, str]]:
    """(pool, mount point) per physical device: the pool is the device, or a ZFS dataset's pool."""
    mounts_text = sysfs.read_text(os.path.join(proc_root, "mounts"))
    if mounts_text is None:
        mounts_text = sysfs.read_text(os.path.join(proc_root, "self/mounts")) or ""
    fs_text = sysfs.read_text(os.path.join(proc_root, "filesystems")) or ""
    physical = procfs.parse_block_filesystems(fs_text) | {"zfs"}
    seen: set[str] = set()
    points = []
    for device, mountpoint, fstype in procfs.parse_mounts(mounts_text):
        if fstype not in physical or device in seen or device.startswith("/dev/loop"):
            continue
        seen.add(device)
        points.append((device.split("/", 1)[0] if fstype == "zfs" else device, mountpoint))
    return points


def whole_disks(names: frozenset[str], block_dir: str) -> frozenset[str]:
    """The devices whose IO is counted: whole, real disks with nothing counted beneath them."""
    listed = sysfs.list_dir(block_dir)
    if listed:
        candidates = {entry.replace("!", "/") for entry in listed}
        return frozenset(
            n for n in names
            if n in candidates
            and not n.startswith(_VIRTUAL_PREFIXES)
            and not sysfs.list_dir(os.path.join(block_dir, n.replace("/", "!"), "slaves"))
        )
    # No sysfs to ask (a bare captured /proc): drop virtual and stacked devices and partitions.
    return frozenset(
        n for n in names
        if not n.startswith(_VIRTUAL_PREFIXES + _STACKED_PREFIXES) and not _is_partition(n, names)
    )


def _is_partition(name: str, names: frozenset[str]) -> bool:
    match = _PARTITION_SUFFIX.search(name)
    return match is not None and match.start() > 0 and name[: match.start()] in names
