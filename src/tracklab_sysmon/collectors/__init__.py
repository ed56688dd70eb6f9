"""The collector interface and the explicit list of collectors the service runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Protocol

from ..errors import Unavailable
from .container import ContainerCollector, HostPressureCollector
from .cpu import CpuCollector
from .disk import DiskCollector
from .memory import MemoryCollector
from .network import NetworkCollector


class Collector(Protocol):
    """One family of metrics. `collect` is synchronous and returns the record for `section`.

    `blocking` collectors (vendor libraries, slow syscalls) run in a worker thread; the others
    take microseconds and run inline on the event loop. A collector that finds its hardware
    absent raises `Unavailable`; any other exception is reported as that collector's error.
    """

    name: str
    section: str  # the Snapshot field it fills: cpu, memory, disk, network or accelerators
    blocking: bool

    def collect(self, now: float) -> object: ...


def reading_host(proc_root: str, sys_root: str) -> bool:
    """True for this machine's own /proc and /sys; False for a captured tree (no live file systems,
    no GPUs to ask, no network addresses of its own)."""
    return proc_root == "/proc" and sys_root == "/sys"


def default_collectors(
    proc_root: str = "/proc",
    sys_root: str = "/sys",
    *,
    statvfs: Callable[[str], os.statvfs_result] | None = os.statvfs,
    enable_dcgm: bool = False,
    host_gpus: bool | None = None,
    cgroup: str = "auto",
) -> tuple[Collector, ...]:
    """The collectors for one machine (or one captured tree), sharing one hot-path reader.

    AMD GPUs are read under `sys_root` (on a captured tree only when it holds amdgpu cards);
    NVIDIA (NVML) and Apple (ioreg, macOS only) ask the host itself, so they run only when
    `host_gpus` (default: `reading_host`). `cgroup` picks what the container section describes.
    """
    from ..hotpath import open_reader  # hotpath's parsers live in this package: import late
    from .amd import AmdCollector, discover  # the GPU modules import this package's Unavailable
    from .apple import AppleCollector
    from .nvidia import NvidiaCollector

    reader = open_reader(proc_root)
    host = reading_host(proc_root, sys_root) if host_gpus is None else host_gpus
    gpus: tuple[Collector, ...] = ()
    if host or discover(sys_root):  # a captured tree gets the AMD collector only if it holds cards
        gpus += (AmdCollector(sys_root),)
    if host:
        gpus += (NvidiaCollector(enable_dcgm=enable_dcgm),)
    if host and sys.platform == "darwin":
        gpus += (AppleCollector(),)
    return (
        CpuCollector(reader, proc_root=proc_root, sys_root=sys_root),
        MemoryCollector(reader),
        DiskCollector(reader, proc_root=proc_root, sys_root=sys_root, statvfs=statvfs),
        NetworkCollector(reader),
        *gpus,
        *_job_collectors(proc_root, sys_root, cgroup),
    )


def _job_collectors(proc_root: str, sys_root: str, cgroup: str) -> tuple[Collector, ...]:
    """Container and PSI collectors: always on the host (health says why one is unavailable); on a
    captured tree only when it holds /proc/self/cgroup or /proc/pressure, like the AMD collector."""
    host = reading_host(proc_root, sys_root)
    found: tuple[Collector, ...] = ()
    if host or os.path.exists(os.path.join(proc_root, "self", "cgroup")):
        found += (ContainerCollector(proc_root, sys_root, cgroup),)
    if host or os.path.isdir(os.path.join(proc_root, "pressure")):
        found += (HostPressureCollector(proc_root),)
    return found


__all__ = ["Collector", "Unavailable", "default_collectors", "reading_host"]
