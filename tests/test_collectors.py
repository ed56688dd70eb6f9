"""Collectors and system info read whole fixture trees through injected proc_root/sys_root."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import FIXTURES, require_command

from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.collectors.disk import physical_mountpoints, whole_disks
from tracklab_sysmon.collectors.system import read_system_info
from tracklab_sysmon.collectors.thermal import CpuThermal
from tracklab_sysmon.model import CpuTimes, DiskDeviceSample

NOW = 1000.0


def collect(scenario: str | pathlib.Path, statvfs=None) -> dict[str, object]:
    """One collect() of every default host collector on a tree, keyed by its name (cpu, memory, disk, network)."""
    root = pathlib.Path(scenario) if isinstance(scenario, pathlib.Path) else FIXTURES / scenario
    found = default_collectors(str(root / "proc"), str(root / "sys"), statvfs=statvfs)
    return {c.name: c.collect(NOW) for c in found if c.name in ("cpu", "memory", "disk", "network")}


# ---------------------------------------------------------------- cpu: temperatures and frequencies


def test_coretemp_two_packages_map_hyperthreads_by_core_id() -> None:
    """Each CPU gets the `Core N` sensor of its own package and core_id; siblings share it."""
    cpu = collect("workstation")["cpu"]
    temps = {c.id: c.temperature for c in cpu.cores}
    # package 0: Core 0 52.0, Core 1 unreadable; package 1: Core 0 58.0, Core 1 60.5
    assert temps == {0: 52.0, 1: None, 2: 58.0, 3: 60.5, 4: 52.0, 5: None, 6: 58.0, 7: 60.5}


def test_package_temperature_is_package_0_whatever_the_hwmon_order() -> None:
    """cpu.temperature is `Package id 0` (55.0) although hwmon2 (probed first) is package 1."""
    assert collect("workstation")["cpu"].temperature == 55.0


def test_coretemp_of_old_kernels_names_the_package_physical_id(tmp_path: pathlib.Path) -> None:
    """Kernels before 3.x label the package sensor `Physical id 0`; it is still the package temperature."""
    hwmon = tmp_path / "class/hwmon/hwmon0"
    hwmon.mkdir(parents=True)
    for name, text in {"name": "coretemp", "temp1_label": "Physical id 0", "temp1_input": "47000",
                       "temp2_label": "Core 0", "temp2_input": "45000"}.items():
        (hwmon / name).write_text(text + "\n")
    topology = tmp_path / "devices/system/cpu/cpu0/topology"
    topology.mkdir(parents=True)
    (topology / "physical_package_id").write_text("0\n")
    (topology / "core_id").write_text("0\n")
    thermal = CpuThermal(str(tmp_path))
    assert (thermal.package_temperature(), thermal.core_temperatures()) == (47.0, {0: 45.0})


def test_k10temp_gives_package_temperature_and_no_core_temperatures() -> None:
    """k10temp's Tctl is the package temperature; with no per-core sensor core temps are None."""
    cpu = collect("amd-desktop")["cpu"]
    assert cpu.temperature == 67.125
    assert [c.temperature for c in cpu.cores] == [None, None, None, None]


def test_k10temp_prefers_tdie_over_offset_tctl(tmp_path: pathlib.Path) -> None:
    """When k10temp shows both, Tdie (the real die temperature) wins over Tctl (which has an offset)."""
    hwmon = tmp_path / "class/hwmon/hwmon0"
    hwmon.mkdir(parents=True)
    for name, text in {"name": "k10temp", "temp1_label": "Tctl", "temp1_input": "95000",
                       "temp2_label": "Tdie", "temp2_input": "68000"}.items():
        (hwmon / name).write_text(text + "\n")
    assert CpuThermal(str(tmp_path)).package_temperature() == 68.0


def test_thermal_zone_fallback_with_negative_temperature() -> None:
    """Without hwmon a `cpu-thermal` zone gives the package temperature, negative values kept."""
    cpu = collect("arm-board")["cpu"]
    assert cpu.temperature == -12.5
    assert [c.temperature for c in cpu.cores] == [None] * 4


def test_no_sensors_means_null_not_zero() -> None:
    """A tree without hwmon or thermal zones reports None temperatures, never 0."""
    cpu = collect("vm-capture")["cpu"]
    assert cpu.temperature is None
    assert [c.temperature for c in cpu.cores] == [None, None]  # frequency: cpuinfo's (test_vm_gaps.py)


