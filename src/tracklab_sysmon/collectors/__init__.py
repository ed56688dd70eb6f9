"""The explicit list of collectors the service runs (the interface is in `base`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from ..hotpath import open_reader
from ..platforms import select
from .amd import AmdCollector, discover
from .apple import AppleCollector
from .base import Collector, reading_host
from .container import ContainerCollector, HostPressureCollector
from .cpu import CpuCollector
from .disk import HOST_STATVFS, DiskCollector
from .energy_sources import energy_collectors
from .gaudi import GaudiCollector
from .infiniband import InfinibandCollector
from .memory import MemoryCollector
from .network import NetworkCollector
from .neuron import NeuronCollector
from .nvidia import NvidiaCollector
from .nvlink import NvlinkCollector
from .tpu import TpuCollector


def default_collectors(
    proc_root: str = "/proc",
    sys_root: str = "/sys",
    *,
    statvfs: Callable[[str], os.statvfs_result] | None = HOST_STATVFS,
    enable_dcgm: bool = False,
    host_gpus: bool | None = None,
    backend: str = "auto",
    cgroup: str = "auto",
    interval: float = 1.0,
    tpu_address: str | None = None,
) -> tuple[Collector, ...]:
    """The collectors for one machine (or one captured tree), sharing one hot-path reader.

    AMD GPUs are read under `sys_root` (on a captured tree only when it holds amdgpu cards);
    NVIDIA (NVML) and Apple (ioreg, macOS only) ask the host itself, so they run only when
    `host_gpus` (default: `reading_host`). `backend` is `--collectors`: auto, procfs or psutil;
    `cgroup` picks what the container section describes. Google TPU, AWS Neuron and Intel Gaudi
    (`accelerator_collectors`) run on the host too; `interval` paces their vendor tools and
    `tpu_address` is `--tpu-metrics-addr`.
    """
    choice = select(sys.platform, backend, on_host=reading_host(proc_root, sys_root))
    if choice.collectors == "psutil":
        from .portable import portable_collectors  # psutil is loaded only by the backend that needs it

        return portable_collectors(choice, enable_dcgm=enable_dcgm, host_gpus=host_gpus is not False)
    reader = open_reader(proc_root)
    host = reading_host(proc_root, sys_root) if host_gpus is None else host_gpus
    gpus: tuple[Collector, ...] = ()
    if host or discover(sys_root):  # a captured tree gets the AMD collector only if it holds cards
        gpus += (AmdCollector(sys_root),)
    if host:
        gpus += (NvidiaCollector(enable_dcgm=enable_dcgm),)
    if host and sys.platform == "darwin":
        gpus += (AppleCollector(),)
    if host and sys.platform.startswith("linux"):
        gpus += accelerator_collectors(sys_root, interval=interval, tpu_address=tpu_address)
    return (
        CpuCollector(reader, proc_root=proc_root, sys_root=sys_root),
        MemoryCollector(reader),
        DiskCollector(reader, proc_root=proc_root, sys_root=sys_root, statvfs=statvfs),
        NetworkCollector(reader),
        *gpus,
        *_job_collectors(proc_root, sys_root, cgroup),
        *energy_collectors(proc_root, sys_root, host=host),
        *_fabric_collectors(sys_root, gpus=host, on_host=reading_host(proc_root, sys_root)),
    )


def accelerator_collectors(
    sys_root: str = "/sys", *, interval: float = 1.0, tpu_address: str | None = None
) -> tuple[Collector, ...]:
    """Google TPU (libtpu's metrics service), AWS Neuron (neuron-monitor) and Intel Gaudi (hl-smi): each finds
    its source on first use and is `unavailable` without it; the two tools run as supervised children."""
    return (TpuCollector(sys_root, address=tpu_address), NeuronCollector(interval=interval),
            GaudiCollector(interval=interval))


def close_collectors(collectors: Sequence[Collector]) -> None:
    """Release what collectors hold open (child processes, channels): each that has a `close` is closed."""
    for collector in collectors:
        close = getattr(collector, "close", None)
        if callable(close):
            close()


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


def _fabric_collectors(sys_root: str, *, gpus: bool, on_host: bool) -> tuple[Collector, ...]:
    """NVLink (NVML: only where GPUs are asked) and InfiniBand/RoCE: always on the host (health says
    why one is unavailable); on a captured tree only when it holds class/infiniband."""
    found: tuple[Collector, ...] = (NvlinkCollector(),) if gpus else ()
    if on_host or os.path.isdir(os.path.join(sys_root, "class", "infiniband")):
        found += (InfinibandCollector(sys_root),)
    return found


__all__ = ["accelerator_collectors", "close_collectors", "default_collectors"]
