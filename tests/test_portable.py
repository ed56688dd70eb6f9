"""The psutil backend's collectors against a stand-in psutil: each OS's field names, nulls, pools and resets."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

import pytest

from tracklab_sysmon.collectors.network import NetworkCollector
from tracklab_sysmon.collectors.portable import backend_health, portable_collectors
from tracklab_sysmon.collectors.portable.cpu import PortableCpuCollector
from tracklab_sysmon.collectors.portable.disk import physical_mounts
from tracklab_sysmon.collectors.portable.gpus import AMD_LINUX_ONLY
from tracklab_sysmon.collectors.portable.reader import PsutilCounterReader, cpu_times
from tracklab_sysmon.collectors.portable.system import fill_from_psutil
from tracklab_sysmon.collectors.portable.wintcp import AF_INET, AF_INET6, TcpEstablished
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.model import CpuTimes, SystemInfo
from tracklab_sysmon.platforms import select

# psutil's records, with the fields each OS really has.
MacTimes = namedtuple("MacTimes", "user nice system idle")
WinTimes = namedtuple("WinTimes", "user system idle interrupt dpc")
Freq = namedtuple("Freq", "current min max")
DiskIO = namedtuple("DiskIO", "read_count write_count read_bytes write_bytes read_time write_time")
NetIO = namedtuple("NetIO", "bytes_sent bytes_recv packets_sent packets_recv errin errout dropin dropout")
Part = namedtuple("Part", "device mountpoint fstype opts")
Usage = namedtuple("Usage", "total used free percent")
Mem = namedtuple("Mem", "total available percent used free")
Swap = namedtuple("Swap", "total used free percent sin sout")
GIB = 1 << 30


class StandInPsutil(SimpleNamespace):
    """The psutil functions the backend calls, answering from plain attributes a test sets."""

    def __init__(self) -> None:
        super().__init__(
            times=[MacTimes(10.0, 0.0, 5.0, 85.0), MacTimes(20.0, 0.0, 10.0, 70.0)],
            freqs=[Freq(3228.0, 0.0, 0.0)],
            disks={"disk0": DiskIO(100, 50, 4096 * 100, 4096 * 50, 0, 0)},
            nics={"lo0": NetIO(9, 9, 1, 1, 0, 0, 0, 0), "en0": NetIO(1000, 2000, 10, 20, 0, 0, 0, 0)},
            parts=[Part("/dev/disk3s1s1", "/", "apfs", "ro"),
                   Part("/dev/disk3s5", "/System/Volumes/Data", "apfs", "rw"),
                   Part("/dev/disk4s1", "/Volumes/USB", "exfat", "rw")],
            usages={"/": Usage(500 * GIB, 10 * GIB, 300 * GIB, 3.2),
                    "/System/Volumes/Data": Usage(500 * GIB, 190 * GIB, 300 * GIB, 38.8),
                    "/Volumes/USB": Usage(64 * GIB, 16 * GIB, 48 * GIB, 25.0)},
            mem=Mem(16 * GIB, 6 * GIB, 62.5, 9 * GIB, 1 * GIB),
            swap=Swap(2 * GIB, GIB // 2, 3 * GIB // 2, 25.0, 0, 0),
            load=(1.5, 1.25, 1.0),
            pid_list=[1, 2, 3],
        )

    def cpu_times(self, percpu: bool = False):
        return list(self.times)

    def cpu_freq(self, percpu: bool = False):
        if isinstance(self.freqs, Exception):
            raise self.freqs
        return list(self.freqs)

    def disk_io_counters(self, perdisk: bool = False, nowrap: bool = True):
        assert perdisk and not nowrap  # raw counters: rates.py, not psutil, handles a reset
        return dict(self.disks)

    def net_io_counters(self, pernic: bool = False, nowrap: bool = True):
        assert pernic and not nowrap
        return dict(self.nics)

    def disk_partitions(self, all: bool = False):
        return list(self.parts)

    def disk_usage(self, path: str):
        return self.usages[path]

    def virtual_memory(self):
        return self.mem

    def swap_memory(self):
        return self.swap

    def getloadavg(self):
        return self.load

    def pids(self):
        return list(self.pid_list)

    def cpu_count(self, logical: bool = True):
        return 8 if logical else 4

    def boot_time(self):
        return 1_700_000_000.0


def _collectors(platform: str, ps: StandInPsutil) -> dict:
    return {c.name: c for c in portable_collectors(select(platform, "psutil"), ps=ps, host_gpus=False)}


def test_windows_interrupt_and_dpc_are_irq_and_softirq():
    """Windows' `interrupt` and `dpc` modes land in irq and softirq; modes an OS lacks are 0 s, not missing."""
    assert cpu_times(WinTimes(1.0, 2.0, 3.0, 0.5, 0.25)) == CpuTimes(
        user=1.0, system=2.0, idle=3.0, irq=0.5, softirq=0.25)
    assert cpu_times(MacTimes(1.0, 2.0, 3.0, 4.0)) == CpuTimes(user=1.0, nice=2.0, system=3.0, idle=4.0)


