"""Per-second rates: the pure maths, and collectors across fixture files rewritten between two reads."""

from __future__ import annotations

import pathlib
import shutil

import pytest
from conftest import FIXTURES, native_module
from hypothesis import given
from hypothesis import strategies as st

from tracklab_sysmon.collectors.cpu import CpuCollector
from tracklab_sysmon.collectors.disk import DiskCollector
from tracklab_sysmon.collectors.memory import MemoryCollector
from tracklab_sysmon.collectors.network import NetworkCollector
from tracklab_sysmon.hotpath import select_backend
from tracklab_sysmon.model import CpuTimes
from tracklab_sysmon.rates import busy_percent, counter_rate, percent

# ---------------------------------------------------------------- pure maths


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "expected"),
    [
        (100, 300, 2.0, 100.0),  # increase
        (300, 300, 2.0, 0.0),  # unchanged
        (300, 5, 2.0, 0.0),  # reset or wrap: 0, never negative
        (100, 300, 0.0, 0.0),  # no time passed: no rate, not a division by zero
        (100, 300, -1.0, 0.0),  # clock went backwards
    ],
)
def test_counter_rate(previous: float, current: float, elapsed: float, expected: float) -> None:
    """A cumulative counter's rate is delta/elapsed, and 0 when it went backwards or no time passed."""
    assert counter_rate(previous, current, elapsed) == expected


def test_busy_percent_counts_all_but_idle_and_iowait() -> None:
    """Busy share = (user+nice+system+irq+softirq+steal deltas) / all deltas."""
    before = CpuTimes(user=10, system=5, idle=80, iowait=5)
    after = CpuTimes(user=30, system=10, idle=140, iowait=15, irq=2, softirq=3, steal=10)
    # busy: 20 + 5 + 2 + 3 + 10 = 40; idle: 60 + 10 = 70 -> 40 / 110
    assert busy_percent(before, after) == 36.36


def test_busy_percent_none_when_no_cpu_time_passed() -> None:
    """The same reading twice is a share of nothing: None, not 0."""
    times = CpuTimes(user=10, idle=90)
    assert busy_percent(times, times) is None


def test_busy_percent_clamps_idle_stepping_backwards() -> None:
    """Idle that steps back (some kernels) counts as 0, so usage stays within 0-100."""
    assert busy_percent(CpuTimes(user=10, idle=100), CpuTimes(user=20, idle=95)) == 100.0
    assert busy_percent(CpuTimes(user=20, idle=100), CpuTimes(user=10, idle=100)) is None


@pytest.mark.parametrize(
    ("part", "whole", "expected"),
    [(1, 3, 33.33), (3, 4, 75.0), (None, 4, None), (1, None, None), (1, 0, None)],
)
def test_percent(part: float | None, whole: float | None, expected: float | None) -> None:
    """part/whole in percent rounded to 2 places; unknown or zero whole gives None."""
    assert percent(part, whole) == expected


COUNTER = st.integers(min_value=0, max_value=2**64)
SECONDS = st.floats(min_value=0, max_value=1e9, allow_nan=False)


@given(COUNTER, COUNTER, st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=1e6))
def test_counter_rate_is_never_negative(previous: int, current: int, elapsed: float) -> None:
    """Whatever two counter readings and interval, the rate is >= 0 (resets and wraps included)."""
    assert counter_rate(previous, current, elapsed) >= 0.0


@given(st.lists(SECONDS, min_size=16, max_size=16))
def test_busy_percent_stays_within_0_and_100(values: list[float]) -> None:
    """Any two CPU readings, even ones stepping backwards, give a usage in 0-100 or None."""
    usage = busy_percent(CpuTimes(*values[:8]), CpuTimes(*values[8:]))
    assert usage is None or 0.0 <= usage <= 100.0


# ---------------------------------------------------------------- rewritten trees

