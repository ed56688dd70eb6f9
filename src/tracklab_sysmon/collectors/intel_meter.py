"""The Intel engine meter's backend: the accounting in C (intel_engines_cffi) where the helper was built, else
`intel_engines.EngineMeter`; both give the same uses for the same files."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Protocol

from ..hotpath import ENV_VAR, native_or_python
from .drm_clients import FD_WALK_SECONDS, ClientWalk
from .intel_cards import IntelCard
from .intel_engines import WALK_SHARE, CardUse, EngineMeter


class UseMeter(Protocol):
    """`EngineMeter` or its C twin (`intel_engines_cffi.CffiEngineMeter`): the same uses for the same files."""

    walk: ClientWalk

    def read(self, now: float, cards: Mapping[str, IntelCard]) -> list[CardUse]: ...


_MeterClass = Callable[..., UseMeter]  # (proc_root, walk_seconds, walk_share, *, dev_root)


def select_engine_meter(mode: str) -> tuple[_MeterClass, str]:
    """The engine meter's class for one TRACKLAB_SYSMON_NATIVE value and its backend name: the C accounting
    (native/engines.c) where the helper was built, else `EngineMeter`."""
    def load() -> _MeterClass:
        from .intel_engines_cffi import CffiEngineMeter
        return CffiEngineMeter

    return native_or_python(mode, "Intel engine meter", load, EngineMeter)


@functools.cache
def _chosen() -> _MeterClass:
    return select_engine_meter(os.environ.get(ENV_VAR, "auto"))[0]


def new_engine_meter(proc_root: str, walk_seconds: float = FD_WALK_SECONDS, walk_share: float | None = WALK_SHARE,
                     *, dev_root: str | None = None) -> UseMeter:
    """An engine meter of the chosen backend (chosen on the first call)."""
    return _chosen()(proc_root, walk_seconds, walk_share, dev_root=dev_root)
