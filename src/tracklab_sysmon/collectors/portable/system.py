"""System info under the psutil backend: what /proc could not say (macOS, Windows), asked of psutil."""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import psutil

from ...model import SystemInfo
from ..base import Collector
from .cpu import PortableCpuCollector


def fill_from_psutil(
    collectors: Sequence[Collector], info: SystemInfo, *, ps: ModuleType | Any = psutil
) -> SystemInfo:
    """`info` with its unknown fields read from psutil when the psutil backend runs; else unchanged."""
    if not any(isinstance(c, PortableCpuCollector) for c in collectors):
        return info
    memory, swap = ps.virtual_memory(), ps.swap_memory()
    return dataclasses.replace(
        info,
        architecture=info.architecture if info.architecture != "unknown" else platform.machine() or "unknown",
        cpu_model=info.cpu_model or platform.processor() or None,
        cpu_cores=info.cpu_cores or ps.cpu_count(logical=False),
        cpu_threads=info.cpu_threads or ps.cpu_count(logical=True),
        memory_total=info.memory_total or int(memory.total),
        swap_total=info.swap_total if info.swap_total is not None else int(swap.total),
        boot_time=info.boot_time or int(ps.boot_time() * 1000),
        kernel=info.kernel or platform.release() or None,
    )
