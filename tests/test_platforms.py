"""platforms.select for linux/darwin/win32/BSD, the parent watches, the stop signals and the packaging per OS."""

from __future__ import annotations

import asyncio
import os
import pathlib
import select as select_module
import signal
import subprocess
import sys
import tomllib

import pytest

from tracklab_sysmon.errors import ConfigError
from tracklab_sysmon.platforms import child_popen_options, child_stop_signal, select
from tracklab_sysmon.server import parent
from tracklab_sysmon.server.signals import install_stop_signals

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEADLINE = 20.0  # upper bound on waiting for an event; never a speed assertion


# ---------------------------------------------------------------- the selection itself


def test_linux_runs_procfs_with_pidfd_and_posix_signals():
    """Linux: procfs + C helper, pidfd parent watch, SIGTERM/SIGINT on the loop, AMD and NVIDIA GPUs."""
    choice = select("linux")
    assert (choice.collectors, choice.parent_watch, choice.c_helper) == ("procfs", "pidfd", True)
    assert (choice.stop_signals, choice.signal_install) == (("SIGTERM", "SIGINT"), "loop")
    assert (choice.child_group, choice.child_stop) == ("session", "SIGTERM")
    assert choice.gpus == ("amd", "nvidia") and choice.loopback == ("lo",)
    assert (choice.thread_source, choice.connection_source, choice.load_average) == ("loadavg", "snmp", True)
    assert choice.null_fields == {}


def test_linux_can_ask_for_the_psutil_backend():
    """--collectors psutil on Linux runs the portable backend; auto stays procfs."""
    assert select("linux", "psutil").collectors == "psutil"
    assert select("linux", "auto").collectors == "procfs"


def test_macos_runs_psutil_with_kqueue_and_apple_gpus():
    """macOS: psutil backend, kqueue NOTE_EXIT parent watch, POSIX signals, NVIDIA + Apple GPUs, no C helper."""
    choice = select("darwin")
    assert (choice.collectors, choice.parent_watch, choice.c_helper) == ("psutil", "kqueue", False)
    assert (choice.stop_signals, choice.signal_install) == (("SIGTERM", "SIGINT"), "loop")
    assert choice.gpus == ("nvidia", "apple") and choice.loopback == ("lo0",)
    assert choice.pooled_filesystems == {"zfs", "apfs"}
    assert set(choice.null_fields) == {"cpu.temperature", "cpu.threads", "network.connections"}
    assert "AccessDenied" in choice.null_fields["network.connections"]


def test_windows_runs_psutil_with_a_handle_wait_and_console_events():
    """Windows: psutil backend, process-handle wait, Ctrl+C/Ctrl+Break via signal.signal, Ctrl+Break stops the child."""
    choice = select("win32")
    assert (choice.collectors, choice.parent_watch, choice.c_helper) == ("psutil", "process-handle", False)
    assert (choice.stop_signals, choice.signal_install) == (("SIGINT", "SIGBREAK"), "signal")
    assert (choice.child_group, choice.child_stop) == ("process-group", "CTRL_BREAK_EVENT")
    assert choice.gpus == ("nvidia",) and choice.loopback == ("Loopback Pseudo-Interface",)
    assert choice.load_average is False and "cpu.loadAverage" in choice.null_fields
    assert choice.connection_source == "tcpstats" and "network.connections" not in choice.null_fields


def test_bsd_watches_with_kqueue_and_other_systems_poll():
    """FreeBSD is kqueue-capable like macOS; an unknown POSIX system falls back to polling."""
    assert select("freebsd14").parent_watch == "kqueue"
    assert select("sunos5").parent_watch == "poll"


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32", "freebsd14"])
def test_the_portfile_is_replaced_atomically_everywhere(platform):
    """Every platform writes the portfile as a temp file renamed with os.replace."""
    assert select(platform).portfile == "os.replace"


