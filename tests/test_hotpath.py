"""Both hot-path backends on small written trees: values, kernel formats, errors and kept fds."""

from __future__ import annotations

import os
import pathlib

import pytest
from conftest import native_module

from tracklab_sysmon import hotpath
from tracklab_sysmon.errors import ParseError
from tracklab_sysmon.model import CpuTimes, DiskCounters, LoadAvg, MemInfo, NetCounters

TICKS = float(os.sysconf("SC_CLK_TCK"))


def backend_class(name: str) -> type:
    """The reader class of one backend; the C one is skipped only when it may be absent (conftest.native_module)."""
    return native_module().CffiHotReader if name == "cffi" else hotpath.select_backend("off")[0]


@pytest.fixture(params=["cffi", "python"])
def reader_class(request) -> type:
    return backend_class(request.param)


def tree(root: pathlib.Path, **files: str) -> str:
    """Write `files` (net_dev -> net/dev) under root and return root as a proc_root."""
    for name, text in files.items():
        path = root / name.replace("net_", "net/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(root)


STAT = """cpu  100 2 30 4000 5 6 7 8 9 10
cpu0 50 1 15 2000 2 3 3 4 0 0
cpu1 50 1 15 2000 3 3 4 4 0 0
cpu7 1 2 3 4
cpufoo 1 2 3 4 5
cpu2 1 2 x 4 5
intr 12345 0 1
ctxt 999
btime 1700000000
"""


def test_stat_converts_ticks_to_seconds_and_pads_short_lines(tmp_path, reader_class):
    """/proc/stat ticks become seconds; a 4-mode line is padded; labels and bad lines are skipped."""
    stat = reader_class(tree(tmp_path, stat=STAT)).stat()
    assert stat.total == CpuTimes(*(v / TICKS for v in (100, 2, 30, 4000, 5, 6, 7, 8)))
    assert [cpu for cpu, _ in stat.cores] == [0, 1, 7]
    assert stat.cores[2][1] == CpuTimes(1 / TICKS, 2 / TICKS, 3 / TICKS, 4 / TICKS, 0.0, 0.0, 0.0, 0.0)


def test_stat_without_aggregate_line_is_a_parse_error(tmp_path, reader_class):
    """A /proc/stat with only per-core lines raises ParseError, never an empty record."""
    reader = reader_class(tree(tmp_path, stat="cpu0 1 2 3 4\n"))
    with pytest.raises(ParseError, match="no aggregate 'cpu' line"):
        reader.stat()


DISKSTATS = """   8       0 sda 10 0 80 5 20 0 160 9 0 12 14 0 0 0 0 0 0 0
   8       1 sda1 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18
 259       0 nvme0n1 7 0 16 1 3 0 24 1 0 2 2 0 0 0 0
   8       2 sda2 4 8 2 16
   3       1 hda1 11 22 33 44
   8       3 short 1 2 3
"""


def test_diskstats_reads_every_kernel_shape_in_bytes(tmp_path, reader_class):
    """20-, 18-, 14- and 7-field diskstats lines give counters, sectors as 512-byte units."""
    disks = reader_class(tree(tmp_path, diskstats=DISKSTATS)).diskstats()
    assert disks == [
        DiskCounters("sda", 10, 80 * 512, 20, 160 * 512),
        DiskCounters("sda1", 1, 3 * 512, 5, 7 * 512),
        DiskCounters("nvme0n1", 7, 16 * 512, 3, 24 * 512),
        DiskCounters("sda2", 4, 8 * 512, 2, 16 * 512),
        DiskCounters("hda1", 11, 22 * 512, 33, 44 * 512),
    ]


NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast"
    "|bytes    packets errs drop fifo colls carrier compressed\n"
    "    lo: 1000 10 0 0 0 0 0 0 1000 10 0 0 0 0 0 0\n"
    "  eth0:123456 789 0 0 0 0 0 0 654321 987 0 0 0 0 0 0\n"
    "eth0:1: 5 6 0 0 0 0 0 0 7 8 0 0 0 0 0 0\n"
    "  bad0: 1 2 3\n"
)


