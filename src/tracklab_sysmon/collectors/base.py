"""The collector interface: `Collector`, `Partial` and `reading_host` (a leaf: imports nothing of the package)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Collector(Protocol):
    """One family of metrics. `collect` is synchronous and returns the record for `section`.

    `blocking` collectors (vendor libraries, slow syscalls) run in a worker thread; the others
    take microseconds and run inline on the event loop. A collector that finds its hardware
    absent raises `errors.Unavailable`; any other exception is reported as that collector's error.
    """

    name: str
    section: str  # the Snapshot field it fills: cpu, memory, disk, network or accelerators
    blocking: bool

    def collect(self, now: float) -> object: ...


@dataclass(frozen=True, slots=True)
class Partial:
    """Returned by `collect` instead of the bare section when some values had to be nulled.

    The sampler publishes `value` and marks the collector `degraded` with `reason`.
    """

    value: object
    reason: str


def reading_host(proc_root: str, sys_root: str) -> bool:
    """True for this machine's own /proc and /sys; False for a captured tree (no live file systems,
    no GPUs to ask, no network addresses of its own)."""
    return proc_root == "/proc" and sys_root == "/sys"
