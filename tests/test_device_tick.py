"""Disk and interface rates in C (native/devices.c) against their Python twin, and their columns' JSON."""

from __future__ import annotations

import pathlib
import re
import shutil
from typing import Any

import orjson
import pytest
from conftest import native_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hotpath_parity import FIXTURE_TREES, _write_huge_tree

from tracklab_sysmon import wire
from tracklab_sysmon._hotpath_py import PyHotReader
from tracklab_sysmon.collectors.base import Partial
from tracklab_sysmon.collectors.disk import DiskCollector
from tracklab_sysmon.collectors.network import NetworkCollector
from tracklab_sysmon.model import DeviceTick, DiskColumns, DiskDeviceSample, InterfaceColumns, InterfaceSample
from tracklab_sysmon.rates import U64_MAX, CounterRates, rounded

EVERY = lambda names: [True] * len(names)  # noqa: E731 - a selection that keeps every row


def tickers(proc_root: str, kind: str, select: Any = EVERY) -> tuple[Any, Any]:
    """The C and Python tickers of one kind ("disk" or "net") over `proc_root`."""
    native, python = native_module().CffiHotReader(proc_root), PyHotReader(proc_root)
    return getattr(native, f"{kind}_ticker")(select), getattr(python, f"{kind}_ticker")(select)


def same(native: DeviceTick[Any], python: DeviceTick[Any]) -> None:
    """Equal records (None for None), totals and overflow messages; the C tick has the columns' class."""
    assert type(native.devices) is type(python.devices)
    assert list(native.devices) == list(python.devices)
    assert native.totals == python.totals
    assert native.devices.overflow_problems() == python.devices.overflow_problems()


def advance(path: pathlib.Path, step: int) -> None:
    """Every counter of every line moves by a different amount (diskstats fields 4+, net/dev after ':')."""
    lines = []
    for n, line in enumerate(path.read_text().splitlines()):
        head, sep, rest = line.rpartition(":") if path.name == "dev" else ("", "", line)
        fields = rest.split()
        first = 0 if path.name == "dev" else 3
        if "|" not in line and len(fields) > first and all(f.isdigit() for f in fields[first:]):
            fields[first:] = [str(int(v) + step * (k + 1) * (n + 1)) for k, v in enumerate(fields[first:])]
            line = f"{head}{sep} " + " ".join(fields) if sep else " ".join(fields)
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


TREES = [t for t in FIXTURE_TREES if pathlib.Path(t, "diskstats").is_file() or pathlib.Path(t, "net/dev").is_file()]


@pytest.mark.parametrize("tree", TREES, ids=lambda p: pathlib.Path(p).parent.name)
def test_every_fixture_tree_rates_disks_and_interfaces_the_same_in_c_and_python(
    tree: str, tmp_path: pathlib.Path
) -> None:
    """Four ticks of every fixture tree, counters moved between them: equal columns, rates and totals."""
    root = tmp_path / "t"
    shutil.copytree(pathlib.Path(tree).parent, root, symlinks=True)
    proc = root / "proc"
    for kind, file in (("disk", proc / "diskstats"), ("net", proc / "net/dev")):
        if not file.is_file():
            continue
        native, python = tickers(str(proc), kind)
        for step in range(4):
            same(native.tick(10.0 + step), python.tick(10.0 + step))
            advance(file, step + 1)


def test_most_fixture_trees_have_disks_or_interfaces() -> None:
    assert len(TREES) >= 8


def test_4096_disks_rate_the_same_and_exactly(tmp_path: pathlib.Path) -> None:
    """4,096 disks and 2,048 interfaces: equal in both backends, and each disk's rate is what its line moved."""
    proc = tmp_path / "proc"
    _write_huge_tree(proc, 4, 4096)
    disks, nets = tickers(str(proc), "disk"), tickers(str(proc), "net")
    for native, python in (disks, nets):
        same(native.tick(1.0), python.tick(1.0))
    advance(proc / "diskstats", 1)
    advance(proc / "net/dev", 1)
    disk_tick, net_tick = disks[0].tick(3.0), nets[0].tick(3.0)
    same(disk_tick, disks[1].tick(3.0))
    same(net_tick, nets[1].tick(3.0))
    # Line n (from 1) moves field k (from 1, after major/minor/name) by k*n over 2 s: reads (field 1),
    # sectors read (3), writes (5) and sectors written (7) are what the columns rate.
    last = disk_tick.devices[4095]
    assert last == DiskDeviceSample(
        name="nvme4095n1", read_bytes=(2 * 4095 + 3 * 4096) * 512, write_bytes=(4 * 4095 + 7 * 4096) * 512,
        reads=4095 + 4096, writes=3 * 4095 + 5 * 4096, read_rate=3 * 4096 * 512 / 2,
        write_rate=7 * 4096 * 512 / 2, iops=(4096 + 5 * 4096) / 2)
    assert disk_tick.totals[0] == sum(3 * n * 512 / 2 for n in range(1, 4097))
    assert net_tick.devices[2047].bytes_in == 2048 / 2 and net_tick.devices[2047].packets_out == 10 * 2048 / 2


