"""`serve` hands its parsed config across exec to an image without click: same pid and command line, every
option kept, stop signals never lost, and a serve from this process where the exec cannot be done."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import orjson
import pytest
from service_process import DEADLINE, Service

from tracklab_sysmon import service_main
from tracklab_sysmon.config import HANDOFF_VAR, PeerSpec, ServiceConfig

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the hand-over is an exec: POSIX only")

# A value unlike the default for every field: a field the hand-over forgot would come back as its default.
NON_DEFAULT = {
    "host": "127.0.0.2", "port": 18081, "node_id": "handed", "interval": 0.5, "history": 7, "history_mib": 3,
    "proc_root": "/tmp/proc", "sys_root": "/tmp/sys", "enable_dcgm": True, "verbose": True,
    "portfile": "/tmp/port.json", "parent_pid": 4242, "allow_origins": ("https://a.example", "*"),
    "max_ws_clients": 9, "peers": (PeerSpec("http://10.0.0.2:8080", "peer-token"), PeerSpec("https://n3:9")),
    "token": "s3cret", "insecure": True, "max_connections": 99, "keepalive_timeout": 2.5, "header_timeout": 3.5,
    "write_timeout": 4.5, "max_history_streams": 5, "collectors": "procfs", "cgroup": "self",
    "tpu_metrics_addr": "localhost:9999",
}


def test_every_config_field_survives_the_hand_over():
    """Each field, set unlike its default, comes back equal through the JSON the pipe carries."""
    defaults = ServiceConfig()
    assert set(NON_DEFAULT) == {f.name for f in dataclasses.fields(ServiceConfig)}
    assert all(getattr(defaults, name) != value for name, value in NON_DEFAULT.items())
    config = ServiceConfig(**NON_DEFAULT)
    carried = orjson.loads(orjson.dumps(service_main.config_to_dict(config)))
    assert service_main.config_from_dict(carried) == config


def _serve_command(*flags: str) -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "tracklab-sysmon")
    return [script, "serve", "--rest-api-port", "0", *flags]


def _get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_console_script_serves_from_its_own_pid_and_command_line_with_its_options(tmp_path):
    """The installed `tracklab-sysmon serve` re-executes itself: the portfile's pid is the one started, its
    command line reads as typed, and the options (one from the environment) reached the serving image."""
    portfile = tmp_path / "port.json"
    command = _serve_command("--portfile", str(portfile), "--node-id", "handed", "--interval", "0.5")
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                env={**os.environ, "TRACKLAB_SYSMON_TOKEN": "from-env"})
    try:
        end = time.monotonic() + DEADLINE
        while not portfile.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < end, "the service never wrote its portfile"
            time.sleep(0.05)
        info = json.loads(portfile.read_text())
        assert info["pid"] == proc.pid
        with open(f"/proc/{proc.pid}/cmdline", "rb") as handle:
            assert handle.read().split(b"\0")[1:-1] == [arg.encode() for arg in command]
        assert _get(info["url"] + "/api/system/metrics")[0] == 401
        status, body = _get(info["url"] + "/api/health", "from-env")
        assert status == 200
        health = json.loads(body)
        assert (health["nodeId"], health["interval"]) == ("handed", 0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0, log.read_text()[-2000:]
    assert not portfile.exists()
    assert log.read_text().count("serving on") == 1


def test_a_stop_pending_across_the_exec_ends_start_up_with_exit_0(tmp_path):
    """SIGTERM sent at once to a serve started with it blocked stays pending through the command line and the
    exec; the serving image catches it before unblocking it: exit 0, never listening, no portfile."""
    portfile = tmp_path / "port.json"
    proc = subprocess.Popen(
        _serve_command("--portfile", str(portfile)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}),
    )
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, stderr.decode()
    assert "serving on" not in stderr.decode()
    assert not portfile.exists()


def test_a_broken_hand_over_is_one_line_and_exit_2(tmp_path):
    """An image told to read a config from a descriptor that holds none says so in one line."""
    proc = subprocess.run([sys.executable, "-m", "tracklab_sysmon", "serve"], capture_output=True, timeout=DEADLINE,
                          env={**os.environ, HANDOFF_VAR: "987"})
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [
        "tracklab-sysmon: error: the command line's hand-over failed: [Errno 9] Bad file descriptor"]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_without_an_interpreter_to_exec_hand_over_returns_with_nothing_left_behind(monkeypatch):
    """When the exec fails, `hand_over` returns (the caller serves from this image): the pipe is closed and
    the stop signals are no longer blocked."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    before = _open_fds()
    blocked_before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert service_main.hand_over(ServiceConfig(), "tracklab-sysmon") is None
    assert _open_fds() == before
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == blocked_before


def test_a_config_too_big_for_the_pipe_is_not_handed_over():
    """The pipe is filled without blocking; a payload it cannot hold at once gives None and closes both ends."""
    before = _open_fds()
    assert service_main._filled_pipe(b"x" * (4 << 20)) is None
    assert _open_fds() == before
    read_end = service_main._filled_pipe(b'{"a": 1}')
    assert read_end is not None
    assert service_main._read_all(read_end) == b'{"a": 1}'
    assert _open_fds() == before


def test_a_service_started_by_the_test_harness_serves_through_the_hand_over(tmp_path):
    """`python -m tracklab_sysmon serve` (what SystemMonitor and the SDK start) hands over too."""
    service = Service(tmp_path, "--interval", "0.2", python_flags=("-X", "importtime"))
    try:
        assert json.loads(service.portfile.read_text())["pid"] == service.proc.pid
        assert service.log().count("import time: self [us] | cumulative | imported package") == 2
    finally:
        assert service.stop() == 0
