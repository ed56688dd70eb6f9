"""Fault injection at the file-reading boundary, replaced and deleted kept files, and FIFOs: both backends."""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
from typing import Any

import pytest
from conftest import FIXTURES, outcome
from test_hotpath import backend_class

from tracklab_sysmon import _procfs as procfs
from tracklab_sysmon._sysfs import KeptAttribute, KeptFile, MovingAttribute, read_text
from tracklab_sysmon.collectors.cpu import CpuCollector
from tracklab_sysmon.collectors.disk import DiskCollector
from tracklab_sysmon.collectors.memory import MemoryCollector
from tracklab_sysmon.collectors.network import NetworkCollector
from tracklab_sysmon.sampler import Sampler

ERRNOS = ("EIO", "ENODEV", "EACCES", "EBUSY", "EAGAIN")
FILE_OF = {"cpu": "stat", "memory": "meminfo", "disk": "diskstats", "network": "net/dev"}


def faulty(base: type) -> type:
    """`base` (either backend) whose reads of the files in `faults` fail with that errno, at `_read`."""

    class Faulty(base):
        faults: dict[str, int]

        def _read(self, which: Any) -> Any:
            name = which if isinstance(which, str) else procfs_name(which)
            code = self.faults.get(name)
            if code is not None:
                raise OSError(code, os.strerror(code), os.path.join(self.proc_root, name))
            return super()._read(which)

    Faulty.faults = {}
    return Faulty


def procfs_name(which: int) -> str:
    from tracklab_sysmon import _hotpath_cffi

    return _hotpath_cffi._PATHS[which]


@pytest.fixture(params=["cffi", "python"])
def reader_class(request: pytest.FixtureRequest) -> type:
    return faulty(backend_class(request.param))


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copytree(FIXTURES / "workstation", tmp_path / "ws", symlinks=True)
    return tmp_path / "ws"


def sampler_over(root: pathlib.Path, reader: Any) -> Sampler:
    proc, sys_ = str(root / "proc"), str(root / "sys")
    collectors = [CpuCollector(reader, proc_root=proc, sys_root=sys_), MemoryCollector(reader),
                  DiskCollector(reader, proc_root=proc, sys_root=sys_, statvfs=None), NetworkCollector(reader)]
    return Sampler(collectors, node_id="n")


@pytest.mark.parametrize("name", ERRNOS)
@pytest.mark.parametrize("collector", sorted(FILE_OF))
async def test_a_read_error_fails_only_its_collector_says_the_errno_and_recovers(
    root: pathlib.Path, reader_class: Any, collector: str, name: str
) -> None:
    """EIO, ENODEV, EACCES, EBUSY or EAGAIN on one kernel file: its collector is `error` naming the errno
    and the file, the others stay `ok`, and it is `ok` again once the fault clears."""
    reader = reader_class(str(root / "proc"))
    sampler = sampler_over(root, reader)
    await sampler.tick()
    code = getattr(errno, name)
    reader.faults[FILE_OF[collector]] = code
    snapshot = await sampler.tick()
    status = sampler.status[collector]
    path = os.path.join(root / "proc", FILE_OF[collector])
    reason = f"{name}: {os.strerror(code)} ({path})"
    if collector == "network":  # net/snmp still reads: connections are kept, the rates are lost
        assert (status.state, status.last_error) == ("degraded", reason)
        assert snapshot.network is not None and snapshot.network.bytes_in is None
        assert snapshot.network.connections == 17  # CurrEstab in the tree
    else:
        assert (status.state, status.last_error) == ("error", reason)
        assert getattr(snapshot, collector) is None
    assert {n: s.state for n, s in sampler.status.items() if n != collector} == dict.fromkeys(
        set(FILE_OF) - {collector}, "ok")
    reader.faults.clear()
    snapshot = await sampler.tick()
    failures = 0 if collector == "network" else 1  # a degraded tick is not a failure
    assert (status.state, status.last_error, status.failures) == ("ok", None, failures)
    assert getattr(snapshot, collector) is not None


