"""Parity: every fixture tree and generated huge trees read the same through both backends."""

from __future__ import annotations

import os
import pathlib

import pytest
from conftest import native_module, outcome

from tracklab_sysmon import hotpath
from tracklab_sysmon.model import CpuTimes

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
METHODS = ("stat", "diskstats", "net_dev", "meminfo", "loadavg", "tcp_established", "process_count")
FILES = {"stat": "stat", "diskstats": "diskstats", "net_dev": "net/dev", "meminfo": "meminfo",
         "loadavg": "loadavg", "tcp_established": "net/snmp"}


def read_both(proc_root: str, method: str) -> tuple[tuple, tuple]:
    native = native_module().CffiHotReader(proc_root)
    python = hotpath.select_backend("off")[0](proc_root)
    return outcome(getattr(native, method)), outcome(getattr(python, method))


FIXTURE_TREES = sorted(str(p) for p in FIXTURES.glob("*/proc") if p.is_dir())


def test_fixture_trees_exist():
    """The parity test below has real captured and hand-written trees to read."""
    assert len(FIXTURE_TREES) >= 3


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("proc_root", FIXTURE_TREES, ids=lambda p: pathlib.Path(p).parent.name)
def test_every_fixture_tree_reads_the_same_through_both_backends(proc_root, method):
    """Each fixture tree gives equal records (or the same error) from the C helper and Python."""
    native, python = read_both(proc_root, method)
    assert native == python


@pytest.mark.parametrize("kind", sorted(FILES))
def test_fixture_files_take_the_c_fast_path(kind):
    """Real kernel text is parsed by C itself, not deferred to Python (so parity means something)."""
    native = native_module()
    present = [pathlib.Path(root, FILES[kind]) for root in FIXTURE_TREES]
    present = [p for p in present if p.is_file()]
    assert present
    for path in present:
        assert native.parse_native(kind, path.read_bytes()) is not native.DEFERRED, path


def _write_huge_tree(root: pathlib.Path, cpus: int, disks: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "net").mkdir()
    lines = [f"cpu  {cpus * 10} 1 {cpus * 3} {cpus * 90} 2 0 1 0 0 0"]
    lines += [f"cpu{i} {10 + i} 0 {3 + i % 7} {90 + i} 0 0 {i % 3} 0 0 0" for i in range(cpus)]
    (root / "stat").write_text("\n".join(lines) + "\nintr 1 2 3\nbtime 1700000000\n")
    (root / "diskstats").write_text("".join(
        f" 259 {i} nvme{i}n1 {i} 0 {2 * i} 0 {3 * i} 0 {4 * i} 0 0 0 0 0 0 0 0 0 0\n" for i in range(disks)
    ))
    (root / "net/dev").write_text("".join(
        f"  veth{i}: {i} {i} 0 0 0 0 0 0 {i + 1} {i + 1} 0 0 0 0 0 0\n" for i in range(disks // 2)
    ))


@pytest.mark.parametrize("cpus,disks", [(1024, 4096), (2, 4)])
def test_generated_trees_are_never_truncated(tmp_path, cpus, disks):
    """1024 CPUs and 4096 disks come back whole, equal in both backends, in file order."""
    _write_huge_tree(tmp_path, cpus, disks)
    for method in ("stat", "diskstats", "net_dev"):
        native, python = read_both(str(tmp_path), method)
        assert native == python and native[0] == "value"
    stat = native_module().CffiHotReader(str(tmp_path)).stat()
    assert [cpu for cpu, _ in stat.cores] == list(range(cpus))
    ticks = float(os.sysconf("SC_CLK_TCK"))
    assert stat.cores[-1][1] == CpuTimes(*(v / ticks for v in (9 + cpus, 0, 3 + (cpus - 1) % 7, 89 + cpus,
                                                                0, 0, (cpus - 1) % 3, 0)))
    disks_read = native_module().CffiHotReader(str(tmp_path)).diskstats()
    assert len(disks_read) == disks and disks_read[-1].name == f"nvme{disks - 1}n1"
    assert disks_read[-1].write_bytes == 4 * (disks - 1) * 512


def test_non_canonical_text_is_deferred_and_still_equal(tmp_path):
    """Signs, underscores and non-ASCII names go to the Python parser, so results stay equal."""
    native = native_module()
    (tmp_path / "net").mkdir()
    (tmp_path / "net/dev").write_text("  wlän0: 1_000 2 0 0 0 0 0 0 3 4 0 0 0 0 0 0\n", encoding="utf-8")
    (tmp_path / "stat").write_text("cpu +1 2 3 4\ncpu0 1 2 3 4\n")
    assert native.parse_native("net_dev", (tmp_path / "net/dev").read_bytes()) is native.DEFERRED
    for method in ("net_dev", "stat"):
        c_result, py_result = read_both(str(tmp_path), method)
        assert c_result == py_result and c_result[0] == "value"
