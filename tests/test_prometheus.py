"""/metrics on a real server: promtool-clean, OpenMetrics on request, values equal the REST snapshot."""

from __future__ import annotations

import asyncio
import subprocess

from conftest import require_command
from prometheus_client.parser import text_string_to_metric_families
from test_container import expected_container_series
from test_energy import expected_energy_series, node_tree

from tracklab_sysmon import __version__
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.config import PeerSpec, ServiceConfig
from tracklab_sysmon.model import AcceleratorMemory, AcceleratorSample
from tracklab_sysmon.server import create_app, keys

NODE = "prom-node"
SLOW = 3600.0  # one snapshot for the whole test: REST and /metrics must show the same one


class StandInGpu:
    """A collector at the Collector boundary reporting one GPU with fixed readings."""

    name, blocking = "gpu-standin", False

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


# The test's own reading of the exposition contract, written apart from server/prometheus.py so that a
# mix-up in the product's tables (transmit read from the receive field) shows up as a difference.
SCALARS = {
    "memory_total_bytes": ("memory", "total"), "memory_used_bytes": ("memory", "used"),
    "memory_available_bytes": ("memory", "available"), "swap_total_bytes": ("memory", "swap", "total"),
    "swap_used_bytes": ("memory", "swap", "used"), "processes": ("cpu", "processes"),
    "threads": ("cpu", "threads"), "cpu_temperature_celsius": ("cpu", "temperature"),
    "filesystem_size_bytes": ("disk", "total"), "filesystem_used_bytes": ("disk", "used"),
    "tcp_connections_established": ("network", "connections"),
}
DISK_COUNTERS = {"disk_read_bytes_total": "readBytes", "disk_written_bytes_total": "writeBytes",
                 "disk_reads_completed_total": "reads", "disk_writes_completed_total": "writes"}
NETWORK_COUNTERS = {"network_receive_bytes_total": "bytesRecv", "network_transmit_bytes_total": "bytesSent",
                    "network_receive_packets_total": "packetsRecv", "network_transmit_packets_total": "packetsSent"}
GPU_GAUGES = {"gpu_memory_used_bytes": ("memory", "used"), "gpu_memory_total_bytes": ("memory", "total"),
              "gpu_power_watts": ("power",), "gpu_temperature_celsius": ("temperature",)}
MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _expected_series(snap: dict, health: dict) -> dict[tuple[str, frozenset], float]:
    """Every sample /metrics must carry for one node, derived from its REST snapshot and health, in base units."""
    expected: dict[tuple[str, frozenset], float] = {}

    def put(name: str, value: object, divisor: float = 1.0, **labels: str) -> None:
        if value is not None:  # missing is omitted, never zero
            # a unit conversion is rounded to 9 decimals, so no float noise is printed (docs/prometheus.md)
            scaled = value if divisor == 1.0 else round(value / divisor, 9)
            expected[("tracklab_sysmon_" + name, frozenset({"node_id": NODE, **labels}.items()))] = scaled

    def dig(value: dict, path: tuple[str, ...]) -> object:
        for key in path:
            value = value[key]
        return value

    put("build_info", 1.0, version=__version__, backend=health["backend"])
    for name, status in health["collectors"].items():
        put("collector_success", {"ok": 1.0, "degraded": 1.0, "error": 0.0}.get(status["status"]), collector=name)
        put("collector_duration_seconds", status["lastDurationMs"], 1000.0, collector=name)
    put("snapshot_timestamp_seconds", snap["timestamp"], 1000.0)
    put("cpu_usage_ratio", snap["cpu"]["overall"], 100.0)
    for name, path in SCALARS.items():
        put(name, dig(snap, path))
    for core in snap["cpu"]["cores"]:
        for mode in MODES:
            put("cpu_seconds_total", core["times"][mode], cpu=str(core["id"]), mode=mode)
    for window, load in zip(("1m", "5m", "15m"), snap["cpu"]["loadAverage"], strict=True):
        put("load_average", load, window=window)
    for device in snap["disk"]["devices"]:
        for name, field in DISK_COUNTERS.items():
            put(name, device[field], device=device["name"])
    for interface in snap["network"]["interfaces"]:
        for name, field in NETWORK_COUNTERS.items():
            put(name, interface[field], interface=interface["name"])
    for gpu in snap["accelerators"]:
        labels = {"gpu": str(gpu["id"]), "uuid": gpu["uuid"] or "", "vendor": gpu["vendor"] or ""}
        put("gpu_utilization_ratio", gpu["utilization"], 100.0, **labels)
        for name, path in GPU_GAUGES.items():
            put(name, dig(gpu, path), **labels)
    expected.update(expected_container_series(snap, NODE))  # container and PSI families: test_container.py
    expected.update(expected_energy_series(snap, NODE))  # energy ledger and Intel engines: test_energy.py
    return expected


async def _assert_every_series_equals_rest(client) -> dict:
    snap = (await (await client.get("/api/system/metrics")).json())[0]
    health = await (await client.get("/api/health")).json()
    samples = _samples((await _scrape(client))[1])
    expected = _expected_series(snap, health)
    assert {k for k in samples if k not in expected} == set(), "series /metrics has that REST does not imply"
    assert {k for k in expected if k not in samples} == set(), "series REST implies that /metrics lacks"
    assert {k: v for k, v in samples.items() if v != expected[k]} == {}, "series whose value differs from REST"
    return snap


async def test_every_series_equals_the_rest_snapshot(aiohttp_client):
    """On this host, /metrics carries exactly the series the REST snapshot and health imply, each with its value."""
    client = await _client(aiohttp_client)
    snap = await _assert_every_series_equals_rest(client)
    assert [gpu["uuid"] for gpu in snap["accelerators"]] == ["GPU-1234"]


async def test_every_series_equals_the_rest_snapshot_on_a_fixture(aiohttp_client):
    """On a captured tree whose counters all differ, every device, interface and GPU series equals its REST field."""
    roots = {"proc_root": str(_tree("proc")), "sys_root": str(_tree("sys"))}
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5, **roots)
    collectors = (*default_collectors(**roots, statvfs=None), StandInGpu())
    snap = await _assert_every_series_equals_rest(await aiohttp_client(create_app(config, collectors=collectors)))
    # The tree must make a swapped field visible: each device's and interface's counters differ pairwise.
    for device in snap["disk"]["devices"]:
        assert len({device[f] for f in DISK_COUNTERS.values()}) == 4, device
    for interface in snap["network"]["interfaces"]:
        assert len({interface[f] for f in NETWORK_COUNTERS.values()}) == 4, interface
    assert [i["name"] for i in snap["network"]["interfaces"]] == ["eth0", "eth0:1", "wlan0"]
    assert len(snap["disk"]["devices"]) == 5


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


async def test_every_series_equals_the_rest_snapshot_with_energy_and_intel_gpus(aiohttp_client, tmp_path):
    """On a tree with RAPL zones and xe cards, the joule counters and Intel gauges equal their REST fields too."""
    root = node_tree(tmp_path)
    roots = {"proc_root": str(root / "proc"), "sys_root": str(root / "sys")}
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5, **roots)
    snap = await _assert_every_series_equals_rest(await aiohttp_client(create_app(config)))
    assert len(snap["energy"]["cpu"]) == 6 and [g["vendor"] for g in snap["energy"]["gpus"]] == ["intel"]