counters = st.integers(0, U64_MAX)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ticks=st.lists(
    st.lists(st.tuples(st.sampled_from(["sda", "sdb", "nvme0n1", "vdz"]), counters, counters, counters, counters),
             max_size=5),
    min_size=1, max_size=8),
    gaps=st.lists(st.sampled_from([0.0, 0.5, 1.0, 1e-9, 3.25]), min_size=8, max_size=8))
def test_any_sequence_of_readings_rates_as_counter_rates_does(
    tmp_path: pathlib.Path, ticks: list[list[tuple[str, int, int, int, int]]], gaps: list[float]
) -> None:
    """Devices that come, go, repeat and dip, reset or wrap anywhere in 64 bits, clocks that stand still:
    the C rates equal CounterRates' to the last bit, and so do the totals."""
    proc = tmp_path / "h"
    proc.mkdir(exist_ok=True)
    native, python = tickers(str(proc), "disk", lambda names: [not n.startswith("vd") for n in names])
    now = 100.0
    for rows, gap in zip(ticks, gaps, strict=False):
        # diskstats counts sectors: a value of at most 2^53 sectors keeps bytes in 64 bits for C's parser
        text = "".join(f"8 0 {name} {r} 0 {s % 2**53} 0 {w} 0 {t % 2**53} 0 0 0 0\n" for name, r, s, w, t in rows)
        (proc / "diskstats").write_text(text)
        now += gap
        same(native.tick(now), python.tick(now))


def test_a_dip_and_a_wrap_rate_as_counter_rates_says(tmp_path: pathlib.Path) -> None:
    """A transient all-zero line rates 0 and then over the whole span; a 32-bit wrap rates from the low baseline."""
    (tmp_path / "net").mkdir()
    dev = tmp_path / "net/dev"
    native, python = tickers(str(tmp_path), "net", lambda names: [n != "lo" for n in names])
    readings = [(0.0, 1000), (1.0, 0), (2.0, 3000), (3.0, 100), (4.0, 600)]
    expected = CounterRates()
    for now, value in readings:
        dev.write_text(f"  lo: 5 5 0 0 0 0 0 0 5 5 0 0 0 0 0 0\n eth0: {value} 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n")
        tick = native.tick(now)
        same(tick, python.tick(now))
        assert [i.name for i in tick.devices] == ["eth0"]
        assert tick.devices[0].bytes_in == rounded(expected.rate("eth0", value, now))
    # 3000 -> 100 -> 600: the drop to 100 rates 0; the rise proves a reset, rated from 100 over the span
    # since the last high reading (t=2): 500 bytes over 2 s
    assert tick.devices[0].bytes_in == 250.0 and tick.totals[0] == 250.0


def test_text_outside_the_c_subset_is_parsed_by_python_and_rated_in_c(tmp_path: pathlib.Path) -> None:
    """A non-ASCII name and a counter past 64 bits: Python parses, C rates; the too-wide counter is null
    with the collector's message, and the JSON is left to orjson (a name C does not write)."""
    (tmp_path / "net").mkdir()
    wide = U64_MAX + 5
    (tmp_path / "net/dev").write_text(f"  wlän0: {wide} 2 0 0 0 0 0 0 3 4 0 0 0 0 0 0\n", encoding="utf-8")
    native, python = tickers(str(tmp_path), "net")
    first = native.tick(1.0)
    same(first, python.tick(1.0))
    assert first.devices[0] == InterfaceSample(name="wlän0", bytes_recv=None, bytes_sent=3, packets_recv=2,
                                               packets_sent=4, bytes_in=None, bytes_out=0.0, packets_in=0.0,
                                               packets_out=0.0)
    assert first.devices.overflow_problems() == ["wlän0 bytes_recv does not fit an unsigned 64-bit counter"]
    assert first.totals == (None, 0.0, 0.0, 0.0)
    assert first.devices.encoded() is None


def test_the_collectors_report_a_too_wide_counter_as_degraded(tmp_path: pathlib.Path) -> None:
    """Through the network collector: the counter is null and the sample is partial with the message."""
    (tmp_path / "net").mkdir()
    (tmp_path / "net/dev").write_text(f" eth0: {U64_MAX + 1} 2 0 0 0 0 0 0 3 4 0 0 0 0 0 0\n")
    (tmp_path / "net/snmp").write_text("Tcp: CurrEstab\nTcp: 3\n")
    result = NetworkCollector(native_module().CffiHotReader(str(tmp_path))).collect(1.0)
    assert isinstance(result, Partial)
    assert result.reason == "eth0 bytes_recv does not fit an unsigned 64-bit counter"
    assert result.value.interfaces[0].bytes_recv is None and result.value.connections == 3


