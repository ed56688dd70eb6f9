"""InfiniBand ports' counter files read by the C helper (native/ibports.c), one call a read, as the twin does."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Sequence
from typing import Any

from .._sysfs import NOT_REGULAR, KeptAttribute
from .._sysmon_cffi import ffi, lib  # ImportError when the extension was not built
from .infiniband_ports import PortSpec, PortsTick, Tier, parse_problem, saturated, state_of, too_big

_FILES, _COUNTERS, _TEXT = lib.IB_FILES, lib.IB_COUNTERS, lib.IB_TEXT  # AttributeError: built before this piece
_STATE, _PAGE = lib.IB_STATE, lib.IB_PAGE
_TEXTS_CHANGED, _COUNTERS_CHANGED = lib.IB_TEXTS_CHANGED, lib.IB_COUNTERS_CHANGED


class _Port:
    """One port's C record (paths, kept descriptors, baselines); its descriptors close with it."""

    __slots__ = ("_paths", "cdata", "spec")

    def __init__(self, spec: PortSpec) -> None:
        self.spec = spec
        self._paths = [ffi.new("char[]", os.fsencode(path)) for path in (*spec.data, spec.state)]  # kept alive here
        self.cdata: Any = ffi.new("ib_port *")
        for file, path in zip(self.cdata.file, self._paths, strict=True):
            file.path, file.fd = path, -1
        self.cdata.words = spec.words

    def path(self, index: int) -> str:
        return (*self.spec.data, self.spec.state)[index]

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: lib may already be gone
            lib.ib_files_close(self.cdata.file, _FILES)


class CffiPortsMeter:
    """`PortsMeter` in one C call a tick: the arrays it fills are kept and rebuilt only when the ports change."""

    def __init__(self) -> None:
        self._ports: tuple[_Port, ...] = ()
        self.set_ports(())

    def set_ports(self, ports: Sequence[PortSpec]) -> None:
        old = {p.spec.key: p for p in self._ports}
        self._ports = tuple(old.get(spec.key) or _Port(spec) for spec in ports)
        n = len(self._ports)
        self._array = ffi.new("ib_port *[]", [p.cdata for p in self._ports])
        self._length = ffi.new("int32_t[]", n * _FILES)
        self._text = ffi.new("char[]", n * _FILES * _TEXT)
        self._texts = ffi.buffer(self._text)
        self._values = ffi.new("uint64_t[]", n * _COUNTERS)
        self._rates = ffi.new("double[]", n * _COUNTERS)
        self._status = ffi.new("uint8_t[]", n * _COUNTERS)
        self._state_at = [(p * _FILES + _STATE) * _TEXT for p in range(n)]  # each state's text in self._text

    def read(self, now: float) -> PortsTick:
        size = len(self._ports) * _COUNTERS
        odd = lib.ib_read(self._array, len(self._ports), now, self._length, self._text, self._values, self._rates,
                          self._status)
        lengths: list[int] = ffi.unpack(self._length, len(self._ports) * _FILES)
        texts = self._texts
        states = [state_of(texts[at:at + got]) if 0 <= got <= _TEXT else self._long_state(got, port)
                  for at, got, port in zip(self._state_at, lengths[_STATE::_FILES], self._ports, strict=True)]
        values: list[int | None] = ffi.unpack(self._values, size)
        rates: list[float | None] = ffi.unpack(self._rates, size)
        tick = PortsTick(values, rates, states, [], [])
        if odd:
            self._odd(tick, lengths)
        return tick

    def _odd(self, tick: PortsTick, lengths: list[int]) -> None:
        """Counters not known and rated: None where unknown, with the reasons Python's reads give."""
        for c, status in enumerate(ffi.unpack(self._status, len(tick.values))):
            if status == lib.IB_OK:
                continue
            port = self._ports[c // _COUNTERS]
            index = c % _COUNTERS
            tick.rates[c] = None
            if status == lib.IB_SATURATED:
                tick.problems.append(saturated(port.spec.key, index))
                continue
            tick.values[c] = None
            file = c // _COUNTERS * _FILES + index
            if status == lib.IB_UNREADABLE:
                tick.unreadable.append(f"{port.path(index)}: {_error(lengths[file], port.path(index))}")
            elif status == lib.IB_BAD_TEXT:
                got = lengths[file]
                text = self._texts[file * _TEXT:file * _TEXT + got] if got <= _TEXT else _page(port.path(index))
                tick.unreadable.append(parse_problem(port.path(index), text))
            elif status == lib.IB_TOO_BIG:
                tick.problems.append(too_big(port.spec.key, index))

    def _long_state(self, got: int, port: _Port) -> str | None:
        """A state file that did not read (None), or whose text outgrew its slot (never on sysfs): read again."""
        return state_of(_page(port.path(_STATE))) if got > 0 else None


class CffiCounterFiles:
    """`CounterFiles` in one C call: the files' descriptors are kept in C records, closed with this object; the C
    arrays keep the last answer, and its tuples are rebuilt only for what the call says changed."""

    def __init__(self, paths: Sequence[str], texts: Sequence[str] = ()) -> None:
        self._paths = [ffi.new("char[]", os.fsencode(path)) for path in (*texts, *paths)]  # kept alive here
        self._size, self._texts = len(self._paths), len(texts)
        self._files = ffi.new("ib_file[]", [(path, -1) for path in self._paths])
        self._values, self._known = ffi.new("uint64_t[]", len(paths)), ffi.new("uint8_t[]", len(paths))
        self._length, self._text = ffi.new("int32_t[]", len(texts)), ffi.new("char[]", len(texts) * _PAGE)
        self._last: Tier | None = None

    def read_tier(self) -> Tier:
        changed = lib.ib_read_tier(self._files, self._texts, self._size, self._length, self._text, self._values,
                                   self._known)
        last = self._last
        if last is None or changed:
            last = (self._text_tuple() if last is None or changed & _TEXTS_CHANGED else last[0],
                    self._counter_tuple() if last is None or changed & _COUNTERS_CHANGED else last[1])
            self._last = last
        return last

    def _text_tuple(self) -> tuple[bytes | None, ...]:
        return tuple(ffi.unpack(self._text + i * _PAGE, got) if got >= 0 else None
                     for i, got in enumerate(ffi.unpack(self._length, self._texts)))

    def _counter_tuple(self) -> tuple[int | None, ...]:
        values: list[int] = ffi.unpack(self._values, self._size - self._texts)
        known: list[int] = ffi.unpack(self._known, self._size - self._texts)
        return tuple(v if k else None for v, k in zip(values, known, strict=True))

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: lib may already be gone
            lib.ib_files_close(self._files, self._size)


def _error(code: int, path: str) -> OSError:
    """The OSError Python's read of the file would have raised, from the C helper's code for it."""
    if code == lib.IB_NOT_REGULAR:
        return OSError(errno.EINVAL, NOT_REGULAR, path)
    return OSError(-code, os.strerror(-code), path)


def _page(path: str) -> bytes:
    """A file's first page, read again in Python for a text longer than the C helper hands back (never on sysfs)."""
    return KeptAttribute(path).read_page() or b""
