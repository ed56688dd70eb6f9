"""The collector interface: `Collector`, the `Section` records it returns, `Partial` and `reading_host`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ..model import (
    AcceleratorSample,
    ContainerSample,
    CpuSample,
    DiskSample,
    EnergySample,
    InfinibandSample,
    MemorySample,
    NetworkSample,
    NvlinkSample,
    PressureSample,
)

Accelerators = tuple[AcceleratorSample, ...]
# What `collect` returns: the record of one Snapshot section; the sampler matches on its type.
# NvlinkSample and InfinibandSample both fill the `fabric` section.
Section = (
    CpuSample | MemorySample | DiskSample | NetworkSample | Accelerators | ContainerSample | PressureSample
    | EnergySample | NvlinkSample | InfinibandSample
)


class Collector(Protocol):
    """One family of metrics. `collect` is synchronous and returns one `Section` record.

    `blocking` collectors (vendor libraries, slow syscalls) run in a worker thread; the others
    take microseconds and run inline on the event loop. A collector that finds its hardware
    absent raises `errors.Unavailable`; any other exception is reported as that collector's error.
    """

    @property
    def name(self) -> str: ...
    @property
    def blocking(self) -> bool: ...

    def collect(self, now: float) -> Section | Partial[Section]: ...


S = TypeVar("S", bound=Section, covariant=True)


@dataclass(frozen=True, slots=True)
class Partial(Generic[S]):
    """Returned by `collect` instead of the bare section when some values had to be nulled.

    The sampler publishes `value` and marks the collector `degraded` with `reason`.
    """

    value: S
    reason: str


def reading_host(proc_root: str, sys_root: str) -> bool:
    """True for this machine's own /proc and /sys; False for a captured tree (no live file systems,
    no GPUs to ask, no network addresses of its own)."""
    return proc_root == "/proc" and sys_root == "/sys"


def section_of(value: Section) -> str:
    """The Snapshot field that `value` fills."""
    match value:
        case CpuSample():
            return "cpu"
        case MemorySample():
            return "memory"
        case DiskSample():
            return "disk"
        case NetworkSample():
            return "network"
        case ContainerSample():
            return "container"
        case PressureSample():
            return "pressure"
        case EnergySample():
            return "energy"
        case NvlinkSample() | InfinibandSample():
            return "fabric"
        case _:
            return "accelerators"
