"""The CPU tick in C (usage against the last tick, cpufreq per core) against its Python twin."""

from __future__ import annotations

import os
import pathlib
import shutil
from typing import Any

import orjson
import pytest
from conftest import native_module
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_hotpath_parity import FIXTURE_TREES, _write_huge_tree

from tracklab_sysmon import wire
from tracklab_sysmon._hotpath_py import CPUFREQ_RECHECK, PyHotReader
from tracklab_sysmon.collectors.cpu import PROCESS_COUNT_SECONDS, CpuCollector
from tracklab_sysmon.model import FREQ_DEFER, FREQ_NONE, FREQ_READ, CoreColumns, CpuSample, CpuTick, CpuTimes
from tracklab_sysmon.rates import busy_percent


def tickers(proc_root: str, sys_root: str) -> tuple:
    native = native_module().CffiHotReader(proc_root).cpu_ticker(sys_root)
    return native, PyHotReader(proc_root).cpu_ticker(sys_root)


def same(native: CpuTick, python: CpuTick) -> None:
    """Equal in every field, None for None: columns, sources, overall and the aggregate times."""
    assert (native.total, native.overall, native.frequency_source) == (
        python.total, python.overall, python.frequency_source)
    for field in ("ids", "usage", "frequency", "temperature", "times"):
        assert getattr(native.cores, field) == getattr(python.cores, field), field


def advance(stat: pathlib.Path, step: int) -> None:
    """Every cpu line's counters move by a different amount per mode, as a real tick's would."""
    lines = []
    for line in stat.read_text().splitlines():
        if line.startswith("cpu"):
            label, *values = line.split()
            line = " ".join([label, *(str(int(v) + step * (k + 1) * (1 + len(label))) for k, v in enumerate(values))])
        lines.append(line)
    stat.write_text("\n".join(lines) + "\n")


TREES_WITH_STAT = [t for t in FIXTURE_TREES if pathlib.Path(t, "stat").is_file()]  # not the cgroup-only trees


@pytest.mark.parametrize("tree", TREES_WITH_STAT, ids=lambda p: pathlib.Path(p).parent.name)
def test_every_fixture_tree_ticks_the_same_in_c_and_python(tree: str, tmp_path: pathlib.Path) -> None:
    """Three ticks of every fixture tree (counters moved between them) give equal columns, usage included."""
    root = tmp_path / "t"
    shutil.copytree(pathlib.Path(tree).parent, root, symlinks=True)
    native, python = tickers(str(root / "proc"), str(root / "sys"))
    for step in range(3):
        same(native.tick(), python.tick())
        advance(root / "proc/stat", step + 1)
    assert native.tick().overall is not None


def test_most_fixture_trees_have_a_stat_to_tick() -> None:
    """The parity test above runs on the captured and hand-written hosts, not on a handful."""
    assert len(TREES_WITH_STAT) >= 8