def test_cpu_usage_comes_from_per_cpu_time_deltas():
    """Per-core and overall usage are busy shares of each interval; the first tick has none yet."""
    ps = StandInPsutil()
    cpu = _collectors("darwin", ps)["cpu"]
    first = cpu.collect(0.0)
    assert first.overall is None and [c.usage for c in first.cores] == [None, None]
    ps.times = [MacTimes(15.0, 0.0, 10.0, 95.0), MacTimes(20.0, 0.0, 10.0, 80.0)]  # core 0: 10 busy of 20
    second = cpu.collect(1.0)
    assert [c.usage for c in second.cores] == [50.0, 0.0]
    assert second.overall == 33.33  # 10 busy of 30 across both cores


def test_macos_cpu_gives_one_frequency_for_all_cores_and_nulls_threads():
    """macOS: psutil's single frequency goes to each core; no threads or temperature; load is real."""
    cpu = _collectors("darwin", StandInPsutil())["cpu"].collect(0.0)
    assert [c.frequency for c in cpu.cores] == [3228.0, 3228.0]
    assert (cpu.threads, cpu.temperature, cpu.processes) == (None, None, 3)
    assert cpu.load_average == (1.5, 1.25, 1.0)


def test_frequency_errors_and_zeroes_are_null():
    """A psutil that cannot read the clock (old psutil on Apple Silicon) or reads 0 gives null, not 0."""
    ps = StandInPsutil()
    ps.freqs = FileNotFoundError("no hw.cpufrequency")
    assert {c.frequency for c in _collectors("darwin", ps)["cpu"].collect(0.0).cores} == {None}
    ps.freqs = [Freq(0.0, 0.0, 0.0)]
    assert {c.frequency for c in _collectors("darwin", ps)["cpu"].collect(0.0).cores} == {None}


def test_windows_has_no_load_average():
    """Windows: loadAverage is null (psutil's emulation would report 0 at first), processes still counted."""
    cpu = _collectors("win32", StandInPsutil())["cpu"].collect(0.0)
    assert cpu.load_average is None and cpu.processes == 3


