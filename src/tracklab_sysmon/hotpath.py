"""Picks the hot-path backend once (C helper or Python twin) and exports `BACKEND`; the process walk follows it.

`TRACKLAB_SYSMON_NATIVE` chooses: `auto` (default: the C helper when it was built, else Python),
`require` (the C helper or an ImportError, so a broken build cannot pass silently) or `off`.
`BACKEND_REASON` says why the Python twin serves (None with the C helper); `/api/health` shows both
and the service warns once at start-up when `auto` had to fall back.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Protocol, TypeVar

from ._devices_py import Select
from ._hotpath_py import PyHotReader
from ._procwalk_py import PyProcWalker
from .errors import BackendUnavailable
from .model import (
    ColumnsT,
    CpuTick,
    DeviceTick,
    DiskColumns,
    DiskCounters,
    InterfaceColumns,
    LoadAvg,
    MemInfo,
    NetCounters,
    PidStat,
    StatCounters,
)

ENV_VAR = "TRACKLAB_SYSMON_NATIVE"
MODES = ("auto", "require", "off")
_OFF_REASON = f"{ENV_VAR}=off"


class CpuTicker(Protocol):
    """A CPU tick in one call: usage against the previous call, and each core's cpufreq reading."""

    def tick(self) -> CpuTick: ...


class DeviceTicker(Protocol[ColumnsT]):
    """Whole disks or interfaces in one tick: counters rated against the previous tick, as columns."""

    def tick(self, now: float) -> DeviceTick[ColumnsT]: ...


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
    def disk_ticker(self, select: Select) -> DeviceTicker[DiskColumns]: ...
    def net_ticker(self, select: Select) -> DeviceTicker[InterfaceColumns]: ...
    def close(self) -> None: ...


class ProcReader(CounterReader, Protocol):
    """Both /proc backends (C helper and Python twin): the counters, and the CPU tick in one call."""

    def cpu_ticker(self, sys_root: str) -> CpuTicker: ...


ReaderFactory = Callable[[str], ProcReader]  # a backend's reader class, called with proc_root


class ProcessWalker(Protocol):
    """What both process walks offer: every process's stat, in the order of the listing."""

    proc_root: str

    def stats(self) -> list[PidStat]: ...
    def close(self) -> None: ...


WalkerFactory = Callable[[str], ProcessWalker]  # a backend's walker class, called with proc_root


T = TypeVar("T")


def select_backend(mode: str) -> tuple[ReaderFactory, str]:
    """The reader class and backend name ("cffi" or "python") for one TRACKLAB_SYSMON_NATIVE value."""
    reader, name, _ = _select(mode)
    return reader, name


def _select(mode: str) -> tuple[ReaderFactory, str, str | None]:
    """The reader, its name, and why it is the Python twin (None for the C helper)."""
    mode = mode.strip().lower() or "auto"
    if mode not in MODES:
        raise BackendUnavailable(f"{ENV_VAR} must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "off":
        return PyHotReader, "python", _OFF_REASON
    try:
        from ._hotpath_cffi import CffiHotReader
    except ImportError as exc:
        if mode == "require":
            raise BackendUnavailable(
                f"{ENV_VAR}=require but the C helper is not built ({exc}); "
                "install a C compiler and reinstall tracklab-sysmon"
            ) from exc
        return PyHotReader, "python", f"the C helper is not built ({exc})"
    return CffiHotReader, "cffi", None


def select_walker(mode: str) -> tuple[WalkerFactory, str]:
    """The process walker and its backend name for one TRACKLAB_SYSMON_NATIVE value (the reader's choice)."""
    walker, name, _ = _select_walker(mode)
    return walker, name


def _select_walker(mode: str) -> tuple[WalkerFactory, str, str | None]:
    """The walker, its name, and why it is the Python walk although the C helper serves (else None)."""
    _, name, _ = _select(mode)
    if name == "python":
        return PyProcWalker, "python", None
    try:
        from ._procwalk_cffi import CffiProcWalker
    except (ImportError, AttributeError) as exc:  # AttributeError: an extension built before the walk existed
        if mode.strip().lower() == "require":
            raise BackendUnavailable(f"{ENV_VAR}=require but the C process walk is not built ({exc})") from exc
        return PyProcWalker, "python", f"the C process walk is not built ({exc})"
    return CffiProcWalker, "cffi", None


def native_or_python(mode: str, what: str, load: Callable[[], T], python: T) -> tuple[T, str]:
    """A C piece of the collectors and its backend name for one TRACKLAB_SYSMON_NATIVE value: what `load` gives
    where the helper was built (the reader's choice), else `python`; `what` names the piece in an error."""
    _, name = select_backend(mode)
    if name == "python":
        return python, "python"
    try:
        return load(), "cffi"
    except (ImportError, AttributeError) as exc:  # AttributeError: an extension built before the piece existed
        if mode.strip().lower() == "require":
            raise BackendUnavailable(f"{ENV_VAR}=require but the C {what} is not built ({exc})") from exc
        return python, "python"


HotReader, BACKEND, BACKEND_REASON = _select(os.environ.get(ENV_VAR, "auto"))
ProcWalker, WALKER_BACKEND, _WALKER_REASON = _select_walker(os.environ.get(ENV_VAR, "auto"))


def warn_if_fallback() -> None:
    """Log one warning when `auto` fell back to the Python twin (the service works, at a higher cost
    per tick), and one when the C helper serves without its process walk (an extension built before
    it); the service calls it once at start-up, so importing this module stays silent."""
    if BACKEND == "python" and BACKEND_REASON != _OFF_REASON:
        logging.getLogger(__name__).warning(
            "using the Python hot path: %s; install a C compiler and reinstall tracklab-sysmon for the C helper",
            BACKEND_REASON,
        )
    if _WALKER_REASON is not None:
        logging.getLogger(__name__).warning(
            "using the Python process walk: %s; reinstall tracklab-sysmon to rebuild the C helper", _WALKER_REASON)


def open_reader(proc_root: str = "/proc") -> ProcReader:
    """A reader of the per-tick counters under `proc_root`, from the chosen backend."""
    return HotReader(proc_root)


def open_walker(proc_root: str = "/proc") -> ProcessWalker:
    """A walker of the processes under `proc_root`, from the chosen backend."""
    return ProcWalker(proc_root)


__all__ = ["BACKEND", "BACKEND_REASON", "ENV_VAR", "WALKER_BACKEND", "BackendUnavailable", "CounterReader",
           "CpuTicker", "DeviceTicker", "HotReader", "ProcReader", "ProcWalker", "ProcessWalker", "open_reader",
           "open_walker", "select_backend", "select_walker", "warn_if_fallback"]