def test_a_1024_cpu_tree_ticks_the_same_and_rates_each_core(tmp_path: pathlib.Path) -> None:
    """1,024 CPUs with cpufreq on every other one: equal columns, exact usage and MHz per core."""
    proc, sys_root = tmp_path / "proc", tmp_path / "sys"
    _write_huge_tree(proc, 1024, 8)
    for cpu in range(0, 1024, 2):
        freq = sys_root / f"devices/system/cpu/cpu{cpu}/cpufreq"
        freq.mkdir(parents=True)
        (freq / "scaling_cur_freq").write_text(f"{1200000 + cpu}\n")
    native, python = tickers(str(proc), str(sys_root))
    first = native.tick()
    same(first, python.tick())
    assert first.cores.usage == [None] * 1024 and first.overall is None
    assert first.cores.frequency[2] == 1200.002 and first.cores.frequency[3] is None
    assert first.frequency_source[:4] == [FREQ_READ, FREQ_NONE, FREQ_READ, FREQ_NONE]
    advance(proc / "stat", 1)
    tick = native.tick()
    same(tick, python.tick())
    # cpu5: user +5, nice +10, system +15, idle +20, iowait +25, irq +30, softirq +35, steal +40 (x4)
    busy, idle = (5 + 10 + 15 + 30 + 35 + 40) * 4, (20 + 25) * 4
    assert tick.cores.usage[5] == round(100 * busy / (busy + idle), 2) == 75.0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.lists(st.integers(0, 2**40), min_size=8, max_size=8),
    deltas=st.lists(st.integers(-50, 10**6), min_size=8, max_size=8),
)
def test_usage_rounds_exactly_as_python_does(tmp_path: pathlib.Path, before: list[int], deltas: list[int]) -> None:
    """Any two readings (backwards steps included): C's usage equals rates.busy_percent to the last bit."""
    proc = tmp_path / "h"
    proc.mkdir(exist_ok=True)
    after = [max(0, b + d) for b, d in zip(before, deltas, strict=True)]
    native = native_module().CffiHotReader(str(proc)).cpu_ticker(str(tmp_path / "nosys"))
    for values in (before, after):
        line = " ".join(map(str, values))
        (proc / "stat").write_text(f"cpu {line}\ncpu0 {line}\n")
        tick = native.tick()
    ticks = float(os.sysconf("SC_CLK_TCK"))
    expected = busy_percent(CpuTimes(*(v / ticks for v in before)), CpuTimes(*(v / ticks for v in after)))
    assert tick.cores.usage == [expected] and tick.overall == expected


def test_a_tie_rounds_half_to_even_like_python(tmp_path: pathlib.Path) -> None:
    """Busy 0.25 s of 200 s (both exact in binary): exactly 0.125 %, which Python's round() makes 0.12, not 0.13;
    0.625 % makes 0.62."""
    if os.sysconf("SC_CLK_TCK") != 100:
        pytest.fail("the tick values below assume USER_HZ = 100, as every Linux build has")
    (tmp_path / "stat").write_text("cpu 0 0 0 0\ncpu0 0 0 0 0\ncpu1 0 0 0 0\n")
    native = native_module().CffiHotReader(str(tmp_path)).cpu_ticker(str(tmp_path))
    native.tick()
    (tmp_path / "stat").write_text("cpu 25 0 0 19975\ncpu0 25 0 0 19975\ncpu1 125 0 0 19875\n")
    assert native.tick().cores.usage == [0.12, 0.62] == [round(0.125, 2), round(0.625, 2)]


def test_cores_are_matched_by_id_when_they_come_and_go(tmp_path: pathlib.Path) -> None:
    """A core that was offline has no usage yet; reordered lines still rate against their own core."""
    (tmp_path / "stat").write_text("cpu 0 0 0 0\ncpu0 0 0 0 0\ncpu2 0 0 0 0\n")
    native, python = tickers(str(tmp_path), str(tmp_path))
    same(native.tick(), python.tick())
    (tmp_path / "stat").write_text("cpu 3 0 0 3\ncpu2 3 0 0 1\ncpu1 5 0 0 5\ncpu0 0 0 0 2\n")
    tick = native.tick()
    same(tick, python.tick())
    assert (tick.cores.ids, tick.cores.usage) == ([2, 1, 0], [75.0, None, 0.0])


def test_cpufreq_text_outside_the_c_subset_is_read_by_python(tmp_path: pathlib.Path) -> None:
    """`+2400000` is Python's int() but not C's: C defers that core, the collector still shows 2400 MHz."""
    proc, sys_root = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    (proc / "stat").write_text("cpu 1 0 0 1\ncpu0 1 0 0 1\ncpu1 1 0 0 1\n")
    (proc / "loadavg").write_text("0.00 0.00 0.00 1/10 1\n")
    for cpu, text in ((0, "+2400000\n"), (1, "1800000\n")):
        (sys_root / f"devices/system/cpu/cpu{cpu}/cpufreq").mkdir(parents=True)
        (sys_root / f"devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq").write_text(text)
    reader = native_module().CffiHotReader(str(proc))
    assert reader.cpu_ticker(str(sys_root)).tick().frequency_source == [FREQ_DEFER, FREQ_READ]
    sample = CpuCollector(reader, proc_root=str(proc), sys_root=str(sys_root)).collect(0.0)
    assert [c.frequency for c in sample.cores] == [2400.0, 1800.0]


