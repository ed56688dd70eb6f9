"""One-value sysfs files read as integers in one C call (native/sysints.c): the values `sysfs_ints.PyIntFiles` gives."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .._sysmon_cffi import ffi, lib  # ImportError when the extension was not built

_INT, _DEFER, _PAGE = lib.SI_INT, lib.SI_DEFER, lib.SI_PAGE  # AttributeError from an extension built before it


class CffiIntFiles:
    """`PyIntFiles` in one call: its descriptors kept in C; text C leaves to int() is read again here."""

    def __init__(self, paths: Sequence[str], recheck_every: int = 1) -> None:
        self.size = size = len(paths)
        names = [ffi.new("char[]", os.fsencode(path)) for path in paths]
        self._files = ffi.gc(lib.si_open(ffi.new("char *[]", names), size, recheck_every), lib.si_close)
        if self._files == ffi.NULL:
            raise MemoryError("si_open")
        self._want = ffi.new("uint8_t[]", size)
        self._values, self._states = ffi.new("int64_t[]", size), ffi.new("uint8_t[]", size)
        self._wanted: list[bool] = []

    def read(self, want: Sequence[bool]) -> list[int | None]:
        if want != self._wanted:  # which cards sleep changes seldom: the flags are copied only then
            self._wanted = list(want)
            ffi.memmove(self._want, bytes(bool(w) for w in want), self.size)
        if len(want) != self.size:
            raise ValueError(f"{len(want)} flags for {self.size} files")
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
