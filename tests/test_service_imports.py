"""The running service loads only what its path needs: the interpreter's own import log (-X importtime)
of a real `serve` process, exercised on every route but /metrics, then on /metrics."""

from __future__ import annotations

import ctypes
import json
import os

import aiohttp
import orjson
import pytest
from service_process import DEADLINE, Service

from tracklab_sysmon.protocol import WS_PATH

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="the procfs service path")

# Packages the service may need on some path only: each must be absent until that path runs.
OPTIONAL = ("click", "rich", "psutil", "pynvml", "prometheus_client")


def nvml_present() -> bool:
    """Whether this machine's dynamic loader finds NVML: then, and only then, the first tick loads pynvml."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


IMPORTTIME_HEADER = "import time: self [us] | cumulative | imported package"


def images(log: str) -> list[list[str]]:
    """The -X importtime log split per interpreter image: each one starts with the header line."""
    found: list[list[str]] = []
    for line in log.splitlines():
        if line == IMPORTTIME_HEADER:
            found.append([])
        elif line.startswith("import time:") and found:
            found[-1].append(line)
    return found


def imported(log: str) -> set[str]:
    """Top-level packages the serving image (the last one: the command line re-executes itself once its
    flags are parsed) imported, from its -X importtime lines (`import time: self | cumulative | name`)."""
    return {line.rsplit("|", 1)[1].strip().split(".")[0] for line in images(log)[-1]}


async def use_every_route_but_metrics(base: str, ticks: int) -> None:
    """REST, the dashboard and a WebSocket that sees `ticks` snapshots (a 5-tick slow tier included)."""
    async with aiohttp.ClientSession(base, timeout=aiohttp.ClientTimeout(total=DEADLINE)) as session:
        for path in ("/api/health", "/api/system/info", "/api/system/metrics", "/api/system/metrics/history",
                     "/api/system/nodes", "/api/system/processes", "/", "/static/app.js"):
            async with session.get(path) as response:
                assert response.status == 200, path
                await response.read()
        async with session.ws_connect(WS_PATH) as ws:
            frames = [orjson.loads(await ws.receive_str(timeout=DEADLINE)) for _ in range(ticks + 1)]
        assert [f["type"] for f in frames] == ["info"] + ["metrics"] * ticks


async def test_the_service_imports_only_what_its_path_needs(tmp_path):
    """After start-up and a use of every route but /metrics, none of the optional packages is loaded in the
    serving image (click parsed the flags in the image before it: two images, the same pid), pynvml only
    where NVML exists; prometheus_client first loads on the first /metrics. `--parent-pid` is set, as
    SystemMonitor and the SDK set it."""
    service = Service(tmp_path, "--interval", "0.1", "--parent-pid", str(os.getpid()),
                      python_flags=("-X", "importtime"))
    try:
        base = f"http://127.0.0.1:{service.port}"
        await use_every_route_but_metrics(base, ticks=6)
        log = service.log()
        assert len(images(log)) == 2, log[-3000:]
        assert "click" in {line.rsplit("|", 1)[1].strip().split(".")[0] for line in images(log)[0]}
        assert int(json.loads(service.portfile.read_text())["pid"]) == service.proc.pid
        expected = {"pynvml"} if nvml_present() else set()
        assert imported(log) & set(OPTIONAL) == expected
        async with aiohttp.ClientSession(base) as session, session.get("/metrics") as response:
            assert response.status == 200
            assert b"tracklab_sysmon_cpu_usage_ratio" in await response.read()
        assert imported(service.log()) & set(OPTIONAL) == expected | {"prometheus_client"}
    finally:
        assert service.stop() == 0, service.log()[-3000:]
