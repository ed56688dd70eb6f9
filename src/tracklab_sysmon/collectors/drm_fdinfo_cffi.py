"""DRM fdinfo parsed by the C helper (native/fdinfo.c): the records `drm_fdinfo.parse_fdinfo` gives, or its answer."""

from __future__ import annotations

import struct

from .._sysmon_cffi import ffi, lib  # ImportError when the extension was not built
from .drm_fdinfo import DrmClient, EngineTime, RegionMemory
from .drm_fdinfo import parse_fdinfo as parse_in_python

_CLIENT, _NONE = lib.FI_CLIENT, lib.FI_NONE  # AttributeError from an extension built before the parser existed
_new = tuple.__new__

# The output struct read with `struct` in native layout: one unpack per array instead of a cffi attribute
# access per field (50 of them for an xe client, a third of its parse). Checked against cffi's layout below.
_HEAD = struct.Struct("@IIIIQII")  # driver_at, driver_len, pdev_at, pdev_len, client_id, engines_count, regions_count
_ENGINE = struct.Struct("@IIQQQB0Q")  # at, len, busy, total, capacity, has_total (padded to the struct's size)
_REGION = struct.Struct("@IIQ")  # at, len, bytes
_ENGINES_AT, _REGIONS_AT = ffi.offsetof("fi_client", "engines"), ffi.offsetof("fi_client", "regions")
if (_HEAD.size, _ENGINE.size, _REGION.size, _ENGINES_AT + lib.FI_MAX_ITEMS * _ENGINE.size) != (
        ffi.offsetof("fi_client", "engines"), ffi.sizeof("fi_engine"), ffi.sizeof("fi_region"), _REGIONS_AT):
    raise ImportError("fi_client's layout is not the one drm_fdinfo_cffi unpacks")  # the Python parser serves


class CffiFdinfoParser:
    """`parse_fdinfo` in one C call; text C does not decide (not canonical ASCII, huge numbers) goes to Python.

    One parse at a time per parser (its output struct is reused): each collector keeps its own."""

    def __init__(self) -> None:
        self._out = ffi.new("fi_client *")
        self._view = memoryview(ffi.buffer(self._out))

    def __call__(self, text: str) -> DrmClient | None:
        data = text.encode("utf-8", "surrogatepass")
        got = lib.fi_parse(data, len(data), self._out)
        if got == _NONE:
            return None
        if got != _CLIENT:
            return parse_in_python(text)
        # Canonical text is ASCII: byte offsets are str offsets.
        view = self._view
        driver_at, driver_len, pdev_at, pdev_len, client_id, engines, regions = _HEAD.unpack_from(view)
        return _new(DrmClient, (
            text[driver_at:driver_at + driver_len], text[pdev_at:pdev_at + pdev_len] or None, client_id,
            tuple([_new(EngineTime, (text[at:at + n], busy, total if has_total else None, capacity))
                   for at, n, busy, total, capacity, has_total
                   in _ENGINE.iter_unpack(view[_ENGINES_AT:_ENGINES_AT + engines * _ENGINE.size])]),
            tuple([_new(RegionMemory, (text[at:at + n], size))
                   for at, n, size in _REGION.iter_unpack(view[_REGIONS_AT:_REGIONS_AT + regions * _REGION.size])]),
        ))
