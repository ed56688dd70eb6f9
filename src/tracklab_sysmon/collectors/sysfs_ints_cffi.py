"""Kept files read in one C call (native/sysints.c): what `sysfs_ints.PyIntFiles`/`PyTextFiles`/`PyKeptTexts` give."""

from __future__ import annotations

import os
from collections.abc import Hashable, KeysView, Mapping, Sequence
from typing import Any, Generic, TypeVar

from .._sysmon_cffi import ffi, lib  # ImportError when the extension was not built

_INT, _DEFER, _PAGE = lib.SI_INT, lib.SI_DEFER, lib.SI_PAGE  # AttributeError from an extension built before it
_UNREADABLE = getattr(lib, "SI_UNREADABLE", None)  # None: built before the kept texts (`kept_texts` refuses)
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


K = TypeVar("K", bound=Hashable)


def kept_texts() -> type[CffiKeptTexts[Any]]:
    """`CffiKeptTexts`; AttributeError where the extension was built before si_attr_read (the integer and text
    readers of this module still serve)."""
    if _UNREADABLE is None or not hasattr(lib, "si_attr_read"):
        raise AttributeError("si_attr_read: the C helper was built before the kept texts")
    return CffiKeptTexts


class CffiKeptTexts(Generic[K]):
    """`PyKeptTexts` in one call: each member's descriptor and last bytes kept in C, which tells the members whose
    bytes changed; only those are decoded. A text is the file's last bytes in C however they were read (`array`
    lets C read the members itself: intel_engines_cffi)."""

    def __init__(self) -> None:
        self._files: dict[K, Any] = {}  # key -> its si_attr (closed when released or collected)
        self._length = ffi.new("size_t *")
        self._page: Any = None  # si_attr_read's SI_CHUNK bytes, made on the first read
        self._arrays()

    def _arrays(self) -> None:
        """The members as C reads them: rebuilt when they change (a walk, a client gone), not per read."""
        self._order = list(self._files.items())
        self._array = ffi.new("si_attr *[]", [file for _, file in self._order])
        self._states = ffi.new("uint8_t[]", len(self._order))

    def members(self) -> KeysView[K]:
        return self._files.keys()

    @property
    def array(self) -> tuple[Any, list[tuple[K, Any]]]:
        """The members' `si_attr *[]` as C reads them and (key, si_attr) in that order: a new array whenever the
        members change (its files stay open while it is the current one)."""
        return self._array, self._order

    def keep(self, paths: Mapping[K, str]) -> None:
        old, files = self._files, {}
        try:
            for key, path in paths.items():
                if key in old:
                    files[key] = old.pop(key)
                    continue
                file = lib.si_attr_open(os.fsencode(path))
                if file == ffi.NULL:
                    raise MemoryError("si_attr_open")
                files[key] = ffi.gc(file, lib.si_attr_close)
        finally:  # without memory part way: the members kept so far stay, the rest are closed
            self._files = files
            self._arrays()  # before the releases: the array never names a closed file
            for gone in old.values():
                ffi.release(gone)

    def drop(self, key: K) -> None:
        gone = self._files.pop(key, None)
        if gone is not None:
            self._arrays()  # before the release: the array never names a closed file
            ffi.release(gone)

    def read(self) -> dict[K, str | None]:
        order, states, page = self._order, self._states, self._page
        if page is None:
            page = self._page = ffi.new("char[]", lib.SI_CHUNK)
        count = lib.si_attr_read(self._array, len(order), states, page)
        if not count:
            return {}
        if count == _NO_MEMORY:
            raise MemoryError("si_attr_read")  # C forgot every text: the next read tells each member anew
        changed: dict[K, str | None] = {}
        length = self._length
        for (key, file), state in zip(order, ffi.unpack(states, len(order)), strict=True):
            if not state:
                continue
            if state == _UNREADABLE:
                changed[key] = None
            else:
                data = lib.si_attr_text(file, length)
                changed[key] = ffi.unpack(data, length[0]).decode("utf-8", "replace")
        return changed

    def text(self, key: K) -> str | None:
        file = self._files.get(key)
        data = lib.si_attr_text(file, self._length) if file is not None else ffi.NULL
        return None if data == ffi.NULL else ffi.unpack(data, self._length[0]).decode("utf-8", "replace")