CORE = [10000, 100, 2000, 80000, 500, 50, 150, 10]  # user nice system idle iowait irq softirq steal
DISKS = {  # name: (major, minor, reads, sectors read, writes, sectors written)
    "sda": (8, 0, 1000, 20000, 2000, 40000),
    "sda1": (8, 1, 100, 2000, 200, 4000),
    "sda2": (8, 2, 900, 18000, 1800, 36000),
    "sdb": (8, 16, 400, 8000, 600, 12000),
    "sdc": (8, 32, 400, 8000, 600, 12000),
    "md0": (9, 0, 800, 16000, 1200, 24000),
    "dm-0": (253, 0, 900, 18000, 1800, 36000),
    "nvme0n1": (259, 0, 5000, 100000, 3000, 60000),
    "nvme0n1p1": (259, 1, 5000, 100000, 3000, 60000),
    "loop0": (7, 0, 50, 1000, 0, 0),
    "ram0": (1, 0, 7, 56, 0, 0),
    "zram0": (252, 0, 30, 240, 40, 320),
    "cciss/c0d0": (104, 0, 300, 6000, 100, 2000),
}
NICS = {  # name: (rx bytes, rx packets, tx bytes, tx packets)
    "lo": (500_000, 5000, 500_000, 5000),
    "eth0": (10_000_000, 20_000, 2_000_000, 10_000),
    "eth0:1": (300_000, 3000, 60_000, 600),
    "wlan0": (700_000, 7000, 140_000, 1400),
}


class Tree:
    """A private copy of the workstation tree whose counter files a test rewrites in place."""

    def __init__(self, root: pathlib.Path, reader_class: type) -> None:
        shutil.copytree(FIXTURES / "workstation", root, symlinks=True)
        self.root = root
        self.cores = {i: list(CORE) for i in range(8)}
        self.disks = {k: list(v) for k, v in DISKS.items()}
        self.nics = {k: list(v) for k, v in NICS.items()}
        self.write()
        proc, sys = str(root / "proc"), str(root / "sys")
        reader = reader_class(proc)  # each backend keeps its descriptors open across rewrites
        self.collectors = {
            "cpu": CpuCollector(reader, proc_root=proc, sys_root=sys),
            "memory": MemoryCollector(reader),
            "disk": DiskCollector(reader, proc_root=proc, sys_root=sys, statvfs=None),
            "network": NetworkCollector(reader),
        }

    def write(self) -> None:
        # Rewrite in place (same inode), as the kernel's files change under a kept descriptor.
        total = [sum(column) for column in zip(*self.cores.values(), strict=True)]
        stat = [f"cpu  {' '.join(map(str, total))} 0 0"]
        stat += [f"cpu{i} {' '.join(map(str, t))} 0 0" for i, t in sorted(self.cores.items())]
        (self.root / "proc/stat").write_text("\n".join(stat) + "\nbtime 1764300000\n")
        disks = [
            f"{ma:4d} {mi:7d} {name} {r} 0 {rs} 0 {w} 0 {ws} 0 0 0 0 0 0 0 0 0 0"
            for name, (ma, mi, r, rs, w, ws) in self.disks.items()
        ]
        (self.root / "proc/diskstats").write_text("\n".join(disks) + "\n")
        nics = [f"{name:>6}: {rb} {rp} 0 0 0 0 0 0 {tb} {tp} 0 0 0 0 0 0" for name, (rb, rp, tb, tp)
                in self.nics.items()]
        (self.root / "proc/net/dev").write_text("Inter-|\n face |\n" + "\n".join(nics) + "\n")

    def collect(self, section: str, now: float):
        self.write()
        return self.collectors[section].collect(now)