def test_columns_encode_to_the_same_json_as_core_records(tmp_path: pathlib.Path) -> None:
    """The wire's column fast path writes byte for byte what the per-core records write."""
    proc = tmp_path / "proc"
    _write_huge_tree(proc, 64, 2)
    native = native_module().CffiHotReader(str(proc)).cpu_ticker(str(tmp_path))
    native.tick()
    advance(proc / "stat", 1)
    cores = native.tick().cores
    cores.temperature = [40.5 + i if i % 3 else None for i in range(64)]
    as_records = tuple(cores)
    assert isinstance(cores, CoreColumns) and cores == as_records
    assert orjson.dumps(wire._columns_to_wire(cores)) == orjson.dumps([wire._core(c) for c in as_records])


def test_the_process_count_is_refreshed_every_few_seconds_not_every_tick(tmp_path: pathlib.Path) -> None:
    """A new PID directory shows within PROCESS_COUNT_SECONDS of the last count, not on the very next tick."""
    proc = tmp_path / "proc"
    shutil.copytree(pathlib.Path(FIXTURE_TREES[0]), proc, symlinks=True)
    collector = CpuCollector(PyHotReader(str(proc)), proc_root=str(proc), sys_root=str(tmp_path))
    counted = collector.collect(100.0).processes
    assert counted is not None
    (proc / "999999").mkdir()
    assert collector.collect(100.0 + PROCESS_COUNT_SECONDS - 0.5).processes == counted
    assert collector.collect(100.0 + PROCESS_COUNT_SECONDS).processes == counted + 1
    (proc / "999998").mkdir()
    assert collector.collect(50.0).processes == counted + 2  # the clock went back: count again


def test_a_replaced_cpufreq_file_is_noticed_within_the_recheck_period(tmp_path: pathlib.Path) -> None:
    """Both backends check a kept cpufreq path's identity every CPUFREQ_RECHECK reads (the C constant
    is the same), so a file renamed over is read within that many ticks, on the same tick in both."""
    assert native_module().lib.SM_FREQ_RECHECK == CPUFREQ_RECHECK
    proc, sys_root = tmp_path / "proc", tmp_path / "sys"
    proc.mkdir()
    (proc / "stat").write_text("cpu 1 0 0 1\ncpu0 1 0 0 1\n")
    freq = sys_root / "devices/system/cpu/cpu0/cpufreq"
    freq.mkdir(parents=True)
    (freq / "scaling_cur_freq").write_text("1000000\n")
    native, python = tickers(str(proc), str(sys_root))
    same(native.tick(), python.tick())
    (freq / "new").write_text("2000000\n")
    os.replace(freq / "new", freq / "scaling_cur_freq")
    seen = []
    for _ in range(CPUFREQ_RECHECK + 1):
        tick = native.tick()
        same(tick, python.tick())
        seen.append(tick.cores.frequency[0])
    assert seen == [1000.0] * (CPUFREQ_RECHECK - 1) + [2000.0] * 2


def encoded_and_expected(cores: CoreColumns) -> tuple[bytes | None, bytes]:
    return cores.encoded(), orjson.dumps([wire._core(c) for c in cores])


