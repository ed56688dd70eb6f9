"""Picks the hot-path backend once (C helper or Python twin) and exports `BACKEND`.

`TRACKLAB_SYSMON_NATIVE` chooses: `auto` (default: the C helper when it was built, else Python),
`require` (the C helper or an ImportError, so a broken build cannot pass silently) or `off`.
"""

from __future__ import annotations

import os
from typing import Protocol

from ._hotpath_py import PyHotReader
from .errors import BackendUnavailable
from .model import DiskCounters, LoadAvg, MemInfo, NetCounters, StatCounters

ENV_VAR = "TRACKLAB_SYSMON_NATIVE"
MODES = ("auto", "require", "off")


class CounterReader(Protocol):
    """What both backends offer: one call per kernel file, records of `model.py` out."""

    proc_root: str

    def stat(self) -> StatCounters: ...
    def diskstats(self) -> list[DiskCounters]: ...
    def net_dev(self) -> list[NetCounters]: ...
    def meminfo(self) -> MemInfo: ...
    def loadavg(self) -> LoadAvg: ...
    def tcp_established(self) -> int: ...
    def process_count(self) -> int: ...
    def close(self) -> None: ...


def select_backend(mode: str) -> tuple[type[CounterReader], str]:
    """The reader class and backend name ("cffi" or "python") for one TRACKLAB_SYSMON_NATIVE value."""
    mode = mode.strip().lower() or "auto"
    if mode not in MODES:
        raise BackendUnavailable(f"{ENV_VAR} must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "off":
        return PyHotReader, "python"
    try:
        from ._hotpath_cffi import CffiHotReader
    except ImportError as exc:
        if mode == "require":
            raise BackendUnavailable(
                f"{ENV_VAR}=require but the C helper is not built ({exc}); "
                "install a C compiler and reinstall tracklab-sysmon"
            ) from exc
        return PyHotReader, "python"
    return CffiHotReader, "cffi"


HotReader, BACKEND = select_backend(os.environ.get(ENV_VAR, "auto"))


def open_reader(proc_root: str = "/proc") -> CounterReader:
    """A reader of the per-tick counters under `proc_root`, from the chosen backend."""
    return HotReader(proc_root)


__all__ = ["BACKEND", "ENV_VAR", "BackendUnavailable", "CounterReader", "HotReader", "open_reader",
           "select_backend"]
