"""DRM fdinfo parsed by the C helper (native/fdinfo.c): the records `drm_fdinfo.parse_fdinfo` gives, or its answer."""

from __future__ import annotations

from .._sysmon_cffi import ffi, lib  # ImportError when the extension was not built
from .drm_fdinfo import DrmClient, EngineTime, RegionMemory
from .drm_fdinfo import parse_fdinfo as parse_in_python

_CLIENT, _NONE = lib.FI_CLIENT, lib.FI_NONE  # AttributeError from an extension built before the parser existed
_new = tuple.__new__


class CffiFdinfoParser:
    """`parse_fdinfo` in one C call; text C does not decide (not canonical ASCII, huge numbers) goes to Python.

    One parse at a time per parser (its output struct is reused): each collector keeps its own."""

    def __init__(self) -> None:
        self._out = ffi.new("fi_client *")

    def __call__(self, text: str) -> DrmClient | None:
        data = text.encode("utf-8", "surrogatepass")
        out = self._out
        got = lib.fi_parse(data, len(data), out)
        if got == _NONE:
            return None
        if got != _CLIENT:
            return parse_in_python(text)
        # Canonical text is ASCII: byte offsets are str offsets.
        engines = tuple(_new(EngineTime, (text[e.at:e.at + e.len], e.busy, e.total if e.has_total else None,
                                          e.capacity))
                        for e in out.engines[0:out.engines_count])
        regions = tuple(_new(RegionMemory, (text[r.at:r.at + r.len], r.bytes))
                        for r in out.regions[0:out.regions_count])
        pdev = text[out.pdev_at:out.pdev_at + out.pdev_len] or None
        return _new(DrmClient, (text[out.driver_at:out.driver_at + out.driver_len], pdev, out.client_id, engines,
                                regions))