def test_memory_used_is_total_minus_available():
    """memory.used = total - available as on Linux (not psutil's OS-specific `used`); swap from its free."""
    mem = _collectors("darwin", StandInPsutil())["memory"].collect(0.0)
    assert (mem.total, mem.available, mem.used, mem.usage) == (16 * GIB, 6 * GIB, 10 * GIB, 62.5)
    assert (mem.swap.total, mem.swap.used, mem.swap.percentage) == (2 * GIB, GIB // 2, 25.0)


def test_apfs_volumes_share_their_container_once():
    """Two APFS volumes of disk3 are one container: its size and free space once, used = size - free."""
    disk = _collectors("darwin", StandInPsutil())["disk"].collect(0.0)
    # disk3: size 500, free 300 -> used 200 (all its volumes); the USB stick: used 16 of 64, free 48.
    assert disk.used == (200 + 16) * GIB
    assert disk.total == (500 + 64) * GIB
    assert disk.usage == round(100 * 216 / (216 + 348), 2)


def test_mounts_are_counted_once_per_device_and_loop_images_skipped():
    """A device mounted twice is counted at its first mount; /dev/loop images never."""
    parts = [Part("/dev/sda1", "/", "ext4", ""), Part("/dev/sda1", "/srv", "ext4", ""),
             Part("/dev/loop3", "/snap/x", "squashfs", ""), Part("tank/home", "/home", "zfs", "")]
    assert physical_mounts(parts, select("linux", "psutil")) == [("/dev/sda1", "/", "ext4"), ("tank", "/home", "zfs")]


def test_disk_io_rates_and_a_counter_reset_never_spike():
    """Per-disk rates over the interval; a counter that goes back (reset) gives 0 for that interval."""
    ps = StandInPsutil()
    disk = _collectors("darwin", ps)["disk"]
    disk.collect(0.0)
    ps.disks = {"disk0": DiskIO(110, 60, 4096 * 200, 4096 * 60, 0, 0)}
    second = disk.collect(2.0)
    assert (second.io_read, second.io_write, second.iops) == (4096 * 50, 4096 * 5, 10.0)
    ps.disks = {"disk0": DiskIO(1, 1, 4096, 4096, 0, 0)}
    third = disk.collect(3.0)
    assert (third.io_read, third.io_write, third.iops) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(("platform", "loopback", "other"), [
    ("darwin", "lo0", "en0"), ("win32", "Loopback Pseudo-Interface 1", "Ethernet"), ("linux", "lo", "eth0"),
])
def test_network_skips_each_platforms_loopback(platform, loopback, other):
    """Loopback is lo0 on macOS, 'Loopback Pseudo-Interface N' on Windows, lo on Linux: never counted."""
    ps = StandInPsutil()
    ps.nics = {loopback: NetIO(5, 5, 1, 1, 0, 0, 0, 0), other: NetIO(1000, 2000, 10, 20, 0, 0, 0, 0)}
    net = _collectors(platform, ps)["network"]
    net.collect(0.0)
    ps.nics = {loopback: NetIO(9999, 9999, 99, 99, 0, 0, 0, 0), other: NetIO(1500, 4000, 15, 30, 0, 0, 0, 0)}
    sample = net.collect(1.0)
    assert [i.name for i in sample.interfaces] == [other]
    assert (sample.bytes_in, sample.bytes_out, sample.packets_in, sample.packets_out) == (2000.0, 500.0, 10.0, 5.0)


def test_macos_connections_are_null_with_the_reason_in_health():
    """macOS: connections is null (net_connections is slow and root-only there), and health names the reason."""
    collectors = portable_collectors(select("darwin"), ps=StandInPsutil(), host_gpus=False)
    net = next(c for c in collectors if c.name == "network")
    assert net.collect(0.0).connections is None
    health = backend_health(collectors)
    assert health["name"] == "psutil" and health["platform"] == "darwin"
    assert "network.connections" in health["nulls"] and "cpu.threads" in health["nulls"]


class StandInIphlpapi:
    """iphlpapi at its own boundary: GetTcpStatisticsEx fills dwCurrEstab per address family, or fails."""

    def __init__(self, established: dict[int, int]) -> None:
        self.established = established

    def GetTcpStatisticsEx(self, stats_ref, family: int) -> int:
        if family not in self.established:
            return 50  # ERROR_NOT_SUPPORTED: no such stack
        stats_ref._obj[8] = self.established[family]  # MIB_TCPSTATS.dwCurrEstab
        return 0


@pytest.mark.parametrize(("established", "expected"), [
    ({AF_INET: 7, AF_INET6: 3}, 10), ({AF_INET: 7}, 7), ({AF_INET6: 3}, None),
])
def test_windows_connections_come_from_tcp_statistics(established, expected):
    """Windows: dwCurrEstab of IPv4 plus IPv6 (none without an IPv6 stack); IPv4 failing is null."""
    reader = PsutilCounterReader(select("win32"), ps=StandInPsutil(),
                                 tcp_established=TcpEstablished(lambda: StandInIphlpapi(established)))
    net = NetworkCollector(reader)
    assert net.collect(0.0).connections == expected
    assert "network.connections" not in backend_health((PortableCpuCollector(reader),))["nulls"]


def test_tcp_statistics_are_unavailable_off_windows():
    """The real loader refuses anywhere but Windows (no ctypes.WinDLL), which the collectors turn into null."""
    with pytest.raises(OSError, match="only on Windows"):
        TcpEstablished()()


def test_an_interface_list_of_only_loopback_gives_unknown_rates():
    """With nothing but loopback, the network totals are null (unknown), not 0 — as under procfs."""
    ps = StandInPsutil()
    ps.nics = {"lo0": NetIO(5, 5, 1, 1, 0, 0, 0, 0)}
    sample = _collectors("darwin", ps)["network"].collect(0.0)
    assert sample.bytes_in is None and sample.interfaces == ()


@pytest.mark.parametrize(("platform", "names"), [
    ("darwin", ["amd", "nvidia", "apple"]), ("win32", ["amd", "nvidia"]), ("linux", ["amd", "nvidia"]),
])
def test_gpu_collectors_per_platform(platform, names):
    """NVIDIA everywhere, Apple on macOS only, AMD real on Linux and a stand-in elsewhere."""
    collectors = portable_collectors(select(platform, "psutil"), ps=StandInPsutil())
    gpus = [c for c in collectors if c.name in ("amd", "nvidia", "apple")]
    assert [c.name for c in gpus] == names
    amd = gpus[0]
    if platform != "linux":
        with pytest.raises(Unavailable, match=AMD_LINUX_ONLY):
            amd.collect(0.0)


def test_system_info_gaps_are_filled_from_psutil_only_under_psutil():
    """Off Linux, /proc gives no CPU count, memory or boot time: psutil fills them; procfs info is untouched."""
    empty = SystemInfo(platform="darwin", architecture="unknown", cpu_model=None, cpu_cores=None, cpu_threads=None,
                       memory_total=None, swap_total=None, disk_total=None, gpu_count=0, gpu_info=(),
                       hostname="mac", ip_address=None, node_id="mac", boot_time=None, kernel=None, version="x")
    ps = StandInPsutil()
    filled = fill_from_psutil(portable_collectors(select("darwin", "psutil"), ps=ps, host_gpus=False), empty, ps=ps)
    assert (filled.cpu_cores, filled.cpu_threads, filled.memory_total) == (4, 8, 16 * GIB)
    assert (filled.swap_total, filled.boot_time) == (2 * GIB, 1_700_000_000_000)
    assert fill_from_psutil((), empty, ps=ps) is empty


def test_linux_reader_reads_threads_and_connections_from_proc(tmp_path):
    """On Linux the psutil backend takes threads from /proc/loadavg and connections from /proc/net/snmp."""
    (tmp_path / "net").mkdir()
    (tmp_path / "loadavg").write_text("0.50 0.40 0.30 2/345 9999\n")
    (tmp_path / "net/snmp").write_text("Tcp: RtoAlgorithm CurrEstab\nTcp: 1 17\n")
    reader = PsutilCounterReader(select("linux", "psutil"), ps=StandInPsutil(), proc_root=str(tmp_path))
    assert reader.loadavg().threads == 345 and reader.tcp_established() == 17
    mac = PsutilCounterReader(select("darwin"), ps=StandInPsutil(), proc_root=str(tmp_path))
    with pytest.raises(OSError, match="AccessDenied"):
        mac.tcp_established()
