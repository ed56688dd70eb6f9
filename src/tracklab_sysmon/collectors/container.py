"""The container section (one cgroup's CPU, memory, IO, pids and PSI, v1 or v2) and the host's PSI."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .._sysfs import KeptFile, read_text
from ..config import check_cgroup_option
from ..errors import ParseError, Unavailable
from ..model import (
    ContainerCpu,
    ContainerIdentity,
    ContainerIoDevice,
    ContainerMemory,
    ContainerPids,
    ContainerSample,
    PressureSample,
    ResourcePressure,
)
from ..rates import counter_rate, percent
from . import cgroup_files as files

T = TypeVar("T")
_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "blkio", "pids")
_RESOURCES = ("cpu", "memory", "io")
_PSI_FILES = {r: f"{r}.pressure" for r in _RESOURCES}


@dataclass(frozen=True, slots=True)
class CgroupDirs:
    """Where one cgroup's files are: a directory per v1 controller, and the v2 directory (if mounted)."""

    version: int
    path: str
    v1: dict[str, str]  # controller -> directory
    unified: str | None  # the cgroup's directory in the v2 hierarchy (all controllers on pure v2)


def _under_root(sys_root: str, mount_point: str) -> str | None:
    """A mount point read under `sys_root` (cgroup hierarchies live under /sys); None outside it."""
    if mount_point == "/sys" or mount_point.startswith("/sys/"):
        return sys_root + mount_point[4:]
    return mount_point if sys_root == "/sys" else None


def _join(base: str, path: str) -> str:
    return os.path.join(base, path.lstrip("/")) if path.strip("/") else base


def _relative(path: str, mount_root: str) -> str:
    """A /proc/self/cgroup path made relative to the mount's root (a container sees its own root as /)."""
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        return path[len(mount_root):] or "/"
    return path


def locate(proc_root: str, sys_root: str, cgroup: str) -> CgroupDirs | None:
    """The directories of the cgroup to describe; None for `auto` when the service is in the root cgroup."""
    own = read_text(os.path.join(proc_root, "self/cgroup"))
    mountinfo = read_text(os.path.join(proc_root, "self/mountinfo"))
    if own is None or mountinfo is None:
        raise Unavailable("no /proc/self/cgroup or mountinfo: cgroups are not mounted here")
    entries = files.parse_proc_cgroup(own)
    mounts = files.parse_mountinfo_cgroups(mountinfo)
    v1: dict[str, str] = {}
    unified: str | None = None
    unified_path: str | None = None
    paths: list[str] = []
    for mount in mounts:
        base = _under_root(sys_root, mount.mount_point)
        entry = _entry_for(entries, mount)
        if base is None or entry is None:
            continue
        path = cgroup if cgroup not in ("auto", "self") else _relative(entry.path, mount.root)
        if mount.version == 2:
            unified, unified_path = _join(base, path), path
        else:
            v1.update((c, _join(base, path)) for c in mount.controllers if c in _CONTROLLERS)
        if mount.version == 2 or any(c in _CONTROLLERS for c in mount.controllers):
            paths.append(path)
    if not v1 and unified is None:
        raise Unavailable("no cgroup hierarchy of this process is mounted")
    version = 1 if ("cpu" in v1 or "memory" in v1) else 2
    if cgroup == "auto" and all(p == "/" for p in paths) and _is_host_root(version, v1, unified):
        return None
    described = cgroup if cgroup not in ("auto", "self") else _own_path(entries, version)
    if version == 1 and unified_path != described:  # hybrid: the v2 tree's PSI is of another group
        unified = None
    return CgroupDirs(version, described, v1, unified)


def _is_host_root(version: int, v1: dict[str, str], unified: str | None) -> bool:
    """True for the host's root cgroup; a container's namespace root (also "/" from inside) is not.

    Only the real root lacks v2's `cgroup.type` and has v1's `release_agent` (cgroup-v2.rst, cgroup-v1/cgroups.rst).
    """
    if version == 2:
        return unified is not None and not os.path.exists(os.path.join(unified, "cgroup.type"))
    return all(os.path.exists(os.path.join(d, "release_agent")) for d in v1.values())


def _entry_for(entries: tuple[files.CgroupEntry, ...], mount: files.CgroupMount) -> files.CgroupEntry | None:
    for entry in entries:
        if mount.version == 2 and entry.hierarchy == 0 and not entry.controllers:
            return entry
        if mount.version == 1 and entry.controllers and set(entry.controllers) == set(mount.controllers):
            return entry
    return None


