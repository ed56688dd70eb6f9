"""Picks the NVLink counter backend (C helper or Python twin) once, as `hotpath` picks the reader."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol

from ._fabric_py import PyNvlinkCounters
from .errors import BackendUnavailable
from .hotpath import ENV_VAR, select_backend


class NvlinkCounters(Protocol):
    """One GPU's tx/rx byte counters and their rates from the bytes of one answered request."""

    size: int

    def read(self, raw: bytes, positions: Sequence[int] | None, now: float) -> tuple[list[int | None],
                                                                                 list[float | None]]: ...


CountersFactory = Callable[[int], NvlinkCounters]  # called with the GPU's link count


def select_counters(mode: str) -> tuple[CountersFactory, str]:
    """The NVLink counters class and its backend name for one TRACKLAB_SYSMON_NATIVE value (the reader's choice)."""
    _, name = select_backend(mode)
    if name == "python":
        return PyNvlinkCounters, "python"
    try:
        from ._fabric_cffi import CffiNvlinkCounters
    except (ImportError, AttributeError) as exc:  # AttributeError: an extension built before the fabric helper
        if mode.strip().lower() == "require":
            raise BackendUnavailable(f"{ENV_VAR}=require but the C fabric helper is not built ({exc})") from exc
        return PyNvlinkCounters, "python"
    return CffiNvlinkCounters, "cffi"


NvlinkCountersImpl, FABRIC_BACKEND = select_counters(os.environ.get(ENV_VAR, "auto"))
