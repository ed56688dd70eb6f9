"""One-value sysfs files read as integers each tick through kept descriptors: in one C call where built."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Protocol

from .._sysfs import KeptFile
from ..hotpath import ENV_VAR


class IntFiles(Protocol):
    """Files fixed at creation, read together: the value of file i where `want[i]`, else None."""

    def read(self, want: Sequence[bool]) -> list[int | None]: ...


class PyIntFiles:
    """Each file as `KeptFile.read_int` reads it (None: skipped, unreadable or not an integer): the C reader's twin."""

    def __init__(self, paths: Sequence[str], recheck_every: int = 1) -> None:
        self._files = [KeptFile(path, recheck_every=recheck_every) for path in paths]

    def read(self, want: Sequence[bool]) -> list[int | None]:
        return [kept.read_int() if wanted else None for kept, wanted in zip(self._files, want, strict=True)]


_IntFilesFactory = Callable[[Sequence[str], int], IntFiles]


def select_int_files(mode: str) -> tuple[_IntFilesFactory, str]:
    """The factory of integer-file readers for one TRACKLAB_SYSMON_NATIVE value and its backend name: the C reader
    (native/sysints.c) where the helper was built, else `PyIntFiles`."""
    from .drm_clients import _native_or_python  # the selection every C piece of the collectors shares

    def load() -> _IntFilesFactory:
        from .sysfs_ints_cffi import CffiIntFiles
        return CffiIntFiles

    return _native_or_python(mode, "sysfs integer reader", load, PyIntFiles)


_new_int_files: _IntFilesFactory | None = None


def new_int_files(paths: Sequence[str], recheck_every: int = 1) -> IntFiles:
    """A reader of `paths` of the chosen backend (chosen on the first call)."""
    global _new_int_files
    if _new_int_files is None:
        _new_int_files = select_int_files(os.environ.get(ENV_VAR, "auto"))[0]
    return _new_int_files(paths, recheck_every)
