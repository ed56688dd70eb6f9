"""Pure parsers for cgroup v1/v2 and PSI files: text in, typed records out; no I/O (a leaf module).

Formats follow the kernel's Documentation/admin-guide/cgroup-v2.rst, cgroup-v1/*.rst and
accounting/psi.rst. Every parser raises only `ParseError` on text that is not of its format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ParseError
from ..model import ContainerIdentity, PsiFigures, ResourcePressure

# v1 writes "no limit" as the largest page-aligned counter (9223372036854771712 on 4 KiB pages);
# anything from 2**60 bytes (1 EiB) up is that sentinel, not a real limit.
V1_UNLIMITED = 1 << 60
MAX_CPUS = 1 << 16  # a cpu list naming more CPUs than this is not a kernel's


@dataclass(frozen=True, slots=True)
class CgroupEntry:
    """One line of /proc/PID/cgroup: hierarchy id, its controllers (empty for v2) and the path."""

    hierarchy: int
    controllers: tuple[str, ...]
    path: str


@dataclass(frozen=True, slots=True)
class CgroupMount:
    """A cgroup file system from mountinfo: where it is mounted, which cgroup is its root, which controllers."""

    mount_point: str
    root: str
    version: int  # 1 (fstype cgroup) or 2 (cgroup2)
    controllers: tuple[str, ...]  # v1: from the super options (cpu, cpuacct, name=systemd...); v2: ()


@dataclass(frozen=True, slots=True)
class IoStat:
    """Cumulative IO of one device: bytes and operations read and written."""

    major: int
    minor: int
    read_bytes: int
    write_bytes: int
    reads: int
    writes: int


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ParseError(f"{what}: expected an integer, got {text[:40]!r}") from None


def _one_value(text: str, what: str) -> str:
    parts = text.split()
    if len(parts) != 1:
        raise ParseError(f"{what}: expected one value, got {text[:40]!r}")
    return parts[0]


def parse_int(text: str, what: str = "value") -> int:
    """A one-integer file (memory.current, pids.current, cpuacct.usage, cfs_quota_us)."""
    try:
        return int(text)  # int() itself allows the surrounding whitespace (the newline) and nothing else
    except ValueError:
        raise ParseError(f"{what}: expected an integer, got {text[:40]!r}") from None


def parse_max(text: str, what: str = "value") -> int | None:
    """A v2 limit file (memory.max, memory.high, pids.max): an integer, or None for `max`."""
    value = _one_value(text, what)
    return None if value == "max" else _int(value, what)


def parse_v1_limit(text: str, what: str = "limit") -> int | None:
    """memory.limit_in_bytes and friends: None for the kernel's "unlimited" sentinel (or a negative)."""
    value = parse_int(text, what)
    return None if value >= V1_UNLIMITED or value < 0 else value


def parse_cpu_max(text: str) -> tuple[int | None, int]:
    """cpu.max `$MAX $PERIOD`: (quota µs or None for `max`, period µs)."""
    parts = text.split()
    if len(parts) != 2:
        raise ParseError(f"cpu.max: expected '$MAX $PERIOD', got {text[:40]!r}")
    period = _int(parts[1], "cpu.max period")
    if period <= 0:
        raise ParseError(f"cpu.max: period must be positive, got {period}")
    quota = None if parts[0] == "max" else _int(parts[0], "cpu.max quota")
    return quota, period


def parse_keyed(text: str, what: str = "keyed file") -> dict[str, int]:
    """A flat keyed file, `key value` per line (cpu.stat, memory.stat, memory.events, oom_control)."""
    tokens = text.split()
    if len(tokens) == 2 * text.count("\n"):  # the kernel's shape (one pair per line, no blanks): no line loop
        try:
            return dict(zip(tokens[::2], map(int, tokens[1::2]), strict=True))
        except ValueError:
            pass  # the line-by-line pass below names the bad line
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise ParseError(f"{what}: expected 'key value', got {line[:60]!r}")
        values[parts[0]] = _int(parts[1], f"{what} {parts[0]}")
    return values