def _own_path(entries: tuple[files.CgroupEntry, ...], version: int) -> str:
    """The path that names the job: v2's, or on v1 the first of memory/cpu that is not the root."""
    if version == 2:
        return next((e.path for e in entries if e.hierarchy == 0), "/")
    v1_paths = [e.path for c in ("memory", "cpu", "cpuacct", "pids", "blkio") for e in entries if c in e.controllers]
    return next((p for p in v1_paths if p != "/"), "/")


class _Files:
    """Kept descriptors for the cgroup's files (one pread each per tick), parsed or None.

    A file that is absent (a controller not enabled, v1's root without pids files) is tried again only
    every RETRY_MISSING reads: interface files come and go with their controller, not from tick to tick.
    Most files (limits, idle counters, PSI without stalls) read the same from tick to tick, so the last
    text and its record are kept and the parse is skipped when the text has not changed.
    """

    RETRY_MISSING = 30
    RECHECK = 16

    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], KeptFile] = {}
        self._missing: dict[tuple[str, str], int] = {}  # reads left before the next try
        self._last: dict[tuple[str, str], tuple[str, object]] = {}  # text -> its parsed record

    def read(self, directory: str | None, name: str, parse: Callable[[str], T]) -> T | None:
        if directory is None:
            return None
        key = (directory, name)
        if key in self._missing:
            self._missing[key] -= 1
            if self._missing[key] > 0:
                return None
            del self._missing[key]
        kept = self._kept.get(key)
        if kept is None:
            # Identity checked every RECHECK reads, not every read: cgroupfs never renames over an
            # interface file, and a removed group's files fail to read, which reopens them at once.
            kept = self._kept[key] = KeptFile(os.path.join(directory, name), recheck_every=self.RECHECK)
        text = kept.read()
        if text is None:
            self._missing[key] = self.RETRY_MISSING
            return None
        last = self._last.get(key)
        if last is not None and last[0] == text:
            return last[1]  # type: ignore[return-value]  # stored by this same call site's parse
        try:
            value = parse(text)
        except ParseError:
            return None
        self._last[key] = (text, value)
        return value


def read_pressure(read: Callable[[str], ResourcePressure | None]) -> PressureSample | None:
    """PSI of cpu, memory and io from `read(resource)`; None when no resource has a file."""
    found = {resource: read(resource) for resource in _RESOURCES}
    if all(v is None for v in found.values()):
        return None
    return PressureSample(cpu=found["cpu"], memory=found["memory"], io=found["io"])


class HostPressureCollector:
    """The host's PSI from /proc/pressure/{cpu,memory,io}; unavailable on kernels without PSI."""

    name = "pressure"
    blocking = False

    def __init__(self, proc_root: str = "/proc") -> None:
        self._dir = os.path.join(proc_root, "pressure")
        self._files = _Files()

    def collect(self, now: float) -> PressureSample:
        sample = read_pressure(self._read)
        if sample is None:
            raise Unavailable("the kernel keeps no pressure stall information (/proc/pressure is absent)")
        return sample

    def _read(self, resource: str) -> ResourcePressure | None:
        return self._files.read(self._dir, resource, files.parse_psi)


@dataclass(frozen=True, slots=True)
class _Counters:
    """The cgroup's cumulative counters at one moment, for rates over the next interval."""

    now: float
    usage_seconds: float | None
    throttled_periods: int | None
    throttled_seconds: float | None
    io: dict[tuple[int, int], files.IoStat]


