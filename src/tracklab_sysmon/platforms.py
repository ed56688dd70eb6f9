"""Every platform branch in one place: `select(platform)` says how this service runs on that OS.

A leaf module: it imports nothing of the package but `errors`, and takes the platform as a
parameter, so the macOS and Windows choices are unit-tested on Linux without patching `sys`.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError

BACKENDS = ("auto", "procfs", "psutil")

# Fields the psutil backend leaves null on a platform, and why (shown under /api/health).
_NO_THREADS = "no cheap system-wide thread count here (psutil would walk every process each tick)"
_NO_CONNECTIONS_MAC = (
    "macOS lists sockets per process, slowly and only for root (psutil raises AccessDenied): not counted"
)
_NO_LOAD_WIN = "Windows has no load average (psutil's emulation reports 0 for its first seconds)"
_NO_TEMPERATURE = "CPU temperature is read from Linux hwmon/thermal sysfs only"


# ZFS datasets share their pool's free space, APFS volumes their container's: counted once.
_POOLED = {"linux": frozenset({"zfs"}), "win32": frozenset(), "other": frozenset({"zfs", "apfs"})}


@dataclass(frozen=True, slots=True)
class PlatformChoice:
    """How the service runs on one platform; every field is plain data, so tests compare it."""

    platform: str  # sys.platform spelling: linux, darwin, win32, freebsd14, ...
    collectors: str  # the backend that runs: "procfs" (Linux /proc + the C helper) or "psutil"
    parent_watch: str  # "pidfd", "kqueue", "process-handle" or "poll"
    stop_signals: tuple[str, ...]  # names in the signal module that end the service with exit 0
    signal_install: str  # "loop" (loop.add_signal_handler) or "signal" (signal.signal + thread-safe wake-up)
    portfile: str  # how the portfile is put in place: always "os.replace" of a temp file in the same folder
    c_helper: bool  # whether setup.py builds the C hot-path helper here
    gpus: tuple[str, ...]  # accelerator collectors that can find hardware here
    child_group: str  # SystemMonitor's child: "session" (setsid) or "process-group" (CREATE_NEW_PROCESS_GROUP)
    child_stop: str  # what SystemMonitor sends its child: "SIGTERM" or "CTRL_BREAK_EVENT"
    thread_source: str | None  # cpu.threads: "loadavg" (/proc/loadavg) or None
    connection_source: str | None  # network.connections: "snmp" (/proc/net/snmp), "tcpstats" (Windows) or None
    load_average: bool  # whether psutil.getloadavg() is a real kernel value here
    whole_disks: str  # how per-disk IO is limited to whole disks: "sysfs" (Linux /sys/block) or "as-listed"
    pooled_filesystems: frozenset[str]  # file systems whose volumes share one pool's free space
    loopback: tuple[str, ...]  # interface names (or prefixes) that are loopback
    null_fields: dict[str, str] = field(default_factory=dict)  # psutil backend: field -> why it is null


def is_linux(platform: str) -> bool:
    return platform.startswith("linux")


def _is_bsd_like(platform: str) -> bool:
    return platform == "darwin" or "bsd" in platform or platform.startswith("dragonfly")


def _collectors(platform: str, requested: str, on_host: bool) -> str:
    if requested not in BACKENDS:
        raise ConfigError(f"collectors must be one of {', '.join(BACKENDS)}; got {requested!r}")
    if requested == "auto":
        requested = "procfs" if is_linux(platform) or not on_host else "psutil"
    if requested == "procfs" and not is_linux(platform) and on_host:
        raise ConfigError(f"the procfs collectors read Linux /proc; on {platform} use --collectors psutil (or auto)")
    if requested == "psutil" and not on_host:
        raise ConfigError("--proc-root/--sys-root replay a captured Linux tree: they need --collectors procfs")
    return requested


def _null_fields(platform: str) -> dict[str, str]:
    if is_linux(platform):
        return {}
    reasons = {"cpu.temperature": _NO_TEMPERATURE, "cpu.threads": _NO_THREADS}
    if platform == "win32":
        reasons["cpu.loadAverage"] = _NO_LOAD_WIN
    else:
        reasons["network.connections"] = _NO_CONNECTIONS_MAC
    return reasons


def select(platform: str = sys.platform, collectors: str = "auto", *, on_host: bool = True) -> PlatformChoice:
    """The choice for `platform` (a `sys.platform` value) with `--collectors` as asked.

    `on_host` is False when --proc-root/--sys-root name a captured Linux tree: only procfs reads one.
    """
    linux, windows = is_linux(platform), platform == "win32"
    if linux:
        watch = "pidfd"
    elif _is_bsd_like(platform):
        watch = "kqueue"
    else:
        watch = "process-handle" if windows else "poll"
    gpus = ("amd", "nvidia") if linux else ("nvidia", "apple") if platform == "darwin" else ("nvidia",)
    return PlatformChoice(
        platform=platform,
        collectors=_collectors(platform, collectors, on_host),
        parent_watch=watch,
        stop_signals=("SIGINT", "SIGBREAK") if windows else ("SIGTERM", "SIGINT"),
        signal_install="signal" if windows else "loop",
        portfile="os.replace",
        c_helper=linux,
        gpus=gpus,
        child_group="process-group" if windows else "session",
        child_stop="CTRL_BREAK_EVENT" if windows else "SIGTERM",
        thread_source="loadavg" if linux else None,
        connection_source="snmp" if linux else "tcpstats" if windows else None,
        load_average=not windows,
        whole_disks="sysfs" if linux else "as-listed",
        pooled_filesystems=_POOLED["linux" if linux else "win32" if windows else "other"],
        loopback=("lo",) if linux else ("Loopback Pseudo-Interface",) if windows else ("lo0",),
        null_fields=_null_fields(platform),
    )


# Windows values, spelled out so the Windows choice is testable anywhere (the modules define them there).
_CREATE_NEW_PROCESS_GROUP = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x00000200)
_CTRL_BREAK_EVENT = getattr(signal, "CTRL_BREAK_EVENT", 1)


def child_popen_options(choice: PlatformChoice) -> dict[str, Any]:
    """Popen options that keep a terminal's Ctrl+C away from the child: its own session or process group."""
    if choice.child_group == "process-group":  # Windows: and Ctrl+Break can then reach it alone
        return {"creationflags": _CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def child_stop_signal(choice: PlatformChoice) -> int:
    """What stops the child cleanly: SIGTERM, or Ctrl+Break on Windows (its SIGTERM is TerminateProcess)."""
    return _CTRL_BREAK_EVENT if choice.child_stop == "CTRL_BREAK_EVENT" else int(signal.SIGTERM)


__all__ = ["BACKENDS", "PlatformChoice", "child_popen_options", "child_stop_signal", "is_linux", "select"]