def parse_keys(text: str, keys: tuple[str, ...], what: str = "keyed file") -> dict[str, int]:
    """Only `keys` of a flat keyed file, found by search rather than a parse of every line (memory.stat has ~40)."""
    found: dict[str, int] = {}
    for key in keys:
        if text.startswith(key + " "):
            start = 0
        else:
            start = text.find("\n" + key + " ") + 1
            if start == 0:
                continue
        end = text.find("\n", start)
        found[key] = parse_int(text[start + len(key):end if end >= 0 else len(text)], f"{what} {key}")
    return found


def parse_key_equals(text: str) -> dict[str, str]:
    """KEY=VALUE lines (a block device's uevent); lines without '=' are skipped."""
    pairs = (line.partition("=") for line in text.splitlines())
    return {key.strip(): value.strip() for key, sep, value in pairs if sep and key.strip()}


def parse_cpu_list(text: str) -> frozenset[int]:
    """A cpu list such as `0-3,8,10-11` (cpuset.cpus.effective); empty text is the empty set."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            if text.strip():
                raise ParseError(f"cpu list: empty item in {text[:40]!r}")
            continue
        first, dash, last = part.partition("-")
        low = _int(first, "cpu list")
        high = _int(last, "cpu list") if dash else low
        if low < 0 or high < low or high >= MAX_CPUS:
            raise ParseError(f"cpu list: bad range {part!r}")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: frozenset[int]) -> str:
    """The kernel's spelling of a cpu set: sorted, runs collapsed (`0-3,8`)."""
    runs: list[list[int]] = []
    for cpu in sorted(cpus):
        if runs and cpu == runs[-1][1] + 1:
            runs[-1][1] = cpu
        else:
            runs.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _device(text: str, what: str) -> tuple[int, int]:
    major, colon, minor = text.partition(":")
    if not colon:
        raise ParseError(f"{what}: expected MAJOR:MINOR, got {text[:20]!r}")
    return _int(major, what), _int(minor, what)


def parse_io_stat(text: str) -> tuple[IoStat, ...]:
    """v2 io.stat: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. ...` per device (unknown keys ignored)."""
    stats = []
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        major, minor = _device(parts[0], "io.stat")
        fields: dict[str, int] = {}
        for item in parts[1:]:
            key, eq, value = item.partition("=")
            if not eq:
                raise ParseError(f"io.stat: expected key=value, got {item[:30]!r}")
            fields[key] = _int(value, f"io.stat {key}")
        stats.append(IoStat(major, minor, fields.get("rbytes", 0), fields.get("wbytes", 0),
                            fields.get("rios", 0), fields.get("wios", 0)))
    return tuple(stats)