@pytest.fixture(params=["off", "require"], ids=["python", "cffi"])
def tree(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Tree:
    # The C variant skips only where the helper may be absent; under =require it fails (conftest.native_module).
    reader_class = native_module().CffiHotReader if request.param == "require" else select_backend("off")[0]
    return Tree(tmp_path / "workstation", reader_class)


def test_disk_rates_on_increase_count_whole_disks_only(tree: Tree) -> None:
    """sda reads 2000 sectors and writes 1000 in 2 s; dm-0/sda2/loop0 moving too add nothing."""
    tree.collect("disk", 100.0)
    for name, dr, drs, dw, dws in [("sda", 100, 2000, 50, 1000), ("sda2", 100, 2000, 50, 1000),
                                   ("dm-0", 100, 2000, 50, 1000), ("loop0", 500, 9000, 0, 0)]:
        major, minor, reads, rsect, writes, wsect = tree.disks[name]
        tree.disks[name] = [major, minor, reads + dr, rsect + drs, writes + dw, wsect + dws]
    disk = tree.collect("disk", 102.0)
    sda = disk.devices[0]
    assert (sda.read_rate, sda.write_rate, sda.iops) == (512_000.0, 256_000.0, 75.0)  # 2000*512/2 ...
    assert (sda.reads, sda.read_bytes) == (1100, 22000 * 512)
    assert (disk.io_read, disk.io_write, disk.iops) == (512_000.0, 256_000.0, 75.0)


def test_unchanged_counters_give_zero_rates_and_unknown_cpu_usage(tree: Tree) -> None:
    """Identical readings give 0 bytes/s everywhere, and CPU usage None (no CPU time passed)."""
    for section in ("disk", "network", "cpu"):
        tree.collect(section, 100.0)
    disk, net, cpu = (tree.collect(section, 101.0) for section in ("disk", "network", "cpu"))
    assert {(d.read_rate, d.write_rate, d.iops) for d in disk.devices} == {(0.0, 0.0, 0.0)}
    assert (net.bytes_in, net.bytes_out, net.packets_in, net.packets_out) == (0.0, 0.0, 0.0, 0.0)
    assert cpu.overall is None
    assert {c.usage for c in cpu.cores} == {None}


def test_counter_reset_gives_zero_then_resumes(tree: Tree) -> None:
    """A counter that drops (driver reload) reads 0 for that interval, then rates resume from it (the first
    rise proves the reset and is spread over the 2 s since the last reading before the drop)."""
    tree.collect("disk", 100.0)
    tree.collect("network", 100.0)
    tree.disks["sda"] = [8, 0, 5, 80, 3, 48]
    tree.nics["eth0"] = [1000, 10, 500, 5]
    disk, net = tree.collect("disk", 101.0), tree.collect("network", 101.0)
    assert (disk.devices[0].read_rate, disk.devices[0].write_rate, disk.devices[0].iops) == (0.0, 0.0, 0.0)
    assert (net.bytes_in, net.bytes_out, net.packets_in, net.packets_out) == (0.0, 0.0, 0.0, 0.0)
    tree.disks["sda"] = [8, 0, 105, 2080, 3, 48]
    tree.nics["eth0"] = [501_000, 510, 500, 5]
    disk, net = tree.collect("disk", 102.0), tree.collect("network", 102.0)
    assert (disk.devices[0].read_rate, disk.devices[0].iops) == (512_000.0, 50.0)  # 2000*512 over 2 s
    assert (net.bytes_in, net.packets_in) == (250_000.0, 250.0)
    tree.disks["sda"] = [8, 0, 205, 4080, 3, 48]
    tree.nics["eth0"] = [1_001_000, 1010, 500, 5]
    disk, net = tree.collect("disk", 103.0), tree.collect("network", 103.0)
    assert (disk.devices[0].read_rate, disk.devices[0].iops) == (1_024_000.0, 100.0)  # 2000*512 in 1 s
    assert (net.bytes_in, net.packets_in) == (500_000.0, 500.0)


def test_network_rates_on_increase_exclude_loopback(tree: Tree) -> None:
    """eth0 moves 2 MB in and 400 kB out in 2 s; loopback traffic is not counted."""
    tree.collect("network", 100.0)
    tree.nics["eth0"] = [12_000_000, 22_000, 2_400_000, 11_000]
    tree.nics["lo"] = [900_000, 9000, 900_000, 9000]
    net = tree.collect("network", 102.0)
    eth0 = net.interfaces[0]
    assert (eth0.bytes_in, eth0.bytes_out, eth0.packets_in, eth0.packets_out) == (
        1_000_000.0, 200_000.0, 1000.0, 500.0,
    )
    assert (net.bytes_in, net.bytes_out, net.packets_in, net.packets_out) == (
        1_000_000.0, 200_000.0, 1000.0, 500.0,
    )


def test_cpu_usage_per_core_and_overall(tree: Tree) -> None:
    """Each core's busy share of its own ticks; overall from the aggregate line; idle core is 0."""
    tree.collect("cpu", 100.0)
    deltas = {  # index into CORE: 0 user, 2 system, 3 idle, 4 iowait, 6 softirq, 7 steal
        0: {0: 30, 3: 70},  # 30 %
        1: {2: 10, 3: 90},  # 10 %
        2: {3: 100},  # 0 %
        3: {0: 50, 4: 50},  # iowait is not busy: 50 %
        4: {0: 25, 6: 25, 3: 50},  # softirq is busy: 50 %
        5: {7: 100},  # steal is busy: 100 %
        6: {0: 100},  # 100 %
    }  # cpu7 does not move at all
    for core, change in deltas.items():
        for column, ticks in change.items():
            tree.cores[core][column] += ticks
    cpu = tree.collect("cpu", 101.0)
    assert [c.usage for c in cpu.cores] == [30.0, 10.0, 0.0, 50.0, 50.0, 100.0, 100.0, None]
    # aggregate: busy 30+10+50+25+25+100+100 = 340, idle+iowait 70+90+100+50+50 = 360
    assert cpu.overall == 48.57


def test_cpu_added_and_removed(tree: Tree) -> None:
    """A core that goes offline disappears; one that appears has no usage until its second reading."""
    tree.collect("cpu", 100.0)
    del tree.cores[7]
    tree.cores[8] = list(CORE)
    for times in tree.cores.values():
        times[0] += 20
        times[3] += 80
    cpu = tree.collect("cpu", 101.0)
    assert [c.id for c in cpu.cores] == [0, 1, 2, 3, 4, 5, 6, 8]
    assert [c.usage for c in cpu.cores] == [20.0] * 7 + [None]
    tree.cores[8][0] += 60
    tree.cores[8][3] += 40
    assert tree.collect("cpu", 102.0).cores[-1].usage == 60.0


def test_disk_added_and_removed(tree: Tree) -> None:
    """A hot-unplugged disk leaves the list; a new one is counted, at 0 for its first interval."""
    tree.collect("disk", 100.0)
    del tree.disks["nvme0n1"], tree.disks["nvme0n1p1"]
    shutil.rmtree(tree.root / "sys/block/nvme0n1")
    tree.disks["sde"] = [8, 64, 50, 400, 0, 0]
    (tree.root / "sys/block/sde").mkdir()
    (tree.root / "sys/block/sde/dev").write_text("8:64\n")
    disk = tree.collect("disk", 101.0)
    assert [d.name for d in disk.devices] == ["sda", "sdb", "sdc", "cciss/c0d0", "sde"]
    assert (disk.devices[-1].read_rate, disk.devices[-1].iops) == (0.0, 0.0)
    tree.disks["sde"] = [8, 64, 60, 560, 0, 0]
    disk = tree.collect("disk", 102.0)
    assert (disk.devices[-1].read_rate, disk.devices[-1].iops) == (81_920.0, 10.0)  # 160 * 512
    assert disk.io_read == 81_920.0


def test_interface_added_and_removed(tree: Tree) -> None:
    """A removed interface leaves the list; a new one starts at 0, then gets real rates."""
    tree.collect("network", 100.0)
    del tree.nics["wlan0"]
    tree.nics["tun0"] = [5000, 50, 1000, 10]
    net = tree.collect("network", 101.0)
    assert [i.name for i in net.interfaces] == ["eth0", "eth0:1", "tun0"]
    assert net.bytes_in == 0.0
    tree.nics["tun0"] = [6000, 60, 1000, 10]
    net = tree.collect("network", 102.0)
    assert (net.interfaces[-1].bytes_in, net.bytes_in, net.packets_in) == (1000.0, 1000.0, 10.0)