def test_cpufreq_present_missing_and_unreadable() -> None:
    """scaling_cur_freq, then cpuinfo_cur_freq, in MHz; no cpufreq dir: cpuinfo's MHz; unreadable: None."""
    cpu = collect("workstation")["cpu"]
    freqs = {c.id: c.frequency for c in cpu.cores}
    assert freqs == {
        0: 3600.0, 1: 3599.998, 2: 2100.0, 3: 800.0, 4: 1200.0,
        5: 2800.0,  # only cpuinfo_cur_freq
        6: 2100.0,  # no cpufreq directory: /proc/cpuinfo's `cpu MHz`
        7: None,  # scaling_cur_freq is a directory: the read fails even as root
    }
    assert [c.frequency for c in collect("arm-board")["cpu"].cores] == [None] * 4


PRINT_CORES = """
import json, sys
from tracklab_sysmon.collectors.cpu import CpuCollector
from tracklab_sysmon.hotpath import open_reader
root = sys.argv[1]
cpu = CpuCollector(open_reader(root + "/proc"), proc_root=root + "/proc", sys_root=root + "/sys")
print(json.dumps({c.id: [c.frequency, c.temperature] for c in cpu.collect(0.0).cores}))
"""


def test_unreadable_0400_files_read_as_none(tmp_path: pathlib.Path) -> None:
    """Root-only 0400 cpufreq and hwmon files, read by a process that may not, give None, not 0."""
    root = tmp_path / "t"
    shutil.copytree(FIXTURES / "workstation", root, symlinks=True)
    targets = [root / "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq",
               root / "sys/class/hwmon/hwmon3/temp2_input"]  # package 0, Core 0
    argv = [sys.executable, "-c", PRINT_CORES, str(root)]
    if os.geteuid() == 0:
        # Root reads anything through CAP_DAC_OVERRIDE: give the files to another user and run the
        # reader as root without that capability, so the 0400 mode really refuses it.
        for path in targets:
            os.chown(path, 65534, 65534)
            path.chmod(0o400)
        argv = [require_command("setpriv"), "--bounding-set=-dac_override,-dac_read_search", *argv]
    else:
        for path in targets:
            path.chmod(0o000)
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout
    assert json.loads(out) == {
        "0": [None, None], "1": [3599.998, None], "2": [2100.0, 58.0], "3": [800.0, 60.5],
        "4": [1200.0, None], "5": [2800.0, None], "6": [2100.0, 58.0], "7": [None, 60.5],
    }


def test_cpu_first_collect_has_times_load_processes_threads_but_no_usage() -> None:
    """The first reading has cumulative times, loadavg, process and thread counts, and usage None."""
    cpu = collect("workstation")["cpu"]
    assert cpu.overall is None
    assert [c.usage for c in cpu.cores] == [None] * 8
    assert cpu.cores[0].times == CpuTimes(100.0, 1.0, 20.0, 800.0, 5.0, 0.5, 1.5, 0.1)
    assert cpu.load_average == (2.5, 2.1, 1.8)
    assert cpu.processes == 3  # proc/1, proc/2, proc/4242
    assert cpu.threads == 1500  # from loadavg, not from walking processes
    old = collect("old-kernel")["cpu"]
    assert (old.processes, old.threads, len(old.cores)) == (2, 180, 2)


# ---------------------------------------------------------------- memory and swap


def test_memory_used_is_total_minus_available() -> None:
    """used = MemTotal - MemAvailable, usage = used/total, swap from SwapTotal - SwapFree."""
    mem = collect("workstation")["memory"]
    assert mem.total == 33_554_432_000
    assert mem.available == 20_971_520_000
    assert mem.used == 12_582_912_000  # (32768000 - 20480000) kB
    assert mem.usage == 37.5
    assert (mem.swap.used, mem.swap.total, mem.swap.percentage) == (2_147_483_648, 8_589_934_592, 25.0)


def test_memory_on_old_kernel_uses_the_estimate() -> None:
    """Without MemAvailable, used = total - (MemFree + Buffers + Cached)."""
    mem = collect("old-kernel")["memory"]
    assert mem.used == 775_084 * 1024  # 2075084 - 1300000 kB
    assert mem.usage == 37.35  # 775084 / 2075084
    assert (mem.swap.used, mem.swap.percentage) == (0, 0.0)


def test_no_swap_is_zero_percent_of_zero() -> None:
    """SwapTotal 0 gives swap used 0, total 0 and 0 %, a known state rather than null."""
    swap = collect("amd-desktop")["memory"].swap
    assert (swap.used, swap.total, swap.percentage) == (0, 0, 0.0)


# ---------------------------------------------------------------- disk


