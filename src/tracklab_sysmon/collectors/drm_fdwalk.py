"""The fds of every process that are DRM devices, by one `readlink` per fd (the Python twin of native/drmfds.c).

A leaf: imports nothing of the package but `_sysfs`. Processes and fds are named by canonical decimals
(ASCII digits, no leading zero, at most 18 digits), as a live /proc names them; other entries are skipped.
"""

from __future__ import annotations

import os

from .._sysfs import list_dir

_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)  # absent on Windows
_MAX_DIGITS = 18
DRI = "/dev/dri/"


def canonical(name: str) -> bool:
    """A name the C walk reads too: ASCII digits without a leading zero, at most 18 of them."""
    return (name.isascii() and name.isdigit() and len(name) <= _MAX_DIGITS
            and (name[0] != "0" or name == "0"))


def drm_fds(proc_root: str) -> list[tuple[int, str]]:
    """(pid, fd) of every DRM fd under proc_root: processes in `list_dir`'s order (names sorted as text), the fds
    of each in numeric order (a captured tree's fdinfo names sorted as text)."""
    return [(int(entry), fd) for entry in list_dir(proc_root) if canonical(entry)
            for fd in process_fds(f"{proc_root}/{entry}/")]


def process_fds(base: str) -> list[str]:
    """The fds of one process that are DRM devices: one readlink each spares reading every socket's fdinfo.

    Without a listable `fd/` folder (a captured tree) every fdinfo is a candidate and the parser tells them apart.
    """
    try:
        folder = os.open(base + "fd", _DIRECTORY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return list_dir(base + "fdinfo")
    try:
        return [fd for fd in sorted(os.listdir(folder), key=_numeric) if canonical(fd) and _links_to_drm(fd, folder)]
    except OSError:
        return []
    finally:
        os.close(folder)


def _numeric(name: str) -> tuple[int, str]:
    """fds in numeric order (names that are not canonical are dropped later: any order for them)."""
    return (len(name), name)


def _links_to_drm(fd: str, folder: int) -> bool:
    try:
        return os.readlink(fd, dir_fd=folder).startswith(DRI)
    except OSError:  # closed since the listing
        return False
