"""Pure parsers for /proc and /sys text: text in, frozen records out, no file access.

A leaf shared by the hot path and the collectors (as psutil's `_common`): it imports only `errors` and `model`.
"""

from __future__ import annotations

import re

from .errors import ParseError
from .model import CpuTimes, DiskCounters, LoadAvg, MemInfo, NetCounters, StatCounters

SECTOR_BYTES = 512  # /proc/diskstats always counts 512-byte sectors, whatever the device's size
_CPU_MODES = 8  # user nice system idle iowait irq softirq steal
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def parse_stat(text: str, ticks_per_second: float) -> StatCounters:
    """Parse the `cpu` and `cpuN` lines of /proc/stat into seconds per mode."""
    total: CpuTimes | None = None
    cores: list[tuple[int, CpuTimes]] = []
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        parts = line.split()
        try:
            values = [int(v) / ticks_per_second for v in parts[1 : 1 + _CPU_MODES]]
        except ValueError:
            continue
        if len(values) < 4:
            continue
        values += [0.0] * (_CPU_MODES - len(values))  # kernels before 2.6.11 lack steal etc.
        times = CpuTimes(*values)
        label = parts[0]
        if label == "cpu":
            total = times
        elif label[3:].isdigit():
            cores.append((int(label[3:]), times))
    if total is None:
        raise ParseError("/proc/stat has no aggregate 'cpu' line")
    return StatCounters(total=total, cores=tuple(cores))


def parse_diskstats(text: str) -> list[DiskCounters]:
    """Parse /proc/diskstats in its 7-, 14-, 18- and 20-field shapes."""
    disks: list[DiskCounters] = []
    for line in text.splitlines():
        parts = line.split()
        try:
            if len(parts) >= 14:
                reads, rsect, writes, wsect = (int(parts[i]) for i in (3, 5, 7, 9))
            elif len(parts) == 7:  # old 2.6 partition lines: reads, sectors read, writes, sectors written
                reads, rsect, writes, wsect = (int(p) for p in parts[3:7])
            else:
                continue
        except ValueError:
            continue
        disks.append(DiskCounters(parts[2], reads, rsect * SECTOR_BYTES, writes, wsect * SECTOR_BYTES))
    return disks


def parse_net_dev(text: str) -> list[NetCounters]:
    """Parse /proc/net/dev; the name ends at the last colon, so `eth0:1` aliases survive."""
    interfaces: list[NetCounters] = []
    for line in text.splitlines():
        colon = line.rfind(":")
        if colon < 0 or "|" in line:
            continue
        fields = line[colon + 1 :].split()
        if len(fields) < 10:
            continue
        try:
            rx_bytes, rx_packets, tx_bytes, tx_packets = (int(fields[i]) for i in (0, 1, 8, 9))
        except ValueError:
            continue
        interfaces.append(NetCounters(line[:colon].strip(), rx_bytes, rx_packets, tx_bytes, tx_packets))
    return interfaces


def require_interfaces(rows: list[NetCounters]) -> list[NetCounters]:
    """`rows` of /proc/net/dev, which always lists `lo`: no interface line at all means garbage, not "no traffic"."""
    if not rows:
        raise ParseError("/proc/net/dev has no interface lines")
    return rows


def parse_meminfo(text: str) -> MemInfo:
    """Parse /proc/meminfo; without MemAvailable (kernels < 3.14) estimate it like old `free`."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        try:
            number = int(parts[0])
        except ValueError:
            continue
        values[key.strip()] = number * 1024 if len(parts) > 1 and parts[1] == "kB" else number
    total = values.get("MemTotal")
    available = values.get("MemAvailable")
    if available is None and "MemFree" in values:
        available = sum(values.get(k, 0) for k in ("MemFree", "Buffers", "Cached", "SReclaimable"))
    if total is not None and available is not None:
        available = min(available, total)
    return MemInfo(total, available, values.get("SwapTotal"), values.get("SwapFree"))


def parse_loadavg(text: str) -> LoadAvg:
    """Parse /proc/loadavg: `0.28 0.12 0.04 1/75 2292`."""
    parts = text.split()
    try:
        running, _, threads = parts[3].partition("/")
        return LoadAvg(float(parts[0]), float(parts[1]), float(parts[2]), int(running), int(threads))
    except (IndexError, ValueError) as exc:
        raise ParseError(f"/proc/loadavg is malformed: {text[:60]!r}") from exc


def parse_tcp_established(snmp_text: str) -> int:
    """Read CurrEstab from /proc/net/snmp (one TCP MIB for IPv4 and IPv6)."""
    header: list[str] | None = None
    for line in snmp_text.splitlines():
        if not line.startswith("Tcp:"):
            continue
        fields = line.split()[1:]
        if header is None:
            header = fields
            continue
        try:
            return int(fields[header.index("CurrEstab")])
        except (ValueError, IndexError) as exc:
            raise ParseError("/proc/net/snmp has no readable Tcp CurrEstab") from exc
    raise ParseError("/proc/net/snmp has no Tcp table")


def parse_cpu_model(cpuinfo_text: str) -> str | None:
    """First `model name` (x86) or `Hardware`/`Processor` (older ARM) of /proc/cpuinfo."""
    found: dict[str, str] = {}
    for line in cpuinfo_text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and value.strip() and key not in found:
            found[key] = value.strip()
    for key in ("model name", "Hardware", "Processor", "cpu model"):
        if key in found and not found[key].isdigit():
            return found[key]
    return None


def parse_physical_cores(cpuinfo_text: str) -> int | None:
    """Count distinct (physical id, core id) pairs of /proc/cpuinfo, or None if absent."""
    pairs: set[tuple[str, str]] = set()
    physical = core = None
    for line in [*cpuinfo_text.splitlines(), ""]:
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            physical = value.strip()
        elif key == "core id":
            core = value.strip()
        elif not line.strip():
            if physical is not None and core is not None:
                pairs.add((physical, core))
            physical = core = None
    return len(pairs) or None


def parse_millidegrees(text: str) -> float | None:
    """A sysfs temperature (m°C, may be negative) in °C; None for empty or garbage."""
    try:
        return int(text.strip()) / 1000.0
    except ValueError:
        return None


def parse_khz_as_mhz(text: str) -> float | None:
    """A cpufreq value (kHz) in MHz; None for empty or garbage."""
    try:
        return int(text.strip()) / 1000.0
    except ValueError:
        return None


def parse_mounts(text: str) -> list[tuple[str, str, str]]:
    """(device, mount point, fs type) per line of /proc/mounts, with octal escapes decoded."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            mounts.append((_unescape(parts[0]), _unescape(parts[1]), parts[2]))
    return mounts


def parse_block_filesystems(text: str) -> frozenset[str]:
    """File system types of /proc/filesystems that need a device (no `nodev` flag)."""
    return frozenset(
        line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("nodev")
    )


def _unescape(field: str) -> str:
    # Decode every \ooo escape, not a fixed list: kernels also escape e.g. "#" in some versions.
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)
