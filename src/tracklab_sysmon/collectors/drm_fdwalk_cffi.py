"""The DRM fd walk in one C call (native/drmfds.c): the pairs `drm_fdwalk.drm_fds` gives, in its order."""

from __future__ import annotations

import os

from .._sysfs import list_dir
from .._sysmon_cffi import ffi, lib  # ImportError when the extension was not built

_NO_LINKS = lib.DF_NO_LINKS  # AttributeError from an extension built before the walk existed


class CffiFdWalker:
    """`drm_fds` as a callable; the pair buffer is kept between walks and grown when a walk finds more."""

    def __init__(self, capacity: int = 64) -> None:
        self._capacity = capacity
        self._pairs = ffi.new("int64_t[]", 2 * capacity)

    def __call__(self, proc_root: str) -> list[tuple[int, str]]:
        root = os.fsencode(proc_root)
        found = lib.df_walk(root, self._pairs, self._capacity)
        while found > self._capacity:  # more than fit: grow and walk again
            self._capacity = found * 2
            self._pairs = ffi.new("int64_t[]", 2 * self._capacity)
            found = lib.df_walk(root, self._pairs, self._capacity)
        if found <= 0:
            return []
        flat = ffi.unpack(self._pairs, 2 * found)
        pairs = sorted(zip(flat[0::2], flat[1::2], strict=True), key=lambda pair: (str(pair[0]), pair[1]))
        return [(pid, fd) for pid, number in pairs
                for fd in ([str(number)] if number != _NO_LINKS else list_dir(f"{proc_root}/{pid}/fdinfo"))]
