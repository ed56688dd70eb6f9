"""Static system information for /api/system/info, read once at start-up."""

from __future__ import annotations

import os
import platform
import socket
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from .. import _procfs as procfs
from .. import _sysfs as sysfs
from ..model import AcceleratorSample, Snapshot, SystemInfo
from .base import reading_host


def read_system_info(
    *,
    node_id: str | None = None,
    proc_root: str = "/proc",
    sys_root: str = "/sys",
    accelerators: Sequence[AcceleratorSample] = (),
    disk_total: int | None = None,
) -> SystemInfo:
    """Everything static about the machine (or the captured tree) under the given roots."""
    on_host = reading_host(proc_root, sys_root)
    cpuinfo = sysfs.read_text(os.path.join(proc_root, "cpuinfo")) or ""
    stat_text = sysfs.read_text(os.path.join(proc_root, "stat")) or ""
    meminfo = procfs.parse_meminfo(sysfs.read_text(os.path.join(proc_root, "meminfo")) or "")
    hostname = host_name(proc_root, sys_root)
    return SystemInfo(
        platform=sys.platform,
        architecture=_kernel_value(proc_root, "arch") or (platform.machine() if on_host else None) or "unknown",
        cpu_model=procfs.parse_cpu_model(cpuinfo),
        cpu_cores=physical_cores(sys_root) or procfs.parse_physical_cores(cpuinfo),
        cpu_threads=sum(1 for line in stat_text.splitlines() if line[:3] == "cpu" and line[3:4].isdigit())
        or None,
        memory_total=meminfo.total,
        swap_total=meminfo.swap_total,
        disk_total=disk_total,
        gpu_count=len(accelerators),
        gpu_info=tuple(a.name or "unknown" for a in accelerators),
        hostname=hostname,
        ip_address=primary_ipv4(proc_root) if on_host else None,
        node_id=node_id or hostname,
        boot_time=_boot_time_ms(stat_text),
        kernel=_kernel_value(proc_root, "osrelease"),
        version=__version__,
    )


def system_info_for(first: Snapshot, *, proc_root: str = "/proc", sys_root: str = "/sys") -> SystemInfo:
    """The system info that goes with a node's first snapshot: the GPUs and disk total its
    collectors saw, so `info`, /api/system/info and `snapshot` agree."""
    return read_system_info(
        node_id=first.node_id,
        proc_root=proc_root,
        sys_root=sys_root,
        accelerators=first.accelerators,
        disk_total=first.disk.total if first.disk else None,
    )


def host_name(proc_root: str = "/proc", sys_root: str = "/sys") -> str:
    """The kernel's hostname under the roots (the default node id)."""
    on_host = reading_host(proc_root, sys_root)
    return _kernel_value(proc_root, "hostname") or (socket.gethostname() if on_host else "unknown")


def physical_cores(sys_root: str) -> int | None:
    """Distinct (package, core) pairs in sysfs CPU topology, None when topology is absent."""
    cpu_dir = os.path.join(sys_root, "devices/system/cpu")
    pairs = set()
    for entry in sysfs.list_dir(cpu_dir):
        if entry.startswith("cpu") and entry[3:].isdigit():
            topo = os.path.join(cpu_dir, entry, "topology")
            package = sysfs.read_text(os.path.join(topo, "physical_package_id"))
            core = sysfs.read_text(os.path.join(topo, "core_id"))
            if package is not None and core is not None:
                pairs.add((package.strip(), core.strip()))
    return len(pairs) or None


def primary_ipv4(proc_root: str = "/proc", addresses: Callable[[], dict[str, list[str]]] | None = None) -> str | None:
    """IPv4 address of the default route's interface, else the first non-loopback IPv4."""
    by_iface = (addresses or ipv4_by_interface)()
    ipv4 = {name: [a for a in found if not a.startswith("127.")] for name, found in by_iface.items()}
    default_iface = _default_route_interface(proc_root)
    if default_iface and ipv4.get(default_iface):
        return ipv4[default_iface][0]
    return next((found[0] for found in ipv4.values() if found), None)


def ipv4_by_interface() -> dict[str, list[str]]:
    """Each interface's IPv4 addresses, its primary one first: on Linux by ioctl (the service loads no
    psutil for one question at start-up), elsewhere from psutil."""
    if sys.platform.startswith("linux"):
        found = _linux_primary_ipv4()
    else:
        import psutil

        found = {
            name: [a.address for a in addrs if a.family == socket.AF_INET]
            for name, addrs in psutil.net_if_addrs().items()
        }
    return found


_SIOCGIFADDR = 0x8915  # linux/sockios.h: an interface's primary IPv4 address


def _linux_primary_ipv4() -> dict[str, list[str]]:
    """{interface: [primary IPv4]} for the interfaces that have one, in interface index order."""
    import fcntl
    import struct

    found: dict[str, list[str]] = {}
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:  # no IPv4 in this namespace (or a sandbox refuses sockets): no address to tell
        return found
    with sock:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])  # struct ifreq: the name, then the answer
            try:
                reply = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
            except OSError:  # EADDRNOTAVAIL: no IPv4 on it; ENODEV: gone since the listing
                continue
            found[name] = [socket.inet_ntoa(reply[20:24])]  # ifr_addr: sockaddr_in, address at offset 4
    return found


def _default_route_interface(proc_root: str) -> str | None:
    for line in (sysfs.read_text(os.path.join(proc_root, "net/route")) or "").splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return fields[0]
    return None


def _kernel_value(proc_root: str, name: str) -> str | None:
    text = sysfs.read_text(os.path.join(proc_root, "sys/kernel", name))
    return text.strip() or None if text is not None else None


def _boot_time_ms(stat_text: str) -> int | None:
    for line in stat_text.splitlines():
        if line.startswith("btime "):
            try:
                return int(line.split()[1]) * 1000
            except (IndexError, ValueError):
                return None
    return None