def test_procfs_off_linux_and_unknown_backends_are_one_line_errors():
    """--collectors procfs on macOS/Windows and an unknown backend name are ConfigErrors naming the fix."""
    with pytest.raises(ConfigError, match="use --collectors psutil"):
        select("darwin", "procfs")
    with pytest.raises(ConfigError, match="use --collectors psutil"):
        select("win32", "procfs")
    with pytest.raises(ConfigError, match="auto, procfs, psutil"):
        select("linux", "wmi")


def test_a_captured_tree_is_replayed_by_procfs_only():
    """--proc-root/--sys-root (not this machine) need procfs: auto picks it anywhere, psutil is refused."""
    assert select("darwin", "auto", on_host=False).collectors == "procfs"
    assert select("linux", "auto", on_host=False).collectors == "procfs"
    with pytest.raises(ConfigError, match="need --collectors procfs"):
        select("linux", "psutil", on_host=False)


def test_monitor_child_options_follow_the_platform():
    """SystemMonitor: its own session + SIGTERM on POSIX; CREATE_NEW_PROCESS_GROUP + CTRL_BREAK_EVENT on Windows."""
    assert child_popen_options(select("linux")) == {"start_new_session": True}
    assert child_popen_options(select("darwin")) == {"start_new_session": True}
    assert child_popen_options(select("win32")) == {"creationflags": 0x00000200}
    assert child_stop_signal(select("linux")) == signal.SIGTERM
    assert child_stop_signal(select("win32")) == 1  # CTRL_BREAK_EVENT


# ---------------------------------------------------------------- packaging


