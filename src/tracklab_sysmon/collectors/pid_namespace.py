"""Translate pids of the procfs under `proc_root` into the service's own pid namespace via `NSpid` lines."""

from __future__ import annotations

import os

from .._sysfs import read_text

INIT_PID_NAMESPACE = "pid:[4026531836]"  # PROC_PID_INIT_INO: the host's (initial) pid namespace


def nspids(proc_root: str, pid: int | str) -> tuple[int, ...] | None:
    """The `NSpid` entries of `proc_root/PID/status`, outermost first; None when the process is not visible."""
    text = read_text(os.path.join(proc_root, str(pid), "status"))
    return parse_nspid(text) if text is not None else None


def parse_nspid(status: str) -> tuple[int, ...] | None:
    """The pids of the `NSpid:` line of a /proc/PID/status text; None without one (kernels before 4.1)."""
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            fields = line.split()[1:]
            if not fields or not all(f.isascii() and f.isdigit() for f in fields):
                return None
            return tuple(int(f) for f in fields)
    return None


class PidTranslator:
    """Maps a pid of `proc_root`'s namespace to the pid the same process has in the service's namespace.

    `proc_root/self` is the service itself: its NSpid has one entry per level from proc_root's namespace
    down to the service's, so the service sits `depth` levels below, and another process's pid in the
    service's namespace is its NSpid entry at that depth. With the service at proc_root's level (a host
    service, or a container reading its own /proc) the pid is unchanged. A process above the service, or
    in a sibling namespace at the service's depth, has no pid the service could name: None.
    """

    def __init__(self, proc_root: str) -> None:
        self.proc_root = proc_root
        own = nspids(proc_root, "self")
        self.depth = len(own) - 1 if own else 0
        self._own_namespace = _namespace(proc_root, "self")

    def host_view(self) -> bool:
        """False when proc_root is known to show a namespace other than the host's (NVML's pids do not apply)."""
        init = _namespace(self.proc_root, "1")
        return init is None or init == INIT_PID_NAMESPACE

    def to_service(self, pid: int) -> int | None:
        """The pid in the service's namespace, or None when the process is not visible there."""
        if self.depth == 0:
            return pid if os.path.isdir(os.path.join(self.proc_root, str(pid))) else None
        levels = nspids(self.proc_root, pid)
        if levels is None or len(levels) <= self.depth:
            return None
        if len(levels) == self.depth + 1 and self._own_namespace is not None:
            theirs = _namespace(self.proc_root, str(pid))
            if theirs is not None and theirs != self._own_namespace:
                return None  # a sibling container at the service's depth: its pid means another process here
        return levels[self.depth]


def _namespace(proc_root: str, pid: str) -> str | None:
    try:
        return os.readlink(os.path.join(proc_root, pid, "ns", "pid"))
    except OSError:
        return None