class ContainerCollector:
    """One cgroup (v1 or v2) read under sys_root/proc_root; `--cgroup auto|self|PATH` picks which."""

    name = "container"
    blocking = False

    def __init__(self, proc_root: str = "/proc", sys_root: str = "/sys", cgroup: str = "auto") -> None:
        self._proc_root, self._sys_root = proc_root, sys_root
        self._cgroup = check_cgroup_option(cgroup)
        self._files = _Files()
        self._devices: dict[tuple[int, int], str] = {}
        self._previous: _Counters | None = None
        self._found: tuple[CgroupDirs, ContainerIdentity, _V1Reader | _V2Reader] | None = None
        self._absent: tuple[str, int] | None = None  # why there is nothing to describe, and ticks until a re-check

    def _locate(self) -> tuple[CgroupDirs, ContainerIdentity, _V1Reader | _V2Reader]:
        """Find the cgroup once (its path does not change while the service runs)."""
        dirs = locate(self._proc_root, self._sys_root, self._cgroup)
        if dirs is None:
            raise Unavailable("the service runs in the root cgroup: there is no container to describe")
        reader = _V2Reader(self._files, dirs) if dirs.version == 2 else _V1Reader(self._files, dirs)
        return dirs, files.parse_identity(dirs.path, dirs.version), reader

    def _found_or_raise(self) -> tuple[CgroupDirs, ContainerIdentity, _V1Reader | _V2Reader]:
        """The located cgroup; on a bare host the answer "none" is re-checked only every RETRY_MISSING ticks."""
        if self._absent is not None and self._absent[1] > 0:
            self._absent = (self._absent[0], self._absent[1] - 1)
            raise Unavailable(self._absent[0])
        try:
            self._found = self._locate()
        except Unavailable as exc:
            self._absent = (str(exc), _Files.RETRY_MISSING)
            raise
        self._absent = None
        return self._found

    def collect(self, now: float) -> ContainerSample:
        dirs, identity, reader = self._found if self._found is not None else self._found_or_raise()
        counters = _Counters(now, *reader.cpu_counters(), io=reader.io())
        previous, self._previous = self._previous, counters
        return ContainerSample(
            identity=identity,
            cpu=_cpu(reader.limit_cores(), counters, previous),
            memory=reader.memory(),
            io=self._io(counters, previous),
            pids=ContainerPids(
                current=self._files.read(reader.pids_dir, "pids.current", files.parse_int),
                max=self._files.read(reader.pids_dir, "pids.max", files.parse_max),
            ),
            pressure=read_pressure(self._pressure) if dirs.unified else None,
        )

    def _pressure(self, resource: str) -> ResourcePressure | None:
        unified = self._found[0].unified if self._found else None
        return self._files.read(unified, _PSI_FILES[resource], files.parse_psi)

    def _io(self, counters: _Counters, previous: _Counters | None) -> tuple[ContainerIoDevice, ...]:
        elapsed = counters.now - previous.now if previous else 0.0
        devices = []
        for key, stat in sorted(counters.io.items()):
            before = previous.io.get(key) if previous else None

            def rate(field: str, now_stat: files.IoStat = stat, was: files.IoStat | None = before) -> float:
                if was is None:
                    return 0.0
                return round(counter_rate(getattr(was, field), getattr(now_stat, field), elapsed), 2)

            devices.append(ContainerIoDevice(
                device=self._device_name(key),
                read_bytes=stat.read_bytes, write_bytes=stat.write_bytes, reads=stat.reads, writes=stat.writes,
                read_rate=rate("read_bytes"), write_rate=rate("write_bytes"),
                read_iops=rate("reads"), write_iops=rate("writes"),
            ))
        return tuple(devices)

    def _device_name(self, key: tuple[int, int]) -> str:
        name = self._devices.get(key)
        if name is None:
            uevent = read_text(os.path.join(self._sys_root, "dev/block", f"{key[0]}:{key[1]}", "uevent"))
            found = files.parse_key_equals(uevent).get("DEVNAME") if uevent else None
            name = self._devices[key] = found or f"{key[0]}:{key[1]}"
        return name


def _cpu(limit: float | None, counters: _Counters, previous: _Counters | None) -> ContainerCpu:
    elapsed = counters.now - previous.now if previous else 0.0

    def rate(field: str) -> float | None:
        now_value, was = getattr(counters, field), getattr(previous, field) if previous else None
        if now_value is None or was is None or elapsed <= 0:
            return None
        return float(counter_rate(was, now_value, elapsed))

    used = rate("usage_seconds")
    throttled_rate = rate("throttled_seconds")
    periods_rate = rate("throttled_periods")
    return ContainerCpu(
        limit_cores=limit,
        usage=percent(used, limit),
        usage_seconds=counters.usage_seconds,
        throttled_periods=counters.throttled_periods,
        throttled_periods_rate=round(periods_rate, 3) if periods_rate is not None else None,
        throttled_seconds=counters.throttled_seconds,
        throttled_seconds_rate=round(throttled_rate, 6) if throttled_rate is not None else None,
    )


def _keys(*keys: str) -> Callable[[str], dict[str, int]]:
    return lambda text: files.parse_keys(text, keys)


_V2_CPU_STAT = _keys("usage_usec", "nr_throttled", "throttled_usec")
_V2_MEMORY_STAT = _keys("anon", "file")
_V1_CPU_STAT = _keys("nr_throttled", "throttled_time")
_V1_MEMORY_STAT = _keys("total_rss", "rss", "total_cache", "cache")
_OOM_KILL = _keys("oom_kill")


def _cpuset_cores(cpus: frozenset[int] | None) -> float | None:
    return float(len(cpus)) if cpus else None


