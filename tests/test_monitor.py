"""SystemMonitor and the global instance, driving the real service as a child process."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.request

import psutil
import pytest

from tracklab_sysmon import monitor as monitor_module
from tracklab_sysmon.errors import ConfigError
from tracklab_sysmon.monitor import (
    MonitorStartError,
    SystemMonitor,
    get_global_monitor,
    start_system_monitor,
    stop_system_monitor,
)

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def _get(url: str) -> dict:
    with _DIRECT.open(url, timeout=5) as resp:
        return json.loads(resp.read())


HANG = 60.0  # seconds; only a hang waits this long: the tests wait on the exit itself


def _gone(pid: int, wait: float = 0.0) -> bool:
    """Whether `pid` has exited, waiting up to `wait` s on its pidfd (a zombie awaiting its reaper counts)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], wait)[0])  # readable once the process has exited
    finally:
        os.close(pidfd)


@pytest.fixture
def global_reset():
    yield
    stop_system_monitor()


def test_starts_on_free_port_serves_and_stops():
    """rest_port=0 starts a child on a free port with the given node id; stop() ends it and is idempotent."""
    mon = SystemMonitor(rest_port=0, node_id="worker-01", interval=0.2)
    try:
        assert mon.running and mon.port > 0 and mon.url == f"http://127.0.0.1:{mon.port}"
        assert _get(mon.url + "/api/system/metrics")[0]["node_id"] == "worker-01"
        child = psutil.Process(mon.pid)
        assert child.ppid() == os.getpid()
        assert str(os.getpid()) in child.cmdline()  # --parent-pid <us>
    finally:
        mon.stop()
    assert not mon.running and _gone(child.pid)  # stop() returns once the child has exited
    mon.stop()  # a second stop is a no-op


def test_start_failure_carries_service_stderr():
    """A port already taken makes start fail with MonitorStartError that quotes the service's stderr."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MonitorStartError) as caught:
            SystemMonitor(rest_port=port)
    assert "cannot listen" in caught.value.stderr
    assert "cannot listen" in str(caught.value) and "exited with code" in str(caught.value)


def test_bad_option_fails_before_spawning(monkeypatch):
    """An invalid interval is a ConfigError raised here, without starting any process."""
    spawned = []
    monkeypatch.setattr(monitor_module.subprocess, "Popen", lambda *a, **k: spawned.append(a))
    with pytest.raises(ConfigError, match="interval"):
        SystemMonitor(rest_port=0, interval=0.0)
    assert spawned == []


def test_sync_and_async_context_managers():
    """`with` and `async with` both start the service and stop it on exit."""
    import asyncio

    with SystemMonitor(rest_port=0, start=False) as mon:
        pid = mon.pid
        assert _get(mon.url + "/api/health")["status"] in ("healthy", "degraded")
    assert _gone(pid)  # leaving the block stopped the child before returning

    async def use() -> tuple[int, float]:
        async with SystemMonitor(rest_port=0, start=False) as amon:
            async with amon.client as client:
                metrics = await client.get_formatted_metrics()
            return amon.pid, metrics["cpu"]["overall"]

    apid, overall = asyncio.run(use())
    assert 0.0 <= overall <= 100.0 and _gone(apid)


def test_attach_does_not_own_the_service():
    """A monitor attached by URL talks to that service, and its stop() leaves the service running."""
    with SystemMonitor(rest_port=0) as owner:
        attached = SystemMonitor.attach(owner.url)
        assert attached.url == owner.url and attached.pid is None
        attached.stop()
        assert owner.running and _get(owner.url + "/api/health")["service"] == "system_monitor"


def test_stop_escalates_to_kill_for_a_child_ignoring_sigterm(monkeypatch):
    """A child that ignores SIGTERM is SIGKILLed after the stop timeout."""
    monkeypatch.setattr(monitor_module, "STOP_TIMEOUT", 0.3)
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert child.stdout.readline() == b"ready\n"
    monitor_module._terminate(child, None)
    assert child.returncode == -signal.SIGKILL
    child.stdout.close()


_PARENT = textwrap.dedent(
    """
    import sys, time
    from tracklab_sysmon import {call}
    mon = {call}(rest_port=0, interval=0.2)
    print(mon.pid, mon.url, flush=True)
    {after}
    """
)


def _parent(call: str, after: str) -> tuple[subprocess.Popen, int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _PARENT.format(call=call, after=after)], stdout=subprocess.PIPE, text=True
    )
    pid, url = proc.stdout.readline().split()
    return proc, int(pid), url


def test_sigkilled_parent_takes_the_service_down():
    """SIGKILLing the process that started a SystemMonitor makes the service exit on its own."""
    parent, pid, url = _parent("SystemMonitor", "time.sleep(60)")
    try:
        assert _get(url + "/api/health")["service"] == "system_monitor"
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        assert _gone(pid, wait=HANG), "the service outlived its SIGKILLed parent"
    finally:
        parent.stdout.close()
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)


def test_global_instance_is_stopped_at_interpreter_exit():
    """A global monitor that the program never stops is stopped when the interpreter exits."""
    parent, pid, _url = _parent("start_system_monitor", "sys.exit(0)")
    parent.wait(30)
    parent.stdout.close()
    assert _gone(pid)  # the exit handler stopped it (and waited) before the interpreter ended


def test_global_instance_is_idempotent_and_thread_safe(global_reset):
    """Concurrent start_system_monitor calls create one monitor; stop clears it and may be repeated."""
    results: list[SystemMonitor] = []
    threads = [threading.Thread(target=lambda: results.append(start_system_monitor(rest_port=0))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(m) for m in results}) == 1 and get_global_monitor() is results[0]
    pid = results[0].pid
    stop_system_monitor()
    stop_system_monitor()
    assert get_global_monitor() is None and _gone(pid)


def test_token_reaches_the_child_by_environment_not_argv(monkeypatch):
    """SystemMonitor(token=...) guards the service; the token is not in its command line; its client sends it."""
    import asyncio
    import urllib.error

    monkeypatch.delenv("TRACKLAB_SYSMON_TOKEN", raising=False)
    with SystemMonitor(rest_port=0, token="s3cret-token") as mon:
        assert not any("s3cret-token" in arg for arg in psutil.Process(mon.pid).cmdline())
        with pytest.raises(urllib.error.HTTPError) as refused:
            _get(mon.url + "/api/system/info")
        refused.value.close()
        assert refused.value.code == 401

        async def read() -> dict:
            async with mon.client as client:
                return await client.get_system_info()

        assert asyncio.run(read())["platform"] == "linux"


def test_portfile_url_for_wildcard_and_ipv6_binds(tmp_path):
    """A wildcard bind is reached on loopback, and an IPv6 host is bracketed in the URL."""
    cases = {"0.0.0.0": "http://127.0.0.1:9", "::": "http://[::1]:9", "::1": "http://[::1]:9",
             "127.0.0.1": "http://127.0.0.1:9"}
    for host, url in cases.items():
        path = tmp_path / "port.json"
        path.write_text(json.dumps({"host": host, "port": 9, "pid": 1, "url": "ignored"}))
        assert monitor_module._read_portfile(str(path)) == url
    path.write_text("{")
    assert monitor_module._read_portfile(str(path)) is None
    assert monitor_module._read_portfile(str(tmp_path / "missing.json")) is None
