"""One-value sysfs files (integers, short texts) read each tick through kept descriptors: in one C call where built."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from typing import Protocol

from .._sysfs import KeptFile
from ..hotpath import ENV_VAR, native_or_python


class IntFiles(Protocol):
    """Files fixed at creation, read together: the value of file i where `want[i]`, else None."""

    def read(self, want: Sequence[bool]) -> list[int | None]: ...


class TextFiles(Protocol):
    """Files fixed at creation, read together: each one's first page decoded (UTF-8, errors replaced), or None."""

    def read(self) -> list[str | None]: ...


class PyIntFiles:
    """Each file as `KeptFile.read_int` reads it (None: skipped, unreadable or not an integer): the C reader's twin."""

    def __init__(self, paths: Sequence[str], recheck_every: int = 1) -> None:
        self._files = [KeptFile(path, recheck_every=recheck_every) for path in paths]

    def read(self, want: Sequence[bool]) -> list[int | None]:
        return [kept.read_int() if wanted else None for kept, wanted in zip(self._files, want, strict=True)]


class PyTextFiles:
    """Each file's first page as `KeptFile.read_page` reads it, decoded: the C reader's twin."""

    def __init__(self, paths: Sequence[str], recheck_every: int = 1) -> None:
        self._files = [KeptFile(path, recheck_every=recheck_every) for path in paths]

    def read(self) -> list[str | None]:
        return [data.decode("utf-8", "replace") if (data := kept.read_page()) is not None else None
                for kept in self._files]


_Factories = tuple[Callable[[Sequence[str], int], IntFiles], Callable[[Sequence[str], int], TextFiles]]


def select_files(mode: str) -> tuple[_Factories, str]:
    """The integer and text readers' classes for one TRACKLAB_SYSMON_NATIVE value and their backend name: the C
    readers (native/sysints.c) where the helper was built, else `PyIntFiles` and `PyTextFiles`."""

    def load() -> _Factories:
        from .sysfs_ints_cffi import CffiIntFiles, CffiTextFiles
        return CffiIntFiles, CffiTextFiles

    return native_or_python(mode, "sysfs file reader", load, (PyIntFiles, PyTextFiles))


@functools.cache
def _chosen() -> _Factories:
    return select_files(os.environ.get(ENV_VAR, "auto"))[0]


def new_int_files(paths: Sequence[str], recheck_every: int = 1) -> IntFiles:
    """An integer reader of `paths` of the chosen backend (chosen on the first call)."""
    return _chosen()[0](paths, recheck_every)


def new_text_files(paths: Sequence[str], recheck_every: int = 1) -> TextFiles:
    """A text reader of `paths` of the chosen backend (chosen on the first call)."""
    return _chosen()[1](paths, recheck_every)