def test_whole_disks_are_chosen_again_only_when_the_devices_change(tmp_path: pathlib.Path) -> None:
    """The collector's choice is asked at the first tick and on hot-plug, not on a steady tick."""
    (tmp_path / "diskstats").write_text("8 0 sda 1 0 2 0 3 0 4 0 0 0 0\n8 1 sda1 1 0 2 0 3 0 4 0 0 0 0\n")
    asked: list[list[str]] = []

    def select(names: list[str]) -> list[bool]:
        asked.append(names)
        return [n == "sda" or n == "sdb" for n in names]

    native, python = tickers(str(tmp_path), "disk", select)
    for now in (1.0, 2.0):
        same(native.tick(now), python.tick(now))
    assert asked == [["sda", "sda1"]] * 2  # once per backend
    (tmp_path / "diskstats").write_text("8 16 sdb 9 0 9 0 9 0 9 0 0 0 0\n8 0 sda 5 0 2 0 3 0 4 0 0 0 0\n")
    tick = native.tick(3.0)
    same(tick, python.tick(3.0))
    assert asked[2:] == [["sdb", "sda"]] * 2
    # sda kept its baseline across the change (4 more reads over 1 s); sdb is new (0 at first sight)
    assert [(d.name, d.iops) for d in tick.devices] == [("sdb", 0.0), ("sda", 4.0)]


def expected_json(columns: Any) -> bytes:
    to_wire = wire._disk_device if isinstance(columns, DiskColumns) else wire._interface
    return orjson.dumps([to_wire(d) for d in columns])


def test_the_c_helper_writes_the_devices_json_byte_for_byte_as_orjson(tmp_path: pathlib.Path) -> None:
    """Every fixture tree's disks and interfaces, two ticks apart: the C JSON is orjson's bytes."""
    written = 0
    for tree in TREES:
        root = tmp_path / pathlib.Path(tree).parent.name
        shutil.copytree(pathlib.Path(tree).parent, root, symlinks=True)
        for kind, file in (("disk", root / "proc/diskstats"), ("net", root / "proc/net/dev")):
            if not file.is_file():
                continue
            native, _ = tickers(str(root / "proc"), kind)
            native.tick(1.0)
            advance(file, 3)
            columns = native.tick(1.7).devices
            encoded = columns.encoded()
            assert encoded == expected_json(columns), (tree, kind)
            written += len(columns)
    assert written >= 20


def test_a_name_with_a_quote_is_left_to_orjson_and_an_old_tick_is_never_written_from_new_rows(
    tmp_path: pathlib.Path,
) -> None:
    (tmp_path / "diskstats").write_text('8 0 s"a 1 0 2 0 3 0 4 0 0 0 0\n')
    native, _ = tickers(str(tmp_path), "disk")
    assert native.tick(1.0).devices.encoded() is None
    (tmp_path / "diskstats").write_text("8 0 sda 1 0 2 0 3 0 4 0 0 0 0\n")
    old = native.tick(2.0).devices
    assert old.encoded() == expected_json(old)
    native.tick(3.0)
    assert old.encoded() is None


def test_a_snapshot_encodes_the_same_with_the_c_devices_json(tmp_path: pathlib.Path) -> None:
    """wire.encode_snapshot (C fragments) and orjson over the plain records give the same bytes."""
    root = tmp_path / "ws"
    shutil.copytree(pathlib.Path(FIXTURE_TREES[0]).parent.parent / "workstation", root, symlinks=True)
    reader = native_module().CffiHotReader(str(root / "proc"))
    disk = DiskCollector(reader, proc_root=str(root / "proc"), sys_root=str(root / "sys"), statvfs=None)
    net = NetworkCollector(reader)
    disk.collect(1.0), net.collect(1.0)
    advance(root / "proc/diskstats", 2)
    advance(root / "proc/net/dev", 2)
    disk_sample, net_sample = disk.collect(2.5), net.collect(2.5)
    assert isinstance(disk_sample.devices, DiskColumns) and isinstance(net_sample.interfaces, InterfaceColumns)
    for to_wire, sample, key in ((wire.disk_to_wire, disk_sample, "devices"),
                                 (wire.network_to_wire, net_sample, "interfaces")):
        fast = orjson.dumps(to_wire(sample, True))  # type: ignore[operator]
        assert b"Fragment" not in fast and fast == orjson.dumps(to_wire(sample))  # type: ignore[operator]
        assert re.search(rb'"(readRate|bytesIn)":[1-9]', fast), "some device moved"
        assert len(orjson.loads(fast)[key]) == len(getattr(sample, key)) >= 1