def test_whole_disk_selection_on_the_workstation() -> None:
    """IO counts sda, sdb, sdc, nvme0n1, cciss/c0d0: no partitions, loop, ram, zram, dm or md on disks."""
    disk = collect("workstation")["disk"]
    assert [d.name for d in disk.devices] == ["sda", "sdb", "sdc", "nvme0n1", "cciss/c0d0"]
    assert disk.devices[0] == DiskDeviceSample("sda", 10_240_000, 20_480_000, 1000, 2000, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("scenario", "expected"),
    [
        ("vm-capture", ["vda"]),
        ("amd-desktop", ["nvme0n1"]),
        ("arm-board", ["mmcblk0"]),
        ("old-kernel", ["hda", "sda"]),  # no /sys: decided from names alone
    ],
)
def test_whole_disk_selection_per_tree(scenario: str, expected: list[str]) -> None:
    """Each tree's counted disks are its real whole disks only."""
    assert [d.name for d in collect(scenario)["disk"].devices] == expected


def test_whole_disks_without_sysfs_drops_partitions_by_name() -> None:
    """With no /sys/block, `nvme0n1p1` and `sda1` are partitions only when their disk is listed."""
    names = frozenset({"nvme0n1", "nvme0n1p1", "sda", "sda1", "sdb1", "md0", "dm-0", "loop3", "zram0"})
    assert whole_disks(names, "/nonexistent/block") == {"nvme0n1", "sda", "sdb1"}


def test_disk_usage_is_null_on_a_captured_tree() -> None:
    """Without statvfs (a captured tree has no live file systems) usage, used and total are None."""
    disk = collect("workstation")["disk"]
    assert (disk.usage, disk.used, disk.total) == (None, None, None)


def test_physical_mountpoints_once_per_device_with_escapes() -> None:
    """Block file systems only, each device once, loop images skipped, `\\040` decoded."""
    points = physical_mountpoints(str(FIXTURES / "workstation" / "proc"))
    assert points == ["/", "/boot/efi", "/home", "/srv", "/media/usb stick"]


def test_disk_usage_sums_statvfs_like_df() -> None:
    """total/used sum f_blocks and f_blocks - f_bfree, usage is used/(used + avail) as df; gone mounts skip."""
    results = {
        "/": os.statvfs_result((4096, 4096, 1000, 400, 300, 0, 0, 0, 0, 255)),
        "/home": os.statvfs_result((4096, 4096, 500, 500, 500, 0, 0, 0, 0, 255)),
    }

    def statvfs(path: str) -> os.statvfs_result:
        if path not in results:
            raise FileNotFoundError(path)
        return results[path]

    disk = collect("workstation", statvfs=statvfs)["disk"]
    assert disk.total == 1500 * 4096
    assert disk.used == 600 * 4096
    assert disk.usage == 42.86  # 600 / (600 + 800)


# ---------------------------------------------------------------- network


def test_network_excludes_loopback_and_keeps_aliases() -> None:
    """Every interface but `lo` is listed with its cumulative counters; first rates are 0."""
    net = collect("workstation")["network"]
    assert [i.name for i in net.interfaces] == ["eth0", "eth0:1", "wlan0"]
    eth0 = net.interfaces[0]
    assert (eth0.bytes_recv, eth0.bytes_sent, eth0.packets_recv, eth0.packets_sent) == (
        10_000_000, 2_000_000, 20_000, 10_000,
    )
    assert (net.bytes_in, net.bytes_out, net.packets_in, net.packets_out) == (0.0, 0.0, 0.0, 0.0)


def test_established_connections_from_snmp() -> None:
    """connections is Tcp CurrEstab of /proc/net/snmp."""
    assert collect("workstation")["network"].connections == 17
    assert collect("old-kernel")["network"].connections == 6


def test_connections_null_when_snmp_is_hidden(tmp_path: pathlib.Path) -> None:
    """A tree without /proc/net/snmp (a hardened container) reports connections None, rates still."""
    shutil.copytree(FIXTURES / "workstation", tmp_path / "t", symlinks=True)
    (tmp_path / "t/proc/net/snmp").unlink()
    net = collect(tmp_path / "t")["network"]
    assert net.connections is None
    assert len(net.interfaces) == 3


def test_connections_null_when_snmp_is_garbled(tmp_path: pathlib.Path) -> None:
    """A Tcp table cut off before CurrEstab gives connections None, not an error for the section."""
    shutil.copytree(FIXTURES / "workstation", tmp_path / "t", symlinks=True)
    (tmp_path / "t/proc/net/snmp").write_text("Tcp: RtoAlgorithm RtoMin CurrEstab\nTcp: 1 200\n")
    assert collect(tmp_path / "t")["network"].connections is None


# ---------------------------------------------------------------- system info


