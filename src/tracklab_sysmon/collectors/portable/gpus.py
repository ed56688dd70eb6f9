"""Accelerator collectors for the psutil backend, per platform; absent vendors say why in health."""

from __future__ import annotations

from ...errors import Unavailable
from ...platforms import PlatformChoice
from ..amd import AmdCollector
from ..apple import AppleCollector
from ..base import Accelerators, Collector
from ..nvidia import NvidiaCollector

AMD_LINUX_ONLY = "AMD GPUs are read from Linux sysfs"


class NotOnThisPlatform:
    """Stands in for a collector whose source does not exist on this OS: always `unavailable`."""

    blocking = False

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def collect(self, now: float) -> Accelerators:
        raise Unavailable(self.reason)


def platform_gpus(
    choice: PlatformChoice, *, sys_root: str = "/sys", enable_dcgm: bool = False
) -> tuple[Collector, ...]:
    """NVIDIA (NVML) everywhere, AMD on Linux, Apple (ioreg) on macOS; AMD elsewhere is unavailable."""
    gpus: list[Collector] = []
    if "amd" in choice.gpus:
        gpus.append(AmdCollector(sys_root))
    else:
        gpus.append(NotOnThisPlatform("amd", AMD_LINUX_ONLY))
    if "nvidia" in choice.gpus:
        gpus.append(NvidiaCollector(enable_dcgm=enable_dcgm))
    if "apple" in choice.gpus:
        gpus.append(AppleCollector(platform=choice.platform))
    return tuple(gpus)
