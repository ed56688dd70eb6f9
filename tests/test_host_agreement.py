"""Against this machine: collectors on the real /proc agree with nproc, free, /proc/loadavg and df."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import require_command

from tracklab_sysmon.collectors.cpu import CpuCollector
from tracklab_sysmon.collectors.disk import DiskCollector, physical_mountpoints
from tracklab_sysmon.collectors.memory import MemoryCollector
from tracklab_sysmon.collectors.system import read_system_info
from tracklab_sysmon.hotpath import open_reader

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads a live Linux /proc")

MIB = 1024 * 1024


def run(*argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}  # OMP_* changes nproc
    env["LC_ALL"] = "C"
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout


def test_cpu_threads_match_online_cpus_and_nproc() -> None:
    """cpu_threads is the count of online CPUs, which is what `nproc` prints when not pinned."""
    nproc = int(run(require_command("nproc")).strip())
    online = int(run(require_command("getconf"), "_NPROCESSORS_ONLN").strip())
    info = read_system_info()
    assert info.cpu_threads == online
    if len(os.sched_getaffinity(0)) == online:  # a pinned test run makes nproc print fewer
        assert info.cpu_threads == nproc
    assert info.cpu_cores is not None and 1 <= info.cpu_cores <= info.cpu_threads


def free_total_and_used() -> tuple[int, int]:
    """(total, total - available) from `free -b`, whichever procps version defines its `used`."""
    lines = run(require_command("free"), "-b").splitlines()
    header = lines[0].split()
    mem = lines[1].split()[1:]  # values under the header, without the "Mem:" label
    total = int(mem[header.index("total")])
    return total, total - int(mem[header.index("available")])


def test_memory_total_and_used_agree_with_free() -> None:
    """memory.total equals free's total; used = total - available lies within two `free` runs."""
    collector = MemoryCollector(open_reader("/proc"))
    total_before, used_before = free_total_and_used()
    mem = collector.collect(0.0)
    total_after, used_after = free_total_and_used()
    assert mem.total == total_before == total_after
    slack = 32 * MIB  # a live system allocates between the three reads
    assert min(used_before, used_after) - slack <= mem.used <= max(used_before, used_after) + slack
    assert mem.used + mem.available == mem.total


def test_load_average_and_threads_agree_with_proc_loadavg() -> None:
    """loadAverage is /proc/loadavg's first three numbers (read before or after), threads its last-but-one."""
    collector = CpuCollector(open_reader("/proc"), proc_root="/proc", sys_root="/sys")
    with open("/proc/loadavg") as f:
        before = f.read().split()
    cpu = collector.collect(0.0)
    with open("/proc/loadavg") as f:
        after = f.read().split()
    readings = [tuple(float(x) for x in r[:3]) for r in (before, after)]
    assert cpu.load_average in readings
    thread_counts = [int(r[3].partition("/")[2]) for r in (before, after)]
    assert min(thread_counts) - 50 <= cpu.threads <= max(thread_counts) + 50
    assert len(cpu.cores) == os.cpu_count()


def df_physical() -> dict[str, tuple[int, int]]:
    """device -> (size, used) for each block device `df -B1` shows, first mount only, no loop images."""
    lines = run(require_command("df"), "-B1", "-l", "--output=source,size,used").splitlines()[1:]
    found: dict[str, tuple[int, int]] = {}
    for line in lines:
        source, size, used = line.split()
        if source.startswith("/dev/") and not source.startswith("/dev/loop"):
            found.setdefault(source, (int(size), int(used)))
    return found


def test_disk_total_and_used_agree_with_df() -> None:
    """disk.total/used sum df's size/used over physical devices (here: the one ext4 root)."""
    if not physical_mountpoints("/proc"):
        pytest.skip("no physical file system mounted here (e.g. an overlay-only container)")
    collector = DiskCollector(open_reader("/proc"), proc_root="/proc", sys_root="/sys")
    before = df_physical()
    disk = collector.collect(0.0)
    after = df_physical()
    assert disk.total == sum(size for size, _ in before.values()) == sum(size for size, _ in after.values())
    used = [sum(u for _, u in d.values()) for d in (before, after)]
    assert min(used) - 16 * MIB <= disk.used <= max(used) + 16 * MIB
    assert disk.usage is not None and 0.0 <= disk.usage <= 100.0


def test_root_alone_matches_df_of_root_when_it_is_the_only_device() -> None:
    """On a machine whose only physical file system is `/`, disk.total is exactly `df -B1 /`."""
    devices = df_physical()
    if len(devices) != 1:
        pytest.skip(f"{len(devices)} physical file systems here; the summed check above covers them")
    line = run(require_command("df"), "-B1", "--output=size", "/").splitlines()[1]
    collector = DiskCollector(open_reader("/proc"), proc_root="/proc", sys_root="/sys")
    assert collector.collect(0.0).total == int(line)


def test_interface_addresses_agree_with_psutil() -> None:
    """The ioctl reader (no psutil in the service) gives each interface's primary IPv4 address: the
    first one psutil's getifaddrs lists for it; interfaces without IPv4 are left out."""
    import socket

    import psutil

    from tracklab_sysmon.collectors.system import ipv4_by_interface

    listed = {
        name: [a.address for a in addrs if a.family == socket.AF_INET] for name, addrs in psutil.net_if_addrs().items()
    }
    assert ipv4_by_interface() == {name: found[:1] for name, found in listed.items() if found}
