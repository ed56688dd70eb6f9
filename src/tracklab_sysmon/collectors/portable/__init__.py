"""The portable collector backend over psutil: the same records, rates and nulls as the procfs one."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import psutil

from ...platforms import PlatformChoice
from ..backend import backend_health
from ..base import Collector
from ..memory import MemoryCollector
from ..network import NetworkCollector
from .cpu import PortableCpuCollector
from .disk import PortableDiskCollector
from .gpus import platform_gpus
from .reader import PsutilCounterReader


def portable_collectors(
    choice: PlatformChoice,
    *,
    ps: ModuleType | Any = psutil,
    enable_dcgm: bool = False,
    host_gpus: bool = True,
) -> tuple[Collector, ...]:
    """cpu, memory, disk and network through psutil, then the GPUs this platform can have.

    Memory and network are the procfs backend's own collectors fed by psutil's counters, so
    `used`, rates, counter resets and loopback exclusion follow exactly the same rules.
    """
    reader = PsutilCounterReader(choice, ps=ps)
    gpus = platform_gpus(choice, enable_dcgm=enable_dcgm) if host_gpus else ()
    return (
        PortableCpuCollector(reader),
        MemoryCollector(reader),
        PortableDiskCollector(reader, ps=ps),
        NetworkCollector(reader),
        *gpus,
    )


__all__ = ["PsutilCounterReader", "backend_health", "portable_collectors"]