def parse_blkio(text: str) -> dict[tuple[int, int], tuple[int, int]]:
    """v1 blkio.throttle.io_service_bytes / io_serviced: (major, minor) -> (read, write)."""
    found: dict[tuple[int, int], list[int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if not parts or parts[0] == "Total":  # the file's last line sums every device
            continue
        if len(parts) != 3:
            raise ParseError(f"blkio: expected 'MAJ:MIN Op value', got {line[:60]!r}")
        device = _device(parts[0], "blkio")
        value = _int(parts[2], "blkio")
        slot = found.setdefault(device, [0, 0])
        if parts[1] == "Read":
            slot[0] = value
        elif parts[1] == "Write":
            slot[1] = value
    return {device: (r, w) for device, (r, w) in found.items()}


_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"
_PSI_LINE = rf"avg10={_NUMBER} avg60={_NUMBER} avg300={_NUMBER} total=([0-9]+)"
# psi.rst's exact shape, matched in one call: a `some` line and, on most kernels, a `full` line.
_PSI = re.compile(rf"some {_PSI_LINE}\n(?:full {_PSI_LINE}\n?)?")


def _psi_figures(avg10: str, avg60: str, avg300: str, total: str) -> PsiFigures:
    averages = (float(avg10), float(avg60), float(avg300))
    if max(averages) > 100.0:
        raise ParseError(f"pressure: an average above 100 % ({max(averages)})")
    return PsiFigures(*averages, int(total) / 1e6)


def parse_psi(text: str) -> ResourcePressure:
    """A PSI file (/proc/pressure/*, *.pressure): `some ...` and, where the kernel has it, `full ...`."""
    match = _PSI.fullmatch(text.strip() + "\n")
    if match is None:
        raise ParseError(f"pressure: expected 'some avg10=.. avg60=.. avg300=.. total=..' [+ full], got {text[:80]!r}")
    groups = match.groups()
    full = _psi_figures(*groups[4:]) if groups[4] is not None else None
    return ResourcePressure(some=_psi_figures(*groups[:4]), full=full)


def parse_proc_cgroup(text: str) -> tuple[CgroupEntry, ...]:
    """/proc/PID/cgroup: `ID:controllers:path` lines (v2 is `0::/path`)."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        hierarchy, sep1, rest = line.partition(":")
        controllers, sep2, path = rest.partition(":")
        if not (sep1 and sep2 and path.startswith("/")):
            raise ParseError(f"cgroup: expected 'ID:controllers:/path', got {line[:80]!r}")
        names = tuple(c for c in controllers.split(",") if c)
        entries.append(CgroupEntry(_int(hierarchy, "cgroup hierarchy id"), names, path))
    return tuple(entries)


_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo_cgroups(text: str) -> tuple[CgroupMount, ...]:
    """The cgroup and cgroup2 mounts listed in /proc/PID/mountinfo (see proc(5)); other lines are skipped."""
    mounts = []
    for line in text.splitlines():
        before, sep, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if not sep or len(fields) < 6 or len(tail) < 2:
            if line.strip():
                raise ParseError(f"mountinfo: malformed line {line[:80]!r}")
            continue
        if tail[0] not in ("cgroup", "cgroup2"):
            continue
        options = tail[2].split(",") if len(tail) > 2 else []
        version = 2 if tail[0] == "cgroup2" else 1
        controllers = tuple(o for o in options if version == 1 and _is_controller(o))
        mounts.append(CgroupMount(_unescape(fields[4]), _unescape(fields[3]), version, controllers))
    return tuple(mounts)


# Super options of a v1 mount that are not controller names.
_V1_MOUNT_OPTIONS = frozenset({"rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "none"})


def _is_controller(option: str) -> bool:
    """A v1 super option naming a controller (`cpu`, `name=systemd`), not a flag or `release_agent=...`."""
    return option not in _V1_MOUNT_OPTIONS and ("=" not in option or option.startswith("name="))


# ---------------------------------------------------------------- identity from the cgroup path

_HEX64 = r"[0-9a-f]{64}"
_CONTAINER = re.compile(
    rf"(?:docker-|cri-containerd-|crio-|libpod-)({_HEX64})\.scope"
    rf"|/(?:docker|crio|containerd|libpod|lxc\.payload)/({_HEX64})(?:/|$)"
    rf"|^/kubepods/(?:[a-z]+/)?pod[0-9a-f-]+/({_HEX64})(?:/|$)"
)
_POD_SYSTEMD = re.compile(r"kubepods(?:-(besteffort|burstable))?-pod([0-9a-f_]{36})\.slice")
_POD_CGROUPFS = re.compile(r"/kubepods/(?:(besteffort|burstable)/)?pod([0-9a-f-]{36})(?:/|$)")
_SLURM = re.compile(r"/slurm(?:_[^/]*)?/uid_\d+/job_(\d+)(?:/|$)|(?:^|/)job_(\d+)(?:/|$)")
_UNIT = re.compile(r"([^/]+\.(?:service|scope))(?:/|$)")


def parse_identity(path: str, version: int) -> ContainerIdentity:
    """What a cgroup path says about the job: container id, pod UID and QoS, Slurm job, systemd unit."""
    container = _CONTAINER.search(path)
    pod = _POD_SYSTEMD.search(path) or _POD_CGROUPFS.search(path)
    slurm = _SLURM.search(path)
    units = _UNIT.findall(path)
    qos = None
    if pod:  # a pod directly under kubepods (no besteffort/burstable level) is Guaranteed
        qos = pod.group(1) or "guaranteed"
    return ContainerIdentity(
        container_id=next((g for g in container.groups() if g), None) if container else None,
        pod_uid=pod.group(2).replace("_", "-") if pod else None,
        qos_class=qos,
        slurm_job_id=next((g for g in slurm.groups() if g), None) if slurm else None,
        systemd_unit=units[-1] if units else None,
        path=path,
        version=version,
    )
