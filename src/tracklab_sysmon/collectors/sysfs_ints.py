"""Files read each tick through kept descriptors, in one C call where built: one-value sysfs files (integers, short
texts) and kept texts told only when they changed (a DRM client's fdinfo)."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Hashable, KeysView, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from .._sysfs import KeptFile, MovingFile, MovingText
from ..hotpath import ENV_VAR, native_or_python

# recheck_every: each file read as MovingFile reads it (its path stat()ed only after a read that failed or repeats), for
# counters that move every read (RAPL's energy_uj); native/sysints.h SI_MOVING.
MOVING = 0


def _kept(path: str, recheck_every: int) -> KeptFile:
    """A reader's file as `recheck_every` asks: checked every so many reads, or MovingFile's rule (MOVING)."""
    return MovingFile(path) if recheck_every == MOVING else KeptFile(path, recheck_every=recheck_every)


class IntFiles(Protocol):
    """Files fixed at creation, read together: the value of file i where `want[i]`, else None."""

    def read(self, want: Sequence[bool]) -> list[int | None]: ...


class TextFiles(Protocol):
    """Files fixed at creation, read together: each one's first page decoded (UTF-8, errors replaced), or None."""

    def read(self) -> list[str | None]: ...


K = TypeVar("K", bound=Hashable)


class KeptTexts(Protocol[K]):
    """Files read together as `MovingText.read_bytes` reads each (one pread of 64 KiB; the descriptor fstat()ed only
    when that read failed or repeats the last one, and reopened once it has no link left), kept by key in the order
    they came: a read tells only those whose bytes changed."""

    def members(self) -> KeysView[K]:
        """The members, in the order they were kept."""
        ...

    def keep(self, paths: Mapping[K, str]) -> None:
        """These members from now on, in this order: a key kept on keeps its descriptor and last text (its path is
        the one it had); the others are closed."""
        ...

    def drop(self, key: K) -> None:
        """Closes a member (nothing for a key that is none)."""
        ...

    def read(self) -> dict[K, str | None]:
        """Reads every member: those whose bytes differ from their last read (every one on its first read, or
        after one that failed) with their text, decoded (UTF-8, errors replaced); None for each that could not
        be read. {} while nothing changed."""
        ...

    def text(self, key: K) -> str | None:
        """The member's text as last read; None before a read, after one that failed, or for no member."""
        ...


class PyKeptTexts(Generic[K]):
    """`KeptTexts` through one MovingText per member, its bytes compared with the last ones: the C reader's twin."""

    def __init__(self) -> None:
        self._files: dict[K, MovingText] = {}
        self._bytes: dict[K, bytes] = {}  # the last bytes of members whose last read succeeded
        self._texts: dict[K, str] = {}

    def members(self) -> KeysView[K]:
        return self._files.keys()

    def keep(self, paths: Mapping[K, str]) -> None:
        old, self._files = self._files, {}
        for key, path in paths.items():
            self._files[key] = old.pop(key) if key in old else MovingText(path)
        for gone in old.values():
            gone.close()
        self._bytes = {key: data for key, data in self._bytes.items() if key in self._files}
        self._texts = {key: text for key, text in self._texts.items() if key in self._files}

    def drop(self, key: K) -> None:
        gone = self._files.pop(key, None)
        if gone is not None:
            gone.close()
        self._bytes.pop(key, None)
        self._texts.pop(key, None)

    def read(self) -> dict[K, str | None]:
        changed: dict[K, str | None] = {}
        for key, kept in self._files.items():
            data = kept.read_bytes()
            if data is None:
                self._bytes.pop(key, None)
                self._texts.pop(key, None)
                changed[key] = None
            elif data != self._bytes.get(key):
                self._bytes[key] = data
                changed[key] = self._texts[key] = data.decode("utf-8", "replace")
        return changed

    def text(self, key: K) -> str | None:
        return self._texts.get(key)


class PyIntFiles:
    """Each file as `KeptFile.read_int` reads it (None: skipped, unreadable or not an integer): the C reader's twin."""

    def __init__(self, paths: Sequence[str], recheck_every: int = 1) -> None:
        self._files = [_kept(path, recheck_every) for path in paths]

    def read(self, want: Sequence[bool]) -> list[int | None]:
        return [kept.read_int() if wanted else None for kept, wanted in zip(self._files, want, strict=True)]


class PyTextFiles:
    """Each file's first page as `KeptFile.read_page` reads it, decoded: the C reader's twin."""

    def __init__(self, paths: Sequence[str], recheck_every: int = 1) -> None:
        self._files = [_kept(path, recheck_every) for path in paths]

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
    """An integer reader of `paths` of the chosen backend (chosen on the first call); `recheck_every` as KeptFile takes
    it, or MOVING."""
    return _chosen()[0](paths, recheck_every)


def new_text_files(paths: Sequence[str], recheck_every: int = 1) -> TextFiles:
    """A text reader of `paths` of the chosen backend (chosen on the first call)."""
    return _chosen()[1](paths, recheck_every)


def select_kept_texts(mode: str) -> tuple[Callable[[], KeptTexts[Any]], str]:
    """The kept texts' class for one TRACKLAB_SYSMON_NATIVE value and its backend name: the C reader
    (native/sysints.c, si_attr_read) where the helper was built, else `PyKeptTexts`."""

    def load() -> Callable[[], KeptTexts[Any]]:
        from .sysfs_ints_cffi import kept_texts
        return kept_texts()

    return native_or_python(mode, "kept text reader", load, PyKeptTexts)


@functools.cache
def _chosen_kept_texts() -> Callable[[], KeptTexts[Any]]:
    return select_kept_texts(os.environ.get(ENV_VAR, "auto"))[0]


def new_kept_texts() -> KeptTexts[Any]:
    """Kept texts of the chosen backend (chosen on the first call), with no member yet."""
    return _chosen_kept_texts()()
