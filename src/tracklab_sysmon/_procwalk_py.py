"""The Python process walk: every /proc/PID/stat under proc_root, parsed, in listing order (the C walk's twin)."""

from __future__ import annotations

import os

from ._procfs_pid import parse_pid_stat
from .errors import ParseError, Unavailable
from .model import PidStat

READ_BYTES = 16384  # status is ~1.5 KiB, stat ~ 300 B; a command line is cut to MAX_CMDLINE anyway


def read_head(path: str) -> bytes:
    """The first READ_BYTES of `path`, in one read (/proc files hand a whole record to one read)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, READ_BYTES)
    finally:
        os.close(fd)


def no_process_list(root: str) -> Unavailable:
    return Unavailable(f"no process list without {root} (Linux only)")


def read_stat(root: str, entry: str) -> PidStat | None:
    """The stat of `root/entry`, or None where it cannot be read or parsed (the process has exited)."""
    try:
        return parse_pid_stat(read_head(f"{root}/{entry}/stat").decode("utf-8", "replace"))
    except (OSError, ParseError):
        return None


class PyProcWalker:
    """Lists `proc_root` and reads the stat of every all-digit entry; skips those that vanish meanwhile."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root

    def stats(self) -> list[PidStat]:
        """One record per process, in the order of the listing; `Unavailable` without `proc_root`."""
        root = self.proc_root
        try:
            entries = os.listdir(root)
        except FileNotFoundError:
            raise no_process_list(root) from None
        found = []
        for entry in entries:  # the loop is the Python backend's whole cost on a busy host: kept inline
            if not entry.isdigit():
                continue
            try:
                found.append(parse_pid_stat(read_head(f"{root}/{entry}/stat").decode("utf-8", "replace")))
            except (OSError, ParseError):  # exited between the listing and the read
                continue
        return found

    def close(self) -> None:
        """Nothing is kept open."""