def test_net_dev_keeps_alias_names_and_glued_counters(tmp_path, reader_class):
    """The interface name ends at the last colon, counters may touch it, headers are skipped."""
    interfaces = reader_class(tree(tmp_path, net_dev=NET_DEV)).net_dev()
    assert interfaces == [
        NetCounters("lo", 1000, 10, 1000, 10),
        NetCounters("eth0", 123456, 789, 654321, 987),
        NetCounters("eth0:1", 5, 6, 7, 8),
    ]


def test_meminfo_estimates_available_on_old_kernels(tmp_path, reader_class):
    """Without MemAvailable, available = free + buffers + cached + reclaimable, capped at total."""
    text = "MemTotal: 1000 kB\nMemFree: 600 kB\nBuffers: 100 kB\nCached: 200 kB\nSwapTotal: 0 kB\n"
    info = reader_class(tree(tmp_path, meminfo=text)).meminfo()
    assert info == MemInfo(1000 * 1024, 900 * 1024, 0, None)
    text += "SReclaimable: 500 kB\nHugePages_Total: 7\n"
    assert reader_class(tree(tmp_path, meminfo=text)).meminfo().available == 1000 * 1024


def test_loadavg_and_its_malformed_form(tmp_path, reader_class):
    """loadavg gives three loads and the task counts; a malformed file raises ParseError."""
    reader = reader_class(tree(tmp_path, loadavg="0.28 0.12 0.04 1/75 2292\n"))
    assert reader.loadavg() == LoadAvg(0.28, 0.12, 0.04, 1, 75)
    broken = reader_class(tree(tmp_path / "b", loadavg="0.28 0.12 0.04 175\n"))
    with pytest.raises(ParseError, match="loadavg is malformed"):
        broken.loadavg()


SNMP = "Ip: Forwarding DefaultTTL\nIp: 1 64\nTcp: RtoAlgorithm RtoMin CurrEstab InSegs\nTcp: 1 200 17 900\n"


def test_tcp_established_reads_curr_estab(tmp_path, reader_class):
    """CurrEstab is read by its header position; a snmp file without Tcp rows is a ParseError."""
    assert reader_class(tree(tmp_path, net_snmp=SNMP)).tcp_established() == 17
    empty = reader_class(tree(tmp_path / "e", net_snmp="Ip: Forwarding\nIp: 1\n"))
    with pytest.raises(ParseError, match="no Tcp table"):
        empty.tcp_established()


def test_process_count_counts_only_numeric_entries(tmp_path, reader_class):
    """Only entries named by ASCII digits are processes; files and other names are not."""
    for name in ("1", "42", "4242", "self", "net", "12a", "٣"):
        (tmp_path / name).mkdir()
    (tmp_path / "77").write_text("")
    assert reader_class(str(tmp_path)).process_count() == 4


def test_missing_file_raises_file_not_found_with_its_path(tmp_path, reader_class):
    """A file absent from the tree raises FileNotFoundError naming the file, not a parse error."""
    with pytest.raises(FileNotFoundError) as info:
        reader_class(str(tmp_path)).meminfo()
    assert info.value.filename == os.path.join(str(tmp_path), "meminfo")


def test_kept_descriptor_sees_in_place_updates_and_close_reopens(tmp_path, reader_class):
    """A rewritten file is re-read through the kept fd each call; after close() reads reopen."""
    reader = reader_class(tree(tmp_path, loadavg="1.00 2.00 3.00 1/10 5\n"))
    assert reader.loadavg().load1 == 1.0
    with open(tmp_path / "loadavg", "r+") as handle:
        handle.truncate(0)
        handle.write("4.50 2.00 3.00 2/20 5\n")
    assert reader.loadavg() == LoadAvg(4.5, 2.0, 3.0, 2, 20)
    reader.close()
    assert reader.loadavg().running == 2


def test_file_larger_than_any_first_buffer_is_read_whole(tmp_path, reader_class):
    """A 200 KB net/dev with 3000 interfaces is read to its end: nothing truncated."""
    lines = "".join(f"  if{i}: {i} 1 0 0 0 0 0 0 {2 * i} 2 0 0 0 0 0 0\n" for i in range(3000))
    interfaces = reader_class(tree(tmp_path, net_dev=lines)).net_dev()
    assert len(interfaces) == 3000 and interfaces[-1] == NetCounters("if2999", 2999, 1, 5998, 2)