def test_the_c_helper_writes_the_cores_json_byte_for_byte_as_orjson(tmp_path: pathlib.Path) -> None:
    """On a 1,024-CPU tree, with frequencies filled in by Python and temperatures (some null), the C
    helper's JSON array is orjson's, and the snapshot's bytes do not change with it."""
    proc, sys_root = tmp_path / "proc", tmp_path / "sys"
    _write_huge_tree(proc, 1024, 8)
    for cpu in range(0, 1024, 3):
        (sys_root / f"devices/system/cpu/cpu{cpu}/cpufreq").mkdir(parents=True)
        (sys_root / f"devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq").write_text(f"{800000 + 7 * cpu}\n")
    native = native_module().CffiHotReader(str(proc)).cpu_ticker(str(sys_root))
    native.tick()
    advance(proc / "stat", 1)
    tick = native.tick()
    cores = tick.cores
    encoded, expected = encoded_and_expected(cores)
    assert encoded == expected and encoded.count(b'"frequency":null') == 1024 - 342
    cores.frequency = [None if f is None else f for f in cores.frequency]
    for index, source in enumerate(tick.frequency_source):  # as the collector completes them
        if source == FREQ_NONE:
            cores.frequency[index] = 2999.999 if index % 2 else None
    cores.temperature = [None if i % 5 == 0 else -12.5 + i / 8 for i in range(1024)]
    encoded, expected = encoded_and_expected(cores)
    assert encoded == expected and b'"frequency":2999.999' in encoded and b'"temperature":-12.5' not in encoded
    assert b'"temperature":-12.375' in encoded


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ticks=st.lists(st.integers(0, 10**15), min_size=16, max_size=16),
    khz=st.one_of(st.none(), st.integers(0, 10**13)),
    temperature=st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**6, 10**9).map(
        lambda m: m / 1000)),
)
def test_any_tick_encodes_like_orjson_or_is_left_to_it(
    tmp_path: pathlib.Path, ticks: list[int], khz: int | None, temperature: float | None
) -> None:
    """Any counters, frequency and temperature: the C JSON equals orjson's, or C declines (None) and the
    wire writes the cores itself, so the published bytes are orjson's either way."""
    proc, sys_root = tmp_path / "p", tmp_path / "s"
    proc.mkdir(exist_ok=True)
    freq = sys_root / "devices/system/cpu/cpu0/cpufreq"
    freq.mkdir(parents=True, exist_ok=True)
    (freq / "scaling_cur_freq").write_text(f"{khz}\n" if khz is not None else "")
    native = native_module().CffiHotReader(str(proc)).cpu_ticker(str(sys_root))
    for values in (ticks[:8], ticks[8:]):
        line = " ".join(map(str, values))
        (proc / "stat").write_text(f"cpu {line}\ncpu0 {line}\n")
        cores = native.tick().cores
    cores.temperature = [temperature]
    encoded, expected = encoded_and_expected(cores)
    assert encoded in (None, expected)
    snapshot_cpu = wire.cpu_to_wire(CpuSampleOf(cores), fragments=True)
    assert orjson.dumps(snapshot_cpu) == orjson.dumps(wire.cpu_to_wire(CpuSampleOf(tuple(cores))))


def test_ordinary_values_are_written_by_c_and_odd_ones_left_to_orjson(tmp_path: pathlib.Path) -> None:
    """Temperatures of three decimals are C's; 1/3 °C or 1e15 s are not (None), and the wire still writes them."""
    (tmp_path / "stat").write_text("cpu 1 2 3 4\ncpu0 1 2 3 4\n")
    native = native_module().CffiHotReader(str(tmp_path)).cpu_ticker(str(tmp_path))
    cores = native.tick().cores
    cores.temperature = [41.125]
    assert encoded_and_expected(cores)[0] is not None
    for odd in (1 / 3, 1e15, -0.0005):
        cores.temperature = [odd]
        assert cores.encoded() is None
        assert orjson.dumps(wire.cpu_to_wire(CpuSampleOf(cores), fragments=True)) == orjson.dumps(
            wire.cpu_to_wire(CpuSampleOf(tuple(cores))))


def test_an_older_ticks_cores_are_never_written_from_newer_c_rows(tmp_path: pathlib.Path) -> None:
    """The C rows belong to the newest tick: columns kept from an earlier tick encode in Python, correctly."""
    (tmp_path / "stat").write_text("cpu 1 2 3 4\ncpu0 1 2 3 4\n")
    native = native_module().CffiHotReader(str(tmp_path)).cpu_ticker(str(tmp_path))
    old = native.tick().cores
    (tmp_path / "stat").write_text("cpu 9 9 9 9\ncpu0 9 9 9 9\n")
    native.tick()
    assert old.encoded() is None
    assert orjson.loads(orjson.dumps(wire.cpu_to_wire(CpuSampleOf(old), fragments=True)))["cores"][0]["times"][
        "user"] == 0.01


def CpuSampleOf(cores: Any) -> CpuSample:
    return CpuSample(overall=None, cores=cores, load_average=None, processes=None, threads=None, temperature=None)
