"""Each file in examples/ runs as a real process against a real service and prints real values."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tracklab_sysmon.monitor import SystemMonitor

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"
PERCENT = r"\d+\.\d%"


@pytest.fixture(scope="module")
def service():
    """The service the URL-driven examples talk to, on a free port."""
    with SystemMonitor(rest_port=0, interval=0.2) as mon:
        yield mon


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def _run(name: str, cwd: pathlib.Path, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=cwd, env=_env(**env),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_example_has_a_test():
    """No example file goes untested: the list below names every examples/*.py."""
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(TESTED)


def test_python_api(tmp_path):
    """python_api.py starts its own monitor and prints the platform, core count, CPU and memory usage."""
    out = _run("python_api.py", tmp_path, TRACKLAB_SYSMON_PORT="0")
    assert re.search(r"^System: linux with [1-9]\d* CPU cores$", out, re.M)
    assert re.search(rf"^CPU Usage: {PERCENT}$", out, re.M)
    assert re.search(rf"^Memory Usage: {PERCENT}$", out, re.M)


def test_global_instance(tmp_path):
    """global_instance.py starts, uses and stops the global monitor."""
    out = _run("global_instance.py", tmp_path, TRACKLAB_SYSMON_PORT="0")
    assert re.search(r"^Global monitor serving at http://127\.0\.0\.1:\d+$", out, re.M)
    assert re.search(rf"^CPU Usage: {PERCENT}$", out, re.M)
    assert out.rstrip().endswith("Stopped: True")


def test_sdk_integration(service, tmp_path):
    """sdk_integration.py writes one JSON line with accuracy and the system metrics of the real service."""
    out = _run("sdk_integration.py", tmp_path, TRACKLAB_SYSMON_URL=service.url)
    header, line = out.splitlines()
    record = json.loads(line)
    assert header.startswith("Logged to tracklab-runs/my-project/")
    assert record["accuracy"] == 0.95 and record["_step"] == 0
    assert 0.0 <= record["system/cpu.overall"] <= 100.0 and 0.0 < record["system/memory.usage"] < 100.0
    assert len(list((tmp_path / "tracklab-runs" / "my-project").glob("*.jsonl"))) == 1


def test_sdk_wrap_log(service, tmp_path):
    """sdk_wrap_log.py shows the wrapped tracker receiving loss plus system metrics at each step."""
    out = _run("sdk_wrap_log.py", tmp_path, TRACKLAB_SYSMON_URL=service.url)
    lines = out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["step 0", "step 1"]
    assert all("loss=" in line and "system/memory.usage=" in line for line in lines)


def test_troubleshooting(tmp_path):
    """troubleshooting.py runs a verbose monitor (its log on stderr) and a 5 s SDK cache."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "troubleshooting.py")], cwd=tmp_path,
        env=_env(TRACKLAB_SYSMON_PORT="0"), capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^Verbose monitor at http://127\.0\.0\.1:\d+", result.stdout, re.M)
    assert "SDK refreshes system metrics every 5 s" in result.stdout
    assert "collector cpu" in result.stderr  # the service's verbose log reached us


def _get_json(url: str, deadline: float) -> dict:
    while True:
        try:
            with _DIRECT.open(url, timeout=5) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_backend_fastapi(service, tmp_path):
    """backend_fastapi.py serves /api/system/status with system info and metrics from the real service."""
    port = _free_port()
    app = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "backend_fastapi.py")], cwd=tmp_path,
        env=_env(TRACKLAB_SYSMON_URL=service.url, PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        body = _get_json(f"http://127.0.0.1:{port}/api/system/status", time.monotonic() + 30)
    finally:
        app.send_signal(signal.SIGINT)
        _, err = app.communicate(timeout=15)
    assert body["status"] == "ok", err
    assert body["system"]["platform"] == "linux" and body["system"]["cpu_cores"] >= 1
    assert 0.0 <= body["metrics"]["cpu"]["overall"] <= 100.0


def test_backend_fastapi_without_service(tmp_path):
    """With no service the status endpoint answers the seed's error body instead of failing."""
    port = _free_port()
    app = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "backend_fastapi.py")], cwd=tmp_path,
        env=_env(TRACKLAB_SYSMON_URL=f"http://127.0.0.1:{_free_port()}", PORT=str(port)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        body = _get_json(f"http://127.0.0.1:{port}/api/system/status", time.monotonic() + 30)
    finally:
        app.send_signal(signal.SIGINT)
        app.communicate(timeout=15)
    assert body == {"status": "error", "message": "System monitor not available"}


TESTED = [
    "python_api.py",
    "global_instance.py",
    "sdk_integration.py",
    "sdk_wrap_log.py",
    "troubleshooting.py",
    "backend_fastapi.py",
]
