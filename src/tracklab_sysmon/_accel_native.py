"""Picks the NVLink counter backend (C helper or Python twin) once, as `hotpath` picks the reader."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, Protocol

from ._fabric_py import NvlinkCounters, NvlinkTarget, PyNvlinkCounters, PyNvlinkReader, Reading
from .errors import BackendUnavailable
from .hotpath import ENV_VAR, select_backend

__all__ = ["FABRIC_BACKEND", "NvlinkCounters", "NvlinkCountersImpl", "NvlinkReader", "NvlinkReaderImpl",
           "NvlinkTarget", "Reading", "select_counters", "select_reader"]


class NvlinkReader(Protocol):
    """Every given GPU's data counters for one tick (see `_fabric_py.Reading`)."""

    def read(self, pynvml: Any, gpus: Sequence[NvlinkTarget], now: float) -> Reading: ...


CountersFactory = Callable[[int], NvlinkCounters]  # called with the GPU's link count
ReaderFactory = Callable[[], NvlinkReader]


def select_counters(mode: str) -> tuple[CountersFactory, str]:
    """The NVLink counters class and its backend name for one TRACKLAB_SYSMON_NATIVE value (the reader's choice)."""
    native = _native(mode)
    return (PyNvlinkCounters, "python") if native is None else (native.CffiNvlinkCounters, "cffi")


def select_reader(mode: str) -> tuple[ReaderFactory, str]:
    """The class that reads every GPU's counters in a tick, as `select_counters` picks: the C reader takes the
    C counters only, the Python reader either."""
    native = _native(mode)
    return (PyNvlinkReader, "python") if native is None else (native.CffiNvlinkReader, "cffi")


def _native(mode: str) -> ModuleType | None:
    """The C fabric helper's module, or None for the Python twin; raises BackendUnavailable for `require` without it."""
    _, name = select_backend(mode)
    if name == "python":
        return None
    try:
        from . import _fabric_cffi
    except (ImportError, AttributeError) as exc:  # AttributeError: an extension built before the fabric helper
        if mode.strip().lower() == "require":
            raise BackendUnavailable(f"{ENV_VAR}=require but the C fabric helper is not built ({exc})") from exc
        return None
    return _fabric_cffi


_MODE = os.environ.get(ENV_VAR, "auto")
NvlinkCountersImpl, FABRIC_BACKEND = select_counters(_MODE)
NvlinkReaderImpl, _ = select_reader(_MODE)
