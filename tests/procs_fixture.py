"""Writes fixture /proc trees of processes (stat, status, io, cmdline, cgroup, fd/) for the process-list tests."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

BTIME = 1_700_000_000  # the fixture's boot time, seconds since the epoch
HZ = 100  # the fixture's clock ticks per second
PAGE = 4096


@dataclass
class FakeProcess:
    """What one fixture process says about itself, in the kernel's units."""

    pid: int
    ppid: int = 1
    name: str = "worker"
    utime: int = 0
    stime: int = 0
    threads: int = 1
    start: int = 1000  # clock ticks after boot
    rss_pages: int = 256
    uid: int = 0
    read_bytes: int | None = 0  # None: /proc/PID/io absent (not permitted)
    write_bytes: int = 0
    cmdline: bytes = b"worker\0--flag\0"
    cgroup: str = "0::/system.slice/worker.service\n"
    fds: int | None = 3  # None: no fd/ directory (not permitted)
    state: str = "S"


def stat_line(p: FakeProcess) -> str:
    """A /proc/PID/stat line with 52 fields, as Linux 5.x writes it."""
    fields = [p.state, p.ppid, p.pid, p.pid, 0, -1, 4194560, 100, 0, 0, 0, p.utime, p.stime, 0, 0, 20, 0,
              p.threads, 0, p.start, 123456789, p.rss_pages] + [0] * 28
    return f"{p.pid} ({p.name}) " + " ".join(str(f) for f in fields) + "\n"


def write_process(root: pathlib.Path, p: FakeProcess) -> None:
    d = root / str(p.pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "stat").write_text(stat_line(p))
    (d / "status").write_text(f"Name:\t{p.name}\nUmask:\t0022\nState:\t{p.state}\nPid:\t{p.pid}\n"
                              f"PPid:\t{p.ppid}\nUid:\t{p.uid}\t{p.uid}\t{p.uid}\t{p.uid}\n"
                              f"Gid:\t0\t0\t0\t0\nThreads:\t{p.threads}\n")
    io = d / "io"
    if p.read_bytes is None:
        io.unlink(missing_ok=True)
    else:
        io.write_text(f"rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: {p.read_bytes}\n"
                      f"write_bytes: {p.write_bytes}\ncancelled_write_bytes: 0\n")
    (d / "statm").write_text(f"{p.rss_pages * 4} {p.rss_pages} 100 10 0 {p.rss_pages} 0\n")
    (d / "cmdline").write_bytes(p.cmdline)
    (d / "cgroup").write_text(p.cgroup)
    if p.fds is not None:
        (d / "fd").mkdir(exist_ok=True)
        for fd in range(p.fds):
            (d / "fd" / str(fd)).touch()


def write_tree(root: pathlib.Path, processes: list[FakeProcess]) -> pathlib.Path:
    """A proc root holding `processes` and a /proc/stat with btime; returns `root`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text(f"cpu  1 2 3 4 5 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nbtime {BTIME}\nprocesses 9\n")
    for p in processes:
        write_process(root, p)
    return root