# --- stale captured trees: a kept descriptor follows its path ---------------------------------


def replace(path: pathlib.Path, text: str) -> None:
    """Write `text` to a new file and rename it over `path`: a new inode under the same name."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    os.rename(fresh, path)


def test_kept_file_rereads_a_file_renamed_over_and_reports_a_deleted_one(tmp_path: pathlib.Path) -> None:
    """A KeptFile sees the new file after a rename over its path, None once deleted, and the file again."""
    path = tmp_path / "temp1_input"
    path.write_text("41000\n")
    kept = KeptFile(str(path))
    assert kept.read() == "41000\n"
    replace(path, "52000\n")
    assert kept.read() == "52000\n"
    path.unlink()
    assert kept.read() is None
    path.write_text("63000\n")
    assert kept.read() == "63000\n"


def test_kept_file_reads_an_integer_as_int_does_and_none_for_anything_else(tmp_path: pathlib.Path) -> None:
    """read_int: the value with int()'s spaces, None for text that is not one integer, a deleted file, a FIFO;
    a file renamed over is read anew (the same descriptor rules as read)."""
    path = tmp_path / "energy1_input"
    path.write_text(" 123456789012\n")
    kept = KeptFile(str(path))
    assert kept.read_int() == 123456789012
    path.write_text("-7\n")
    assert kept.read_int() == -7
    for text in ("", "12 34\n", "0x10\n", "1.5\n", "active\n"):
        path.write_text(text)
        assert kept.read_int() is None, text
    replace(path, "52000\n")
    assert kept.read_int() == 52000
    path.unlink()
    assert kept.read_int() is None
    os.mkfifo(path)
    assert kept.read_int() is None


def test_kept_attribute_rereads_a_file_renamed_over_and_reports_a_deleted_one(tmp_path: pathlib.Path) -> None:
    """A KeptAttribute (checked by fstat, not by path) also sees the new file after a rename over its path,
    None once deleted, and the file again once it is back."""
    path = tmp_path / "port_xmit_data"
    path.write_text("41000\n")
    kept = KeptAttribute(str(path))
    assert kept.read() == "41000\n"
    replace(path, "52000\n")
    assert kept.read() == "52000\n"
    path.unlink()
    assert kept.read() is None
    path.write_text("63000\n")
    assert kept.read() == "63000\n"


def test_moving_attribute_looks_at_its_file_only_when_a_read_repeats(tmp_path: pathlib.Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A MovingAttribute fstat()s its kept descriptor only after a read that repeats the last one or is longer than
    COMPARED bytes: a counter that moved costs no fstat, a file renamed over (its old text read again) or deleted is
    seen on that very read, and a write through the old file after a rename is read until it repeats."""
    path = tmp_path / "port_xmit_data"
    path.write_text("41000\n")
    kept = MovingAttribute(str(path))
    assert kept.read_page_or_raise() == b"41000\n"
    looks: list[int] = []
    real = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: looks.append(fd) or real(fd))
    path.write_text("42000\n")  # in place: it moved
    assert (kept.read_page(), len(looks)) == (b"42000\n", 0)
    assert (kept.read_page(), len(looks)) == (b"42000\n", 1)  # repeated: looked at, the same file
    replace(path, "52000\n")  # the old file still reads 42000: looked at, reopened (open's own fstat), read anew
    assert (kept.read_page(), len(looks)) == (b"52000\n", 3)
    with open(path, "r+") as old:
        replace(path, "63000\n")
        old.write("70000\n")  # through the file just replaced: it moved, so it is what is read
        old.flush()
        assert (kept.read_page(), len(looks)) == (b"70000\n", 3)
    assert (kept.read_page(), len(looks)) == (b"63000\n", 5)  # repeated: the new file
    long = " " * MovingAttribute.COMPARED + "1\n"
    with open(path, "r+") as old:
        replace(path, "64000\n")
        old.write(long)  # moved, but longer than what is compared: looked at all the same
        old.flush()
        assert (kept.read_page(), len(looks)) == (b"64000\n", 7)
    path.unlink()
    assert (kept.read_page(), len(looks)) == (None, 8)
    with pytest.raises(FileNotFoundError):
        kept.read_page_or_raise()
    path.write_text("71000\n")
    assert kept.read_page() == b"71000\n"


