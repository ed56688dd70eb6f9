"""/metrics on a real server: promtool-clean, OpenMetrics on request, values equal the REST snapshot."""

from __future__ import annotations

import asyncio
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from conftest import require_command
from tracklab_sysmon import __version__, hotpath
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.config import PeerSpec, ServiceConfig
from tracklab_sysmon.model import AcceleratorMemory, AcceleratorSample
from tracklab_sysmon.server import create_app, keys

NODE = "prom-node"
SLOW = 3600.0  # one snapshot for the whole test: REST and /metrics must show the same one


class StandInGpu:
    """A collector at the Collector boundary reporting one GPU with fixed readings."""

    name, section, blocking = "gpu-standin", "accelerators", False

    def collect(self, now: float) -> object:
        return (
            AcceleratorSample(
                id=0, type="gpu", name="Stand-in GPU", utilization=37.0,
                memory=AcceleratorMemory(used=2 << 30, total=8 << 30, percentage=25.0),
                temperature=61.0, power=123.5, fan_speed=None, vendor="nvidia", uuid="GPU-1234",
            ),
        )


async def _client(aiohttp_client, **overrides):
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5, **overrides)
    return await aiohttp_client(create_app(config, collectors=(*default_collectors(), StandInGpu())))


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, keyed by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(client, **headers) -> tuple[str, str]:
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200
    return response.headers["Content-Type"], await response.text()


async def test_promtool_accepts_the_exposition(aiohttp_client, tmp_path):
    """`promtool check metrics` finds no problem in the text /metrics serves."""
    promtool = require_command("promtool")
    client = await _client(aiohttp_client)
    _, text = await _scrape(client)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert text.count("tracklab_sysmon_") > 50


async def test_values_equal_the_rest_snapshot(aiohttp_client):
    """Memory, CPU seconds, disk and network counters and GPU gauges equal the JSON snapshot, in base units."""
    client = await _client(aiohttp_client)
    snap = (await (await client.get("/api/system/metrics")).json())[0]
    _, text = await _scrape(client)
    samples = _samples(text)

    def value(name: str, **labels: str) -> float:
        return samples[(name, frozenset({"node_id": NODE, **labels}.items()))]

    assert value("tracklab_sysmon_memory_used_bytes") == snap["memory"]["used"]
    assert value("tracklab_sysmon_memory_total_bytes") == snap["memory"]["total"]
    assert value("tracklab_sysmon_snapshot_timestamp_seconds") == snap["timestamp"] / 1000
    assert value("tracklab_sysmon_cpu_usage_ratio") == snap["cpu"]["overall"] / 100
    core = snap["cpu"]["cores"][-1]
    assert value("tracklab_sysmon_cpu_seconds_total", cpu=str(core["id"]), mode="user") == core["times"]["user"]
    assert value("tracklab_sysmon_load_average", window="5m") == snap["cpu"]["loadAverage"][1]
    for device in snap["disk"]["devices"]:
        assert value("tracklab_sysmon_disk_read_bytes_total", device=device["name"]) == device["readBytes"]
    for interface in snap["network"]["interfaces"]:
        assert value("tracklab_sysmon_network_receive_bytes_total", interface=interface["name"]) == interface["bytesRecv"]
    gpu = {"gpu": "0", "uuid": "GPU-1234"}
    assert value("tracklab_sysmon_gpu_utilization_ratio", **gpu) == 0.37
    assert value("tracklab_sysmon_gpu_memory_used_bytes", **gpu) == 2 << 30
    assert value("tracklab_sysmon_gpu_power_watts", **gpu) == 123.5


async def test_build_info_and_collector_health(aiohttp_client):
    """build_info carries version and backend; every collector reports success and its duration."""
    client = await _client(aiohttp_client)
    samples = _samples((await _scrape(client))[1])
    info = frozenset({"node_id": NODE, "version": __version__, "backend": hotpath.BACKEND}.items())
    assert samples[("tracklab_sysmon_build_info", info)] == 1.0
    for name in ("cpu", "memory", "disk", "network", "gpu-standin"):
        labels = frozenset({"node_id": NODE, "collector": name}.items())
        assert samples[("tracklab_sysmon_collector_success", labels)] == 1.0
        assert samples[("tracklab_sysmon_collector_duration_seconds", labels)] >= 0.0


async def test_openmetrics_when_the_scraper_asks(aiohttp_client):
    """An `Accept: application/openmetrics-text` scrape gets OpenMetrics, ending in `# EOF`; a plain one does not."""
    client = await _client(aiohttp_client)
    kind, text = await _scrape(client, Accept="application/openmetrics-text; version=1.0.0")
    assert kind.startswith("application/openmetrics-text") and text.endswith("# EOF\n")
    assert "# UNIT tracklab_sysmon_memory_used_bytes bytes" in text
    kind, text = await _scrape(client)
    assert kind.startswith("text/plain") and "# EOF" not in text


async def test_scrapes_never_collect(aiohttp_client):
    """Scraping renders the cached snapshot: the sampler does not tick however often /metrics is read."""
    client = await _client(aiohttp_client)
    sampler = client.server.app[keys.SAMPLER]
    ticks = sampler.ticks
    for _ in range(5):
        await _scrape(client)
    assert sampler.ticks == ticks


async def test_missing_values_are_omitted_not_zero(aiohttp_client):
    """A value the node cannot provide (disk usage of a captured tree, which has no file systems) has no sample."""
    roots = {"proc_root": str(_tree("proc")), "sys_root": str(_tree("sys"))}
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5, **roots)
    client = await aiohttp_client(create_app(config, collectors=default_collectors(**roots, statvfs=None)))
    snap = (await (await client.get("/api/system/metrics")).json())[0]
    names = {name for name, _ in _samples((await _scrape(client))[1])}
    assert snap["disk"]["total"] is None and "tracklab_sysmon_filesystem_size_bytes" not in names
    assert "tracklab_sysmon_memory_total_bytes" in names


def _tree(part: str):
    from conftest import FIXTURES

    return FIXTURES / "workstation" / part


async def test_aggregator_exposes_every_node_promtool_clean(aiohttp_client, aiohttp_server):
    """An aggregator's /metrics carries each peer's samples under its own node_id, plus peer_up, and passes promtool."""
    promtool = require_command("promtool")
    peers = [await aiohttp_server(create_app(ServiceConfig(node_id=n, interval=SLOW, history=5)))
             for n in ("peer-one", "peer-two")]
    urls = [str(p.make_url("")).rstrip("/") for p in peers]
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5, peers=tuple(PeerSpec(u) for u in urls))
    client = await aiohttp_client(create_app(config))
    for _ in range(200):
        if len(await (await client.get("/api/system/metrics")).json()) == 3:
            break
        await asyncio.sleep(0.05)
    _, text = await _scrape(client)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    samples = _samples(text)
    for node in (NODE, "peer-one", "peer-two"):
        assert ("tracklab_sysmon_memory_total_bytes", frozenset({"node_id": node}.items())) in samples
    for node, url in zip(("peer-one", "peer-two"), urls, strict=True):
        assert samples[("tracklab_sysmon_peer_up", frozenset({"node_id": node, "url": url}.items()))] == 1.0
