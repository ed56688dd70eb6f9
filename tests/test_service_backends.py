"""The whole service over both collector backends (procfs + C helper, psutil): REST, WebSocket, SDK,
Prometheus and the CLI; the two backends agreeing on this machine; the macOS path with a stand-in ioreg."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
import time

import aiohttp
import orjson
import pytest
from conftest import FIXTURES, require_command
from prometheus_client.parser import text_string_to_metric_families

from tracklab_sysmon import wire
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.collectors.apple import samples_from_ioreg
from tracklab_sysmon.collectors.portable import portable_collectors
from tracklab_sysmon.collectors.portable.gpus import AMD_LINUX_ONLY
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.monitor import SystemMonitor
from tracklab_sysmon.platforms import select
from tracklab_sysmon.sdk import SystemMetricsConfig, get_system_metrics, init_system_metrics, shutdown_system_metrics
from tracklab_sysmon.server import create_app, keys, ws

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares against a live Linux /proc")

NODE = "backend-node"
SLOW = 3600.0  # no background tick: a test ticks the sampler itself
DEADLINE = 20.0  # upper bound on waiting for an event; never a speed assertion
PAGE = os.sysconf("SC_PAGE_SIZE")
BACKENDS = ["procfs", "psutil"]


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture
async def client(aiohttp_client, backend):
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=20, collectors=backend)
    return await aiohttp_client(create_app(config))


async def _json(response, status: int = 200):
    assert response.status == status, await response.text()
    return await response.json()


# ---------------------------------------------------------------- REST, WebSocket, Prometheus


async def test_health_names_the_backend_and_every_collector_works(client, backend):
    """/api/health says which backend runs; cpu, memory, disk and network are ok under both."""
    health = await _json(await client.get("/api/health"))
    assert health["collectorsBackend"]["name"] == backend
    assert health["collectorsBackend"]["nulls"] == {}  # Linux: the psutil backend has every field
    assert {health["collectors"][n]["status"] for n in ("cpu", "memory", "disk", "network")} == {"ok"}
    assert health["status"] == "healthy"


async def test_metrics_carry_the_seed_keys_with_real_values(client):
    """Every seed key is present and, on this Linux machine, known (not null) under both backends."""
    await asyncio.sleep(0.2)  # some CPU time passes on every core, so each core's usage is known
    await client.server.app[keys.SAMPLER].tick()
    (snap,) = await _json(await client.get("/api/system/metrics"))
    cpu, memory, disk, network = snap["cpu"], snap["memory"], snap["disk"], snap["network"]
    assert 0.0 <= cpu["overall"] <= 100.0 and len(cpu["cores"]) == os.cpu_count()
    assert all(0.0 <= c["usage"] <= 100.0 for c in cpu["cores"])
    assert len(cpu["loadAverage"]) == 3 and cpu["processes"] > 0 and cpu["threads"] >= cpu["processes"]
    assert memory["total"] == os.sysconf("SC_PHYS_PAGES") * PAGE
    assert memory["used"] + memory["available"] == memory["total"]
    assert 0 < disk["used"] < disk["total"] and disk["ioRead"] is not None
    assert network["bytesIn"] is not None and network["connections"] is not None
    assert "lo" not in [i["name"] for i in network["interfaces"]]


async def test_system_info_and_history(client):
    """/api/system/info knows the machine; history returns the snapshots ticked, oldest first."""
    info = await _json(await client.get("/api/system/info"))
    assert info["cpu_threads"] == os.cpu_count() and info["memory_total"] > 0 and info["disk_total"] > 0
    sampler = client.server.app[keys.SAMPLER]
    for _ in range(3):
        await asyncio.sleep(0.002)
        await sampler.tick()
    history = await _json(await client.get("/api/system/metrics/history?limit=3"))
    stamps = [s["timestamp"] for s in history]
    assert len(stamps) == 3 and stamps == sorted(stamps)


async def test_websocket_streams_info_then_every_tick(client):
    """The WebSocket sends info, the latest snapshot, then the snapshot of each new tick."""
    conn = await client.ws_connect(ws.WS_PATH)
    try:
        frames = [orjson.loads((await asyncio.wait_for(conn.receive(), DEADLINE)).data) for _ in range(2)]
        assert [f["type"] for f in frames] == ["info", "metrics"]
        await asyncio.sleep(0.2)  # CPU time passes, so the new tick's usage is known
        stamp = (await client.server.app[keys.SAMPLER].tick()).timestamp
        while True:
            frame = orjson.loads((await asyncio.wait_for(conn.receive(), DEADLINE)).data)
            if frame["type"] == "metrics" and frame["data"]["timestamp"] == stamp:
                break
        assert frame["nodeId"] == NODE and frame["data"]["cpu"]["overall"] is not None
    finally:
        await conn.close()


async def test_prometheus_equals_rest_and_passes_promtool(client, tmp_path):
    """/metrics shows the same memory and per-interface counters as REST, and promtool accepts it."""
    (snap,) = await _json(await client.get("/api/system/metrics"))
    text = await (await client.get("/metrics")).text()
    samples = {(s.name, s.labels.get("interface")): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("tracklab_sysmon_memory_total_bytes", None)] == snap["memory"]["total"]
    for iface in snap["network"]["interfaces"]:
        assert samples[("tracklab_sysmon_network_receive_bytes_total", iface["name"])] == iface["bytesRecv"]
    promtool = require_command("promtool")
    checked = await asyncio.to_thread(subprocess.run, [promtool, "check", "metrics"], input=text,
                                      capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr


# ---------------------------------------------------------------- the process: SDK, CLI


def test_sdk_reads_a_monitor_started_with_each_backend(backend):
    """SystemMonitor(--collectors X) starts the child with that backend; the SDK gets system/* keys from it."""
    with SystemMonitor(rest_port=0, interval=0.1, extra_args=("--collectors", backend)) as monitor:
        try:
            init_system_metrics(SystemMetricsConfig(service_url=monitor.url, cache_duration=0.1))
            metrics = get_system_metrics()
            assert 0.0 <= metrics["system/cpu.overall"] <= 100.0 and 0.0 < metrics["system/memory.usage"] < 100.0

            async def health() -> dict:
                async with monitor.client as client:
                    return await client.get_health()

            assert asyncio.run(health())["collectorsBackend"]["name"] == backend
        finally:
            shutdown_system_metrics()


def test_cli_serves_with_psutil_and_exits_0_on_sigterm(tmp_path):
    """`serve --collectors psutil`: portfile once listening, SIGTERM -> exit 0 and the portfile removed."""
    portfile = tmp_path / "port.json"
    proc = subprocess.Popen([sys.executable, "-m", "tracklab_sysmon", "serve", "--collectors", "psutil",
                             "--rest-api-port", "0", "--portfile", str(portfile)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + DEADLINE
        while not portfile.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        url = json.loads(portfile.read_text())["url"]

        async def health() -> dict:
            async with aiohttp.ClientSession() as session, session.get(url + "/api/health") as response:
                return await response.json()

        assert asyncio.run(health())["collectorsBackend"]["name"] == "psutil"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(DEADLINE) == 0
        assert not portfile.exists()
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(("args", "message"), [
    (["--collectors", "psutil", "--proc-root", str(FIXTURES / "workstation/proc")], "need --collectors procfs"),
    (["--collectors", "wmi"], "'wmi' is not one of"),
])
def test_cli_rejects_bad_backend_choices_in_one_line(args, message):
    """A captured tree with psutil, or an unknown backend: one line on stderr, exit code 2."""
    done = subprocess.run([sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", *args],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- the two backends agree


def _named(items) -> dict:
    return {i.name: i for i in items}


def _between(low: float, value: float, high: float, slack: float = 0.0) -> bool:
    return min(low, high) - slack <= value <= max(low, high) + slack


def _until_between(read_procfs, read_psutil, slack: float = 0.0, attempts: int = 50) -> tuple:
    """procfs, psutil, procfs again until psutil's value lies between the two procfs ones (± slack).

    Gauges such as available memory move both ways, so a busy moment can leave psutil outside the
    bracket; a quiet one cannot. Returns the last (before, value, after) for the assertion message.
    """
    for _ in range(attempts):
        before, value, after = read_procfs(), read_psutil(), read_procfs()
        if _between(before, value, after, slack):
            return before, value, after
    return before, value, after


def test_psutil_and_procfs_agree_on_this_machine():
    """Side-by-side reads of the two backends on this live machine agree within these tolerances:

    - counters (per-core CPU seconds per mode, per-disk and per-interface bytes/ops/packets) exactly:
      psutil's value lies between a procfs read just before and one just after it;
    - rates (per-disk and per-interface, over the same `now` values) exactly within the window's
      noise: psutil's delta lies between the smallest and largest delta the two procfs reads allow
      (± 0.01 for rounding to 2 decimals);
    - memory total, swap total and disk size exactly; available memory, disk used, processes,
      threads and connections between two procfs reads (± 1 page for memory, ± 1 MiB for disk used)
      at some quiet moment of up to 50 tries, since they move both ways;
    - the same whole disks and non-loopback interfaces, by name.

    The sources are the same files: psutil 7 on Linux reads /proc/stat (per-CPU lines / CLK_TCK),
    /proc/diskstats (sectors x 512), /proc/net/dev, and /proc/meminfo (MemTotal, MemAvailable,
    SwapTotal, SwapFree), so exact agreement is the expectation, not luck.
    """
    before = {c.name: c for c in default_collectors(backend="procfs", host_gpus=False)}
    after = {c.name: c for c in default_collectors(backend="procfs", host_gpus=False)}
    ps = {c.name: c for c in default_collectors(backend="psutil", host_gpus=False)}
    window = []
    for now in (0.0, 1.0):
        if now:
            time.sleep(0.5)
        window.append({name: (before[name].collect(now), ps[name].collect(now), after[name].collect(now))
                       for name in ("cpu", "disk", "network")})

    cpu_a, cpu_p, cpu_b = window[1]["cpu"]
    assert [c.id for c in cpu_p.cores] == [c.id for c in cpu_a.cores]
    for a, p, b in zip(cpu_a.cores, cpu_p.cores, cpu_b.cores, strict=True):
        for mode in ("user", "nice", "system", "iowait", "irq", "softirq", "steal"):
            assert _between(getattr(a.times, mode), getattr(p.times, mode), getattr(b.times, mode)), (mode, a, p, b)

    for section, items, fields, rates in (
        ("disk", "devices", ("read_bytes", "write_bytes", "reads", "writes"),
         (("read_rate", "read_bytes"), ("write_rate", "write_bytes"))),
        ("network", "interfaces", ("bytes_recv", "bytes_sent", "packets_recv", "packets_sent"),
         (("bytes_in", "bytes_recv"), ("bytes_out", "bytes_sent"), ("packets_in", "packets_recv"))),
    ):
        (a0, p0, b0), (a1, p1, b1) = window[0][section], window[1][section]
        names = [set(_named(getattr(s, items))) for s in (a1, p1, b1)]
        assert names[0] == names[1] == names[2] and names[1], (section, names)
        for name in names[1]:
            first = [_named(getattr(s, items))[name] for s in (a0, p0, b0)]
            last = [_named(getattr(s, items))[name] for s in (a1, p1, b1)]
            for field in fields:
                assert _between(*(getattr(x, field) for x in last)), (section, name, field, last)
            for rate, counter in rates:  # elapsed is exactly 1.0 for both: the rate is the delta
                low = getattr(last[0], counter) - getattr(first[2], counter)
                high = getattr(last[2], counter) - getattr(first[0], counter)
                assert low - 0.01 <= getattr(last[1], rate) <= high + 0.01, (section, name, rate, low, high)

    mem_p, mem_procfs = ps["memory"], before["memory"]
    assert mem_p.collect(0).total == mem_procfs.collect(0).total
    assert mem_p.collect(0).swap.total == mem_procfs.collect(0).swap.total
    bracket = _until_between(lambda: mem_procfs.collect(0).available, lambda: mem_p.collect(0).available, PAGE)
    assert _between(*bracket, slack=PAGE), bracket
    disk_p, disk_procfs = ps["disk"], before["disk"]
    assert disk_p.collect(2.0).total == disk_procfs.collect(2.0).total
    bracket = _until_between(lambda: disk_procfs.collect(3.0).used, lambda: disk_p.collect(3.0).used, 1 << 20)
    assert _between(*bracket, slack=1 << 20), bracket
    for field in ("processes", "threads"):
        bracket = _until_between(lambda f=field: getattr(before["cpu"].collect(5.0), f),
                                 lambda f=field: getattr(ps["cpu"].collect(5.0), f))
        assert _between(*bracket), (field, bracket)
    bracket = _until_between(lambda: before["network"].collect(6.0).connections,
                             lambda: ps["network"].collect(6.0).connections)
    assert _between(*bracket), ("connections", bracket)


# ---------------------------------------------------------------- the macOS path, end to end here


@pytest.fixture
def stand_in_ioreg(tmp_path, monkeypatch):
    """An `ioreg` on PATH that prints a captured M1 Pro listing, as the real one does on a Mac."""
    text = (FIXTURES / "apple/m1-pro.txt").read_text()
    script = tmp_path / "ioreg"
    script.write_text(f"#!/bin/sh\nexec cat '{FIXTURES / 'apple/m1-pro.txt'}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return text


async def test_macos_service_reports_the_apple_gpu_from_ioreg(aiohttp_client, stand_in_ioreg):
    """The darwin selection's collectors in a real service: the Apple GPU from `ioreg` on PATH in REST and
    /metrics, AMD unavailable with its reason, and health naming the psutil backend's null fields."""
    collectors = portable_collectors(select("darwin"))
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5)
    client = await aiohttp_client(create_app(config, collectors=collectors))
    (snap,) = await _json(await client.get("/api/system/metrics"))
    memory_total = snap["memory"]["total"]
    expected = [wire.accelerator_to_wire(a) for a in samples_from_ioreg(stand_in_ioreg, memory_total)]
    assert snap["accelerators"] == expected and expected[0]["name"] == "Apple M1 Pro"
    assert snap["network"]["connections"] is None and snap["cpu"]["threads"] is None  # macOS nulls
    health = await _json(await client.get("/api/health"))
    assert health["collectors"]["apple"]["status"] == "ok"
    assert health["collectors"]["amd"] == {**health["collectors"]["amd"], "status": "unavailable",
                                           "lastError": AMD_LINUX_ONLY}
    assert health["collectorsBackend"]["platform"] == "darwin"
    assert set(health["collectorsBackend"]["nulls"]) == {"cpu.temperature", "cpu.threads", "network.connections"}
    text = await (await client.get("/metrics")).text()
    utilization = {s.labels["gpu"]: s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "tracklab_sysmon_gpu_utilization_ratio"}
    assert utilization == {"0": expected[0]["utilization"] / 100}