@pytest.mark.parametrize("backend", ["cffi", "python"])
def test_hot_readers_follow_a_renamed_over_meminfo_identically(tmp_path: pathlib.Path, backend: str) -> None:
    """Both backends read a meminfo renamed over the old one, then raise the same error once it is gone."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 1000 kB\nMemAvailable: 400 kB\n")
    reader = backend_class(backend)(str(tmp_path))
    assert reader.meminfo().total == 1000 * 1024
    replace(meminfo, "MemTotal: 2000 kB\nMemAvailable: 500 kB\n")
    assert (reader.meminfo().total, reader.meminfo().available) == (2000 * 1024, 500 * 1024)
    meminfo.unlink()
    assert outcome(reader.meminfo) == ("error", FileNotFoundError,
                                       f"[Errno 2] No such file or directory: '{meminfo}'")
    meminfo.write_text("MemTotal: 3000 kB\n")
    assert reader.meminfo().total == 3000 * 1024


def open_fds_to(target: str) -> int:
    """How many of this process's descriptors point at `target`."""
    fds = os.listdir("/proc/self/fd")
    return sum(1 for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == target)


@pytest.mark.parametrize("backend", ["cffi", "python"])
def test_a_real_read_error_closes_the_kept_descriptor_in_both_backends(tmp_path: pathlib.Path, backend: str) -> None:
    """/proc/self/mem opens as a regular file but pread at 0 fails with EIO: both backends raise the same
    error with the path, and keep no descriptor, so the next read opens the path afresh."""
    (tmp_path / "meminfo").symlink_to("/proc/self/mem")
    mem = os.path.realpath("/proc/self/mem")
    reader = backend_class(backend)(str(tmp_path))
    before = open_fds_to(mem)
    expected = ("error", OSError, f"[Errno {errno.EIO}] Input/output error: '{tmp_path / 'meminfo'}'")
    assert outcome(reader.meminfo) == expected
    assert open_fds_to(mem) == before
    (tmp_path / "meminfo").unlink()
    (tmp_path / "meminfo").write_text("MemTotal: 7 kB\n")
    assert reader.meminfo().total == 7 * 1024


# --- non-regular files: a FIFO neither blocks nor reads as a counter --------------------------


def test_sysfs_readers_refuse_a_fifo_without_blocking(tmp_path: pathlib.Path) -> None:
    """read_text and KeptFile give None for a FIFO at once (a blocking open would hang the test)."""
    fifo = tmp_path / "scaling_cur_freq"
    os.mkfifo(fifo)
    assert read_text(str(fifo)) is None
    assert KeptFile(str(fifo)).read() is None
    with pytest.raises(OSError, match="not a regular file"):
        KeptFile(str(fifo)).read_or_raise()


@pytest.mark.parametrize("backend", ["cffi", "python"])
def test_hot_readers_refuse_a_fifo_with_the_same_error(tmp_path: pathlib.Path, backend: str) -> None:
    """A FIFO in place of /proc/stat is EINVAL "not a regular file" with its path, in both backends."""
    os.mkfifo(tmp_path / "stat")
    reader = backend_class(backend)(str(tmp_path))
    expected = ("error", OSError, f"[Errno {errno.EINVAL}] not a regular file: '{tmp_path / 'stat'}'")
    assert outcome(reader.stat) == expected
    (tmp_path / "stat").unlink()
    (tmp_path / "stat").write_text("cpu 1 2 3 4\n")
    assert reader.stat().total.user == procfs.parse_stat("cpu 1 2 3 4\n", reader._ticks).total.user