class _V2Reader:
    """The files of a cgroup v2 directory (cgroup-v2.rst)."""

    def __init__(self, kept: _Files, dirs: CgroupDirs) -> None:
        self._read, self._dir = kept.read, dirs.unified
        self.pids_dir = dirs.unified

    def limit_cores(self) -> float | None:
        quota = self._read(self._dir, "cpu.max", files.parse_cpu_max)
        if quota is not None and quota[0] is not None:
            return round(quota[0] / quota[1], 3)
        return _cpuset_cores(self._read(self._dir, "cpuset.cpus.effective", files.parse_cpu_list))

    def cpu_counters(self) -> tuple[float | None, int | None, float | None]:
        stat = self._read(self._dir, "cpu.stat", _V2_CPU_STAT) or {}
        usage, throttled = stat.get("usage_usec"), stat.get("throttled_usec")
        return (
            usage / 1e6 if usage is not None else None,
            stat.get("nr_throttled"),
            throttled / 1e6 if throttled is not None else None,
        )

    def memory(self) -> ContainerMemory:
        current = self._read(self._dir, "memory.current", files.parse_int)
        limit = self._read(self._dir, "memory.max", files.parse_max)
        stat = self._read(self._dir, "memory.stat", _V2_MEMORY_STAT) or {}
        events = self._read(self._dir, "memory.events", _OOM_KILL) or {}
        return ContainerMemory(
            current=current, max=limit, usage=percent(current, limit),
            high=self._read(self._dir, "memory.high", files.parse_max),
            swap=self._read(self._dir, "memory.swap.current", files.parse_int),
            oom_kills=events.get("oom_kill"), anon=stat.get("anon"), file=stat.get("file"),
        )

    def io(self) -> dict[tuple[int, int], files.IoStat]:
        stats = self._read(self._dir, "io.stat", files.parse_io_stat) or ()
        return {(s.major, s.minor): s for s in stats}


class _V1Reader:
    """The files of a cgroup's directories in the v1 hierarchies (cgroup-v1/*.rst)."""

    def __init__(self, kept: _Files, dirs: CgroupDirs) -> None:
        self._read, self._v1 = kept.read, dirs.v1
        self.pids_dir = dirs.v1.get("pids")

    def limit_cores(self) -> float | None:
        cpu = self._v1.get("cpu")
        quota = self._read(cpu, "cpu.cfs_quota_us", files.parse_int)
        period = self._read(cpu, "cpu.cfs_period_us", files.parse_int) if quota is not None and quota > 0 else None
        if quota is not None and period:
            return round(quota / period, 3)
        cpus = self._read(self._v1.get("cpuset"), "cpuset.effective_cpus", files.parse_cpu_list)
        return _cpuset_cores(cpus or self._read(self._v1.get("cpuset"), "cpuset.cpus", files.parse_cpu_list))

    def cpu_counters(self) -> tuple[float | None, int | None, float | None]:
        usage = self._read(self._v1.get("cpuacct"), "cpuacct.usage", files.parse_int)
        stat = self._read(self._v1.get("cpu"), "cpu.stat", _V1_CPU_STAT) or {}
        throttled = stat.get("throttled_time")
        return (
            usage / 1e9 if usage is not None else None,
            stat.get("nr_throttled"),
            throttled / 1e9 if throttled is not None else None,
        )

    def memory(self) -> ContainerMemory:
        directory = self._v1.get("memory")
        current = self._read(directory, "memory.usage_in_bytes", files.parse_int)
        limit = self._read(directory, "memory.limit_in_bytes", files.parse_v1_limit)
        both = self._read(directory, "memory.memsw.usage_in_bytes", files.parse_int)
        stat = self._read(directory, "memory.stat", _V1_MEMORY_STAT) or {}
        oom = self._read(directory, "memory.oom_control", _OOM_KILL) or {}
        return ContainerMemory(
            current=current, max=limit, usage=percent(current, limit), high=None,
            swap=max(0, both - current) if both is not None and current is not None else None,
            oom_kills=oom.get("oom_kill"),
            anon=stat.get("total_rss", stat.get("rss")), file=stat.get("total_cache", stat.get("cache")),
        )

    def io(self) -> dict[tuple[int, int], files.IoStat]:
        blkio = self._v1.get("blkio")
        sizes = self._read(blkio, "blkio.throttle.io_service_bytes", files.parse_blkio) or {}
        ops = self._read(blkio, "blkio.throttle.io_serviced", files.parse_blkio) or {}
        return {
            key: files.IoStat(key[0], key[1], *sizes.get(key, (0, 0)), *ops.get(key, (0, 0)))
            for key in sorted(set(sizes) | set(ops))
        }
