"""Picks the C helper or its Python twin for the accelerator sources' hot spots (NVLink counters, DRM fdinfo)
once, as `hotpath` picks the reader."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from ._fabric_py import PyNvlinkCounters
from .errors import BackendUnavailable
from .hotpath import ENV_VAR, select_backend

if TYPE_CHECKING:
    from .collectors.drm_fdinfo import DrmClient


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


FdinfoParser = Callable[[str], "DrmClient | None"]


def select_fdinfo_parser(mode: str) -> tuple[Callable[[], FdinfoParser], str]:
    """A factory of DRM fdinfo parsers (one per collector) and its backend name for one TRACKLAB_SYSMON_NATIVE value."""
    from .collectors.drm_fdinfo import parse_fdinfo  # here: the collectors package imports this module

    _, name = select_backend(mode)
    if name == "python":
        return lambda: parse_fdinfo, "python"
    try:
        from ._fdinfo_cffi import CffiFdinfoParser
    except (ImportError, AttributeError) as exc:  # AttributeError: an extension built before the parser existed
        if mode.strip().lower() == "require":
            raise BackendUnavailable(f"{ENV_VAR}=require but the C fdinfo parser is not built ({exc})") from exc
        return lambda: parse_fdinfo, "python"
    return CffiFdinfoParser, "cffi"


NvlinkCountersImpl, FABRIC_BACKEND = select_counters(os.environ.get(ENV_VAR, "auto"))
_fdinfo: tuple[Callable[[], FdinfoParser], str] | None = None


def new_fdinfo_parser() -> FdinfoParser:
    """A DRM fdinfo parser of the chosen backend (chosen on the first call, after every import is done)."""
    global _fdinfo
    if _fdinfo is None:
        _fdinfo = select_fdinfo_parser(os.environ.get(ENV_VAR, "auto"))
    return _fdinfo[0]()
