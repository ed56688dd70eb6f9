"""The process walk: the C walk and the Python walk give the same records, entry by entry, on every fixture tree,
on generated trees and on the live /proc; the backend follows TRACKLAB_SYSMON_NATIVE."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest
from conftest import FIXTURES, native_module, outcome
from procs_fixture import FakeProcess, write_tree

from tracklab_sysmon import hotpath
from tracklab_sysmon._procwalk_py import PyProcWalker
from tracklab_sysmon.collectors.processes import ProcessesCollector
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.model import PidStat

PROCESS_STATS = FIXTURES / "process-stats" / "proc"
# Every fixture tree with PID directories (most hold only the files their own collectors read).
PID_TREES = sorted(root for root in FIXTURES.glob("*/proc")
                   if any(entry.name.isdigit() for entry in root.iterdir()))


@pytest.fixture(scope="module")
def walk():
    """The C walk's module; skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, where it was not built."""
    native_module()
    from tracklab_sysmon import _procwalk_cffi

    return _procwalk_cffi


def both(walk, root: pathlib.Path | str) -> tuple[list[PidStat], list[PidStat]]:
    return walk.CffiProcWalker(str(root)).stats(), PyProcWalker(str(root)).stats()


# ---------------------------------------------------------------- fixture trees


def test_the_pid_trees_include_the_process_stats_tree():
    """The parity test below reads real PID directories: the hand-made odd cases and the other trees' PIDs."""
    assert PROCESS_STATS in PID_TREES and len(PID_TREES) >= 10


@pytest.mark.parametrize("root", PID_TREES, ids=lambda p: p.parent.name)
def test_every_fixture_tree_walks_the_same_in_c_and_python(walk, root):
    """Record by record, in the listing's order: the same processes, the same fields, the same skips."""
    c_records, py_records = both(walk, root)
    assert len(c_records) == len(py_records)
    for c_record, py_record in zip(c_records, py_records, strict=True):
        assert c_record == py_record


# What tests/fixtures/process-stats/README.md lists, as the Python parser reads it (sorted by pid, start).
PROCESS_STATS_RECORDS = sorted([
    PidStat(1, "process_api", "S", 0, 85, 12, 6, 3020),
    PidStat(2, "kthreadd", "S", 0, 0, 1, 6, 0),
    PidStat(12, "arabic", "S", 1, 0, 1, 3009, 256),
    PidStat(880, "(sd-pam)", "S", 879, 3, 1, 2500, 1200),
    PidStat(4242, ") R 1 2 (", "R", 1, 57000, 9, 123456, 65536),
    PidStat(4243, "café ☕", "S", 4242, 7, 1, 123460, 512),
    PidStat(4244, "bad\ufffd\ufffd\ufffd", "S", 4242, 0, 1, 123461, 300),
    PidStat(4245, "", "S", 1, 0, 1, 2000, 0),
    PidStat(4246, "a\nb", "S", 4242, 0, 1, 123462, 10),
    PidStat(4247, "defunct", "Z", 4242, 15, 1, 123463, 0),
    PidStat(4248, "trainer", "R", 4242, 1111111110, 64, 123470, 4194304),
    PidStat(4249, "bigstart", "S", 1, 0, 1, 1234567890123456789, 256),
    PidStat(4250, "nul\0x", "S", 1, 0, 1, 3000, 256),
    PidStat(4251, "plus", "S", 1, 0, 1, 3001, 256),
    PidStat(4252, "cr", "S", 1, 0, 1, 3002, 256),
    PidStat(4257, "long", "S", 1, 11, 1, 3003, 77),
    PidStat(4258, "odd", "S+", 1, 0, 1, 3004, 256),
    PidStat(4259, "spaced", "S", 1, 0, 1, 3005, 256),
    PidStat(4261, "first", "S", 1, 0, 1, 3007, 256),
    PidStat(4261, "second", "S", 1, 0, 1, 3008, 256),
], key=lambda s: (s.pid, s.start_ticks))


@pytest.mark.parametrize("backend", ["c", "python"])
def test_the_process_stats_tree_gives_the_records_its_readme_lists(walk, backend):
    """Odd names, the last-')' rule, the 16 KiB read, and every skipped entry, in each backend alone."""
    walker = walk.CffiProcWalker(str(PROCESS_STATS)) if backend == "c" else PyProcWalker(str(PROCESS_STATS))
    assert sorted(walker.stats(), key=lambda s: (s.pid, s.start_ticks)) == PROCESS_STATS_RECORDS


def test_c_parses_kernel_text_itself_and_hands_python_only_the_odd_entries(walk):
    """Parity must mean something: C decides every entry but the five odd stats and the Unicode-digit name."""
    walker = walk.CffiProcWalker(str(PROCESS_STATS))
    walker.stats()
    handed = sorted((kind, raw[:5]) for kind, raw in walk.deferred_rows(walker))
    assert handed == [("entry", "١٢".encode()[:5]), ("stat", b"+4251"), ("stat", b"4249 "), ("stat", b"4250 "),
                      ("stat", b"4252 "), ("stat", b"4258 ")]