def _setup_kwargs(platform: str) -> dict:
    """What setup.py hands to setuptools when run under `platform` (a subprocess, setup() captured)."""
    probe = (
        f"import sys, json, runpy, setuptools; sys.platform = {platform!r}; seen = {{}};"
        "setuptools.setup = lambda **kw: seen.update(kw);"
        "runpy.run_path('setup.py'); print(json.dumps(seen))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True)
    import json

    return json.loads(out.stdout)


@pytest.mark.parametrize(("platform", "modules"), [
    ("linux", ["native/build_ffi.py:ffibuilder"]), ("darwin", []), ("win32", []),
])
def test_the_c_helper_is_built_on_linux_only(platform, modules):
    """setup.py names the cffi module on Linux and nothing elsewhere, so no compiler is ever tried there."""
    assert _setup_kwargs(platform) == {"cffi_modules": modules}


def test_package_metadata_names_the_three_platforms():
    """pyproject's classifiers state Linux, macOS and Windows support."""
    classifiers = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["classifiers"]
    assert {"Operating System :: POSIX :: Linux", "Operating System :: MacOS",
            "Operating System :: Microsoft :: Windows"} <= set(classifiers)


# ---------------------------------------------------------------- parent watches


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _need(kind: str) -> None:
    if kind == "kqueue" and not hasattr(select_module, "kqueue"):
        pytest.skip("select.kqueue exists only on macOS/BSD")
    if kind == "pidfd" and not hasattr(os, "pidfd_open"):
        pytest.skip("os.pidfd_open exists only on Linux >= 5.3")


@pytest.mark.parametrize("kind", ["pidfd", "kqueue", "process-handle", "poll"])
async def test_parent_watch_stops_the_service_when_the_parent_exits(kind):
    """Each watch kind sets the stop event once the watched process ends, and not before.

    On Linux, "process-handle" runs psutil's wait (WaitForSingleObject on Windows, a poll here).
    """
    _need(kind)
    child = _sleeper()
    stop = asyncio.Event()
    watch = asyncio.create_task(parent._watch(child.pid, stop, kind))
    try:
        await asyncio.sleep(0.3)
        assert not stop.is_set() and not watch.done()
        child.kill()
        await asyncio.to_thread(child.wait)
        await asyncio.wait_for(stop.wait(), DEADLINE)
    finally:
        child.kill()
        watch.cancel()


@pytest.mark.parametrize("kind", ["pidfd", "kqueue", "process-handle", "poll"])
async def test_parent_watch_of_a_gone_process_stops_at_once(kind):
    """A parent already gone at start stops the service instead of waiting forever."""
    _need(kind)
    stop = asyncio.Event()
    await asyncio.wait_for(parent._watch(_gone_pid(), stop, kind), DEADLINE)
    assert stop.is_set()


async def test_cancelling_a_handle_wait_ends_its_thread():
    """Cancelling the Windows-style watch ends its worker thread: the loop's executor then shuts down."""
    child = _sleeper()
    try:
        watch = asyncio.create_task(parent.wait_by_handle(child.pid))
        await asyncio.sleep(0.2)
        watch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watch
        # Waits for every executor thread: a thread still blocked on the process would hang here.
        await asyncio.wait_for(asyncio.get_running_loop().shutdown_default_executor(), DEADLINE)
        assert child.poll() is None  # it ended because it was cancelled, not because the child died
    finally:
        child.kill()
        child.wait()


# ---------------------------------------------------------------- stop signals


@pytest.mark.parametrize("platform", ["linux", "win32"])
async def test_stop_signals_set_the_stop_event(platform):
    """The loop handler (POSIX) and the plain signal.signal handler (Windows' path) both set `stop` on SIGINT."""
    stop = asyncio.Event()
    before = signal.getsignal(signal.SIGINT)
    restore = install_stop_signals(stop, select(platform))
    try:
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.wait_for(stop.wait(), DEADLINE)
    finally:
        restore()
        if signal.getsignal(signal.SIGINT) is not before:  # asyncio's remove_signal_handler resets to default
            signal.signal(signal.SIGINT, before)


# ---------------------------------------------------------------- no POSIX-only names on the psutil path

_WINDOWS_SHAPED = r"""
import os, sys
import psutil  # imported first: psutil's own Linux module needs these names
# Not pread: Linux's /proc/self/statm opens here, so the sampler would reach it (on Windows its open fails).
posix_only = ("sysconf", "O_CLOEXEC", "pidfd_open", "statvfs")
saved = {name: getattr(os, name) for name in posix_only if hasattr(os, name)}
for name in saved:
    delattr(os, name)
import asyncio
from aiohttp.test_utils import TestClient, TestServer
from tracklab_sysmon.collectors.portable import portable_collectors
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.platforms import select
from tracklab_sysmon.server import create_app
os.statvfs = saved["statvfs"]  # psutil.disk_usage calls it on POSIX; on Windows psutil has its own

async def main():
    app = create_app(ServiceConfig(node_id="w", interval=3600.0), collectors=portable_collectors(select("win32")))
    async with TestClient(TestServer(app)) as client:
        health = await (await client.get("/api/health")).json()
        snap = (await (await client.get("/api/system/metrics")).json())[0]
    print(health["status"], snap["memory"]["total"] > 0, snap["cpu"]["loadAverage"])

asyncio.run(main())
"""


def test_the_service_runs_without_posix_only_os_names():
    """With os.sysconf, O_CLOEXEC and pidfd_open gone (as on Windows) and statvfs gone while importing,
    the service imports and serves the win32 selection: healthy, memory known, load average null."""
    env = {**os.environ, "TRACKLAB_SYSMON_NATIVE": "off"}
    done = subprocess.run([sys.executable, "-c", _WINDOWS_SHAPED], capture_output=True, text=True, env=env,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["healthy", "True", "None"]


def test_a_child_the_stop_signal_cannot_reach_is_killed():
    """When sending the stop signal fails (Windows' Ctrl+Break without a shared console), the child is killed."""
    from tracklab_sysmon.monitor import _terminate

    child = _sleeper()
    _terminate(child, None, stop_signal=999)  # no such signal: os.kill raises OSError, as Windows would
    assert child.returncode == -signal.SIGKILL