def test_system_info_of_the_workstation_tree() -> None:
    """Static info comes from the tree: cores from topology, threads from /proc/stat, kernel files."""
    root = FIXTURES / "workstation"
    info = read_system_info(proc_root=str(root / "proc"), sys_root=str(root / "sys"))
    assert info.cpu_model == "Intel(R) Xeon(R) Silver 4110 CPU @ 2.10GHz"
    assert (info.cpu_cores, info.cpu_threads) == (4, 8)
    assert (info.memory_total, info.swap_total) == (33_554_432_000, 8_589_934_592)
    assert (info.hostname, info.node_id, info.kernel, info.architecture) == (
        "workstation", "workstation", "6.8.0-45-generic", "x86_64",
    )
    assert info.boot_time == 1_764_300_000_000
    assert info.ip_address is None  # never the host's address for a captured tree
    assert info.disk_total is None


def test_system_info_on_sparse_trees() -> None:
    """Missing kernel files give 'unknown'/None; cores fall back to cpuinfo when /sys is absent."""
    old = FIXTURES / "old-kernel"
    info = read_system_info(proc_root=str(old / "proc"), sys_root=str(old / "sys"))
    assert (info.cpu_cores, info.cpu_threads, info.hostname, info.kernel) == (1, 2, "unknown", None)
    arm = FIXTURES / "arm-board"
    info = read_system_info(proc_root=str(arm / "proc"), sys_root=str(arm / "sys"))
    assert (info.cpu_model, info.cpu_cores, info.cpu_threads, info.architecture) == (
        "BCM2835", 4, 4, "unknown",
    )


# ---------------------------------------------------------------- review fixes: ZFS pools, unknown rates


def _tree_copy(tmp_path: pathlib.Path, scenario: str = "workstation") -> pathlib.Path:
    root = tmp_path / scenario
    shutil.copytree(FIXTURES / scenario, root, symlinks=True)
    return root


def test_zfs_datasets_count_their_pool_free_space_once(tmp_path: pathlib.Path) -> None:
    """Two datasets of one pool add their used space; the pool's free space (which each reports) counts once."""
    root = _tree_copy(tmp_path)
    (root / "proc/mounts").write_text(
        "rpool/ROOT/ubuntu / zfs rw 0 0\nrpool/home /home zfs rw 0 0\n/dev/sdb1 /data ext4 rw 0 0\n"
    )
    avail = 1000  # blocks free in the pool, as both datasets report
    results = {  # (bsize, frsize, blocks, bfree, bavail, ...): a dataset's blocks = its used + pool free
        "/": os.statvfs_result((4096, 4096, 300 + avail, avail, avail, 0, 0, 0, 0, 255)),
        "/home": os.statvfs_result((4096, 4096, 200 + avail, avail, avail, 0, 0, 0, 0, 255)),
        "/data": os.statvfs_result((4096, 4096, 100, 60, 50, 0, 0, 0, 0, 255)),
    }
    disk = collect(root, statvfs=results.__getitem__)["disk"]
    assert disk.used == (300 + 200 + 40) * 4096
    assert disk.total == (300 + 200 + avail + 100) * 4096
    assert disk.usage == round(100.0 * 540 / (540 + avail + 50), 2)


def test_io_rates_are_null_when_no_whole_disk_is_counted(tmp_path: pathlib.Path) -> None:
    """Only loop/ram devices (or no diskstats at all) means IO is unknown: null, not 0; usage still stands."""
    root = _tree_copy(tmp_path)
    (root / "proc/diskstats").write_text("   7       0 loop0 1 0 8 0 0 0 0 0 0 0 0 0 0 0\n")
    root_only = {"/": os.statvfs_result((4096, 4096, 100, 60, 50, 0, 0, 0, 0, 255))}

    def statvfs(path: str) -> os.statvfs_result:
        if path not in root_only:
            raise FileNotFoundError(path)
        return root_only[path]

    disk = collect(root, statvfs=statvfs)["disk"]
    assert (disk.io_read, disk.io_write, disk.iops, disk.devices) == (None, None, None, ())
    (root / "proc/diskstats").unlink()
    disk = collect(root, statvfs=statvfs)["disk"]
    assert disk.io_read is None and disk.total == 100 * 4096


def test_network_rates_are_null_with_only_loopback(tmp_path: pathlib.Path) -> None:
    """A machine whose only interface is `lo` has unknown network rates (null), not zero traffic."""
    root = _tree_copy(tmp_path)
    (root / "proc/net/dev").write_text(
        "Inter-|   Receive                            |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes packets\n"
        "    lo:    3193      29    0    0    0     0          0         0"
        "     3193      29    0    0    0     0       0          0\n"
    )
    net = collect(root)["network"]
    assert (net.bytes_in, net.bytes_out, net.packets_in, net.packets_out, net.interfaces) == (
        None, None, None, None, ()
    )