def test_kernel_stat_lines_of_the_fixture_take_the_c_fast_path(walk):
    """The captured lines and the ordinary hand-made ones are parsed by C, never deferred."""
    for entry in ("1", "2", "880", "4242", "4243", "4244", "4246", "4248", "4257"):
        data = (PROCESS_STATS / entry / "stat").read_bytes()[: walk.lib.PW_READ_BYTES]
        assert walk.parse_stat_native(data) is not walk.DEFERRED, entry


def test_buffers_too_small_are_grown_and_the_walk_repeated(walk):
    """One row, one byte of names and of raw text: the walk says what it needs, grows, and walks again."""
    walker = walk.CffiProcWalker(str(PROCESS_STATS))
    walker._buffers.grow(1, 1, 1)
    assert walker.stats() == PyProcWalker(str(PROCESS_STATS)).stats()
    out = walker._buffers.out
    assert (out.capacity, out.names_cap, out.raw_cap) == (20 + 20 // 4, out.names_used * 5 // 4, out.raw_used * 5 // 4)


@pytest.mark.parametrize("count", [1, 1500])
def test_generated_trees_of_any_size_walk_the_same(walk, tmp_path, count):
    """1,500 processes (more than the first buffers hold) and a lone one: equal in both backends."""
    write_tree(tmp_path, [FakeProcess(pid, ppid=pid // 2, name=f"w) ({pid}", utime=pid, threads=1 + pid % 5,
                                      start=pid * 7, rss_pages=pid * 3) for pid in range(1, count + 1)])
    c_records, py_records = both(walk, tmp_path)
    assert c_records == py_records and len(c_records) == count


def test_a_missing_root_or_a_file_as_root_fails_alike(walk, tmp_path):
    """No root: `Unavailable` with the same message; a file as root: the same OSError."""
    (tmp_path / "file").write_text("x")
    for root in (tmp_path / "missing", tmp_path / "file"):
        c_walk, py_walk = outcome(walk.CffiProcWalker(str(root)).stats), outcome(PyProcWalker(str(root)).stats)
        assert c_walk == py_walk and c_walk[0] == "error"
    with pytest.raises(Unavailable, match="no process list without"):
        walk.CffiProcWalker(str(tmp_path / "missing")).stats()


def test_a_root_replaced_between_walks_is_read_anew(walk, tmp_path):
    """The kept directory descriptor follows the path: a tree renamed away and another put there is seen."""
    root = tmp_path / "proc"
    write_tree(root, [FakeProcess(10, name="old")])
    walker = walk.CffiProcWalker(str(root))
    assert [s.name for s in walker.stats()] == ["old"]
    root.rename(tmp_path / "gone")
    write_tree(root, [FakeProcess(11, name="new")])
    assert [s.name for s in walker.stats()] == ["new"]
    walker.close()  # closes the descriptor; the next walk opens it again
    assert [s.pid for s in walker.stats()] == [11]


def test_the_collector_builds_the_same_table_through_either_walk(walk):
    """Two collections of the process-stats tree: the same stats, in the same dict order, and cpu rates."""
    tables = []
    for walker in (walk.CffiProcWalker(str(PROCESS_STATS)), PyProcWalker(str(PROCESS_STATS))):
        collector = ProcessesCollector(str(PROCESS_STATS), clock_ticks=100, page_size=4096, walker=walker)
        collector.collect(1.0)
        tables.append(collector.collect(2.0))
    c_table, py_table = tables
    assert c_table.stats == py_table.stats and c_table.cpu == py_table.cpu
    assert list(c_table.stats) == list(py_table.stats)  # the same dict order: a duplicate pid keeps its first place
    # Two entries say pid 4261: the one listed later wins (the listing's order depends on the filesystem).
    listed = [s.name for s in PyProcWalker(str(PROCESS_STATS)).stats() if s.pid == 4261]
    assert sorted(listed) == ["first", "second"] and c_table.stats[4261].name == listed[-1]


def test_rates_and_rows_agree_through_either_walk(walk, tmp_path):
    """Busy, reused and backwards-counting pids between two collections: the same cpu rates and top rows."""
    first = [FakeProcess(pid, name=f"p{pid}", utime=100, start=500) for pid in range(1, 7)]
    later = [FakeProcess(pid, name=f"p{pid}", utime=100 + 40 * pid, start=500) for pid in range(1, 5)]
    later.append(FakeProcess(5, name="reused", utime=7, start=900))
    later.append(FakeProcess(6, name="p6", utime=60, start=500))  # a counter that went back: 0, never negative
    tables = []
    for backend in ("c", "python"):
        root = write_tree(tmp_path / backend, first)
        walker = walk.CffiProcWalker(str(root)) if backend == "c" else PyProcWalker(str(root))
        collector = ProcessesCollector(str(root), clock_ticks=100, page_size=4096, walker=walker)
        collector.collect(1.0)
        write_tree(root, later)
        tables.append(collector.collect(3.0))
    c_table, py_table = tables
    assert c_table.cpu == py_table.cpu == {1: 20.0, 2: 40.0, 3: 60.0, 4: 80.0, 5: None, 6: 0.0}
    assert c_table.top(3) == py_table.top(3) and [row.pid for row in c_table.top(3)] == [4, 3, 2]


# ---------------------------------------------------------------- the live /proc


@pytest.fixture
def odd_children(tmp_path):
    """Children whose comm holds ')', '(' and spaces, or UTF-8, and one with four threads; killed at the end."""
    spawned = []
    for name in ("x) (y z", "café ☕"):
        link = tmp_path / name
        link.symlink_to(sys.executable)
        # Popen returns once exec succeeded, so the comm is set; the child then blocks reading stdin.
        spawned.append(subprocess.Popen([str(link), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                                        start_new_session=True))
    threads = ("import sys, threading\nstop = threading.Event()\n"
               "for _ in range(3): threading.Thread(target=stop.wait, daemon=True).start()\n"
               "print(1, flush=True)\nsys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", threads], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             start_new_session=True)
    assert child.stdout.readline()  # its threads are running
    spawned.append(child)
    yield spawned
    for child in spawned:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        for stream in (child.stdin, child.stdout):
            if stream:
                stream.close()


def test_live_children_read_the_same_in_both_walks(walk, odd_children):
    """Spawned children: pid, name, ppid, start time and threads (fixed while they wait) agree between the walks."""
    c_records, py_records = both(walk, "/proc")

    def fixed(records):
        return {s.pid: (s.pid, s.name, s.ppid, s.start_ticks, s.threads) for s in records
                if s.pid in {child.pid for child in odd_children}}

    assert fixed(c_records) == fixed(py_records)
    names = {pid: fields[1] for pid, fields in fixed(c_records).items()}
    assert names == {odd_children[0].pid: "x) (y z", odd_children[1].pid: "café ☕",
                     odd_children[2].pid: pathlib.Path(sys.executable).name[:15]}
    assert fixed(c_records)[odd_children[2].pid][4] == 4
    assert {s.pid for s in c_records} >= {os.getpid(), os.getppid()}


def test_the_live_proc_is_parsed_by_c_alone(walk, odd_children):
    """Kernel text never needs the Python parser: no live row is handed back."""
    walker = walk.CffiProcWalker("/proc")
    records = walker.stats()
    assert walk.deferred_rows(walker) == [] and len(records) > 3


def test_processes_gone_before_the_walk_are_left_out_by_both(walk):
    """A child reaped just before the walk appears in neither (its directory is gone, or its stat cannot be read)."""
    child = subprocess.Popen(["true"])
    child.wait()
    c_records, py_records = both(walk, "/proc")
    assert child.pid not in {s.pid for s in c_records} | {s.pid for s in py_records}


# ---------------------------------------------------------------- backend selection


def test_the_walker_follows_the_native_variable(walk):
    """`off` gives the Python walk; `require` the C one; the collector's default is the exported backend's."""
    assert hotpath.select_walker("off") == (PyProcWalker, "python")
    assert hotpath.select_walker("require") == (walk.CffiProcWalker, "cffi")
    assert hotpath.select_walker("auto")[1] == "cffi"
    default = ProcessesCollector(str(PROCESS_STATS)).walker
    assert type(default) is hotpath.ProcWalker and default.proc_root == str(PROCESS_STATS)
    assert (hotpath.WALKER_BACKEND == "cffi") == (type(default) is walk.CffiProcWalker)


def test_a_bad_variable_is_refused_for_the_walker_too():
    with pytest.raises(hotpath.BackendUnavailable, match="must be one of"):
        hotpath.select_walker("yes")


def test_an_extension_without_the_walk_falls_back_to_python_with_a_warning(walk, monkeypatch, caplog):
    """An extension built before the walk (its module cannot import): `auto` walks in Python and says so once at
    start-up; `require` refuses."""
    monkeypatch.setitem(sys.modules, "tracklab_sysmon._procwalk_cffi", None)  # importing it raises ImportError
    walker, name, reason = hotpath._select_walker("auto")
    assert (walker, name) == (PyProcWalker, "python") and reason.startswith("the C process walk is not built")
    with pytest.raises(hotpath.BackendUnavailable, match="require but the C process walk is not built"):
        hotpath.select_walker("require")
    monkeypatch.setattr(hotpath, "_WALKER_REASON", reason)
    hotpath.warn_if_fallback()
    assert [r.getMessage() for r in caplog.records] == [
        f"using the Python process walk: {reason}; reinstall tracklab-sysmon to rebuild the C helper"]
