"""One-value sysfs files read in one C call (native/sysints.c): what `sysfs_ints.PyIntFiles`/`PyTextFiles` give."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from .._sysmon_cffi import ffi, lib  # ImportError when the extension was not built

_INT, _DEFER, _PAGE = lib.SI_INT, lib.SI_DEFER, lib.SI_PAGE  # AttributeError from an extension built before it
_NO_MEMORY = int(ffi.cast("size_t", -1))


def _open(paths: Sequence[str], recheck_every: int) -> Any:
    names = [ffi.new("char[]", os.fsencode(path)) for path in paths]
    files = lib.si_open(ffi.new("char *[]", names), len(paths), recheck_every)
    if files == ffi.NULL:
        raise MemoryError("si_open")
    return ffi.gc(files, lib.si_close)


class CffiIntFiles:
    """`PyIntFiles` in one call: its descriptors kept in C; text C leaves to int() is read again here."""

    def __init__(self, paths: Sequence[str], recheck_every: int = 1) -> None:
        self.size = size = len(paths)
        self._files = _open(paths, recheck_every)
        self._want = ffi.new("uint8_t[]", size)
        self._values, self._states = ffi.new("int64_t[]", size), ffi.new("uint8_t[]", size)
        self._wanted: list[bool] = []

    def read(self, want: Sequence[bool]) -> list[int | None]:
        if len(want) != self.size:  # first: the flags kept stay those last copied to C
            raise ValueError(f"{len(want)} flags for {self.size} files")
        if want != self._wanted:  # which cards sleep changes seldom: the flags are copied only then
            self._wanted = list(want)
            ffi.memmove(self._want, bytes(bool(w) for w in want), self.size)
        irregular = lib.si_read(self._files, self._want, self._values, self._states)
        values: list[int | None] = ffi.unpack(self._values, self.size)
        if irregular:
            for i, state in enumerate(ffi.unpack(self._states, self.size)):
                if state == _DEFER:
                    values[i] = self._deferred(i)
                elif state != _INT:
                    values[i] = None
        return values

    def _deferred(self, i: int) -> int | None:
        """int() of a file C just read and left to Python (its descriptor is open)."""
        try:
            return int(os.pread(lib.si_fd(self._files, i), _PAGE, 0))
        except (OSError, ValueError):
            return None


class CffiTextFiles:
    """`PyTextFiles` in one call: C tells which texts changed, and only those are decoded again."""

    def __init__(self, paths: Sequence[str], recheck_every: int = 1) -> None:
        self.size = len(paths)
        self._files = _open(paths, recheck_every)
        self._changed = ffi.new("uint8_t[]", self.size)
        self._length = ffi.new("size_t *")
        self._texts: list[str | None] = [None] * self.size

    def read(self) -> list[str | None]:
        changed = lib.si_read_text(self._files, self._changed)
        if changed == _NO_MEMORY:
            raise MemoryError("si_read_text")
        if changed:  # a new list: the caller may keep the last one to tell that nothing changed
            self._texts = texts = list(self._texts)
            for i, moved in enumerate(ffi.unpack(self._changed, self.size)):
                if moved:
                    text = lib.si_text(self._files, i, self._length)
                    texts[i] = None if text == ffi.NULL else ffi.unpack(text, self._length[0]).decode(
                        "utf-8", "replace")
        return self._texts
