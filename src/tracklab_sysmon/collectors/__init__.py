"""The collector interface and the explicit list of collectors the service runs."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from .cpu import CpuCollector
from .disk import DiskCollector
from .memory import MemoryCollector
from .network import NetworkCollector

SECTIONS = ("cpu", "memory", "disk", "network", "accelerators")


class Collector(Protocol):
    """One family of metrics. `collect` is synchronous and returns the record for `section`.

    `blocking` collectors (vendor libraries, slow syscalls) run in a worker thread; the others
    take microseconds and run inline on the event loop. A collector that finds its hardware
    absent raises `Unavailable`; any other exception is reported as that collector's error.
    """

    name: str
    section: str
    blocking: bool

    def collect(self, now: float) -> object: ...


class Unavailable(Exception):
    """The hardware or library this collector needs is not here; a normal state, not an error."""


def default_collectors(
    proc_root: str = "/proc",
    sys_root: str = "/sys",
    *,
    statvfs: Callable[[str], os.statvfs_result] | None = os.statvfs,
) -> tuple[Collector, ...]:
    """The collectors for one machine (or one captured tree), sharing one hot-path reader."""
    from ..hotpath import open_reader  # hotpath's parsers live in this package: import late

    reader = open_reader(proc_root)
    return (
        CpuCollector(reader, proc_root=proc_root, sys_root=sys_root),
        MemoryCollector(reader),
        DiskCollector(reader, proc_root=proc_root, sys_root=sys_root, statvfs=statvfs),
        NetworkCollector(reader),
    )


__all__ = ["SECTIONS", "Collector", "Unavailable", "default_collectors"]
