"""REST API on a real aiohttp server at port 0: routes, seed keys, errors, health and caching."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from tracklab_sysmon import __version__, hotpath
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.server import create_app, keys

NODE = "node-under-test"
SLOW = 3600.0  # no background tick during a test: ticks happen only when a test asks


class Counting:
    """Wraps a real collector and counts how often it is asked to collect."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.blocking = inner.name, inner.blocking
        self.calls = 0

    def collect(self, now: float) -> object:
        self.calls += 1
        return self.inner.collect(now)


class Broken:
    """A collector whose every read fails, as a driver gone bad would."""

    name, blocking = "broken-network", False

    def collect(self, now: float) -> object:
        raise RuntimeError("device vanished")


class Absent:
    """A collector whose hardware is not here, which is a normal state."""

    name, blocking = "gpu-absent", False

    def collect(self, now: float) -> object:
        raise Unavailable("no GPU on this machine")


def _config(**overrides) -> ServiceConfig:
    return ServiceConfig(**{"node_id": NODE, "interval": SLOW, "history": 5, **overrides})


@pytest.fixture
def counting():
    return tuple(Counting(c) for c in default_collectors())


@pytest.fixture
async def client(aiohttp_client, counting):
    return await aiohttp_client(create_app(_config(), collectors=counting))


async def _json(response, status: int = 200):
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def _tick(client, count: int) -> list[int]:
    """Run `count` extra ticks, each in a later millisecond, and return their timestamps."""
    sampler = client.server.app[keys.SAMPLER]
    stamps = []
    for _ in range(count):
        await asyncio.sleep(0.002)
        stamps.append((await sampler.tick()).timestamp)
    return stamps


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


async def test_metrics_has_the_seed_keys_and_types(client):
    """/api/system/metrics is a one-element list with every key of the seed, typed as the seed shows."""
    body = await _json(await client.get("/api/system/metrics"))
    assert isinstance(body, list) and len(body) == 1
    snap = body[0]
    assert snap["node_id"] == NODE and isinstance(snap["timestamp"], int)
    cpu = snap["cpu"]
    assert _is_number(cpu["overall"]) and 0 <= cpu["overall"] <= 100
    assert cpu["cores"] and all(set(c) >= {"id", "usage", "frequency", "temperature"} for c in cpu["cores"])
    assert [c["id"] for c in cpu["cores"]] == sorted(c["id"] for c in cpu["cores"])
    assert all(c["frequency"] is None or _is_number(c["frequency"]) for c in cpu["cores"])
    assert len(cpu["loadAverage"]) == 3 and all(_is_number(x) for x in cpu["loadAverage"])
    assert isinstance(cpu["processes"], int) and isinstance(cpu["threads"], int)
    assert cpu["threads"] >= cpu["processes"] > 0
    memory = snap["memory"]
    assert isinstance(memory["used"], int) and isinstance(memory["total"], int)
    assert 0 < memory["used"] < memory["total"] and _is_number(memory["usage"])
    assert set(memory["swap"]) >= {"used", "total", "percentage"}
    disk = snap["disk"]
    assert isinstance(disk["total"], int) and disk["total"] >= disk["used"] > 0
    assert all(_is_number(disk[k]) for k in ("usage", "ioRead", "ioWrite", "iops"))
    network = snap["network"]
    assert all(_is_number(network[k]) for k in ("bytesIn", "bytesOut", "packetsIn", "packetsOut"))
    assert isinstance(network["connections"], int)
    assert isinstance(snap["accelerators"], list)


async def test_metrics_node_filter(client):
    """?node_id= with the local node returns it; an unknown node is a 404 JSON error."""
    body = await _json(await client.get("/api/system/metrics", params={"node_id": NODE}))
    assert [s["node_id"] for s in body] == [NODE]
    error = await _json(await client.get("/api/system/metrics", params={"node_id": "elsewhere"}), 404)
    assert error["error"]["code"] == "not_found" and "elsewhere" in error["error"]["message"]


async def test_system_info_has_the_seed_keys(client):
    """/api/system/info carries every seed key plus node_id, with this machine's CPU and memory."""
    info = await _json(await client.get("/api/system/info"))
    seed_keys = {
        "platform", "architecture", "cpu_model", "cpu_cores", "cpu_threads", "memory_total",
        "swap_total", "disk_total", "gpu_count", "gpu_info", "hostname", "ip_address",
    }
    assert seed_keys | {"node_id", "boot_time", "kernel", "version"} <= set(info)
    assert info["platform"] == "linux" and info["node_id"] == NODE and info["version"] == __version__
    assert info["cpu_threads"] == len(await _cores(client)) and 1 <= info["cpu_cores"] <= info["cpu_threads"]
    assert isinstance(info["disk_total"], int) and info["disk_total"] > 0
    assert info["gpu_count"] == len(info["gpu_info"])


async def _cores(client) -> list:
    return (await _json(await client.get("/api/system/metrics")))[0]["cpu"]["cores"]


async def test_health_body(client):
    """/api/health has the seed body plus node, version, backend, collector states and own usage."""
    started = client.server.app[keys.STARTED_AT]
    before = time.monotonic()
    health = await _json(await client.get("/api/health"))
    after = time.monotonic()
    assert health["status"] == "healthy" and health["service"] == "system_monitor"
    assert health["nodeId"] == NODE and health["version"] == __version__
    assert health["backend"] == hotpath.BACKEND
    # Seconds since the app started, read during the request (create_app has no clock to inject).
    assert round(before - started, 3) <= health["uptime"] <= round(after - started, 3)
    core = {"cpu", "memory", "disk", "network"}
    assert core <= set(health["collectors"])
    assert {health["collectors"][name]["status"] for name in core} == {"ok"}
    assert {c["status"] for c in health["collectors"].values()} <= {"ok", "unavailable"}
    assert isinstance(health["process"]["rss"], int) and health["process"]["rss"] > 0
    assert health["dcgm"]["requested"] is False


async def test_health_reports_dcgm_requested(aiohttp_client, counting):
    """--enable-dcgm-profiling shows as requested in /api/health, with whether DCGM is available."""
    client = await aiohttp_client(create_app(_config(enable_dcgm=True), collectors=counting))
    health = await _json(await client.get("/api/health"))
    assert health["dcgm"]["requested"] is True and isinstance(health["dcgm"]["available"], bool)


async def test_own_cpu_percent_after_two_ticks(client):
    """After a second tick the service reports its own CPU share as a number."""
    await _tick(client, 1)
    health = await _json(await client.get("/api/health"))
    assert _is_number(health["process"]["cpuPercent"])
    assert health["process"]["cpuPercent"] == client.server.app[keys.SAMPLER].own_cpu_percent


async def test_failing_collector_gives_partial_snapshot_and_degraded_health(aiohttp_client):
    """A collector that raises leaves its section null, keeps the others, and marks health degraded."""
    collectors = [c for c in default_collectors() if c.name != "network"] + [Broken()]
    client = await aiohttp_client(create_app(_config(), collectors=collectors))
    snap = (await _json(await client.get("/api/system/metrics")))[0]
    assert snap["network"] is None and snap["cpu"] is not None and snap["memory"] is not None
    health = await _json(await client.get("/api/health"))
    assert health["status"] == "degraded"
    broken = health["collectors"]["broken-network"]
    assert broken["status"] == "error" and "device vanished" in broken["lastError"]
    assert (broken["failures"], health["ticks"]) == (2, 1)  # the priming read and the first tick both failed
    assert health["collectors"]["cpu"]["status"] == "ok"


async def test_unavailable_collector_is_not_degraded(aiohttp_client):
    """Absent hardware is reported as `unavailable` while the service stays healthy."""
    client = await aiohttp_client(create_app(_config(), collectors=[*default_collectors(), Absent()]))
    health = await _json(await client.get("/api/health"))
    assert health["status"] == "healthy"
    assert health["collectors"]["gpu-absent"]["status"] == "unavailable"
    assert health["collectors"]["gpu-absent"]["lastError"] == "no GPU on this machine"


async def test_requests_are_served_from_the_cache(client, counting):
    """Requests never collect: collector calls stay put and the cached bytes stay the same object."""
    sampler = client.server.app[keys.SAMPLER]
    calls, cached = [c.calls for c in counting], sampler.latest_bytes
    for _ in range(20):
        response = await client.get("/api/system/metrics")
        assert await response.read() == b"[" + cached + b"]"
    await _json(await client.get("/api/system/metrics/history"))
    await _json(await client.get("/api/health"))
    assert [c.calls for c in counting] == calls
    assert sampler.latest_bytes is cached
    await _tick(client, 1)
    assert [c.calls for c in counting] == [n + 1 for n in calls]
    assert sampler.latest_bytes is not cached


async def test_history_is_oldest_first_and_honours_limit_and_since(client):
    """History lists snapshots oldest first; `limit` keeps the newest n, `since` keeps later ones."""
    stamps = [(await _json(await client.get("/api/system/metrics")))[0]["timestamp"]] + await _tick(client, 3)
    url = "/api/system/metrics/history"
    assert [s["timestamp"] for s in await _json(await client.get(url))] == stamps
    assert [s["timestamp"] for s in await _json(await client.get(url, params={"limit": 2}))] == stamps[-2:]
    after = await _json(await client.get(url, params={"since": stamps[1]}))
    assert [s["timestamp"] for s in after] == stamps[2:]
    first_after = await _json(await client.get(url, params={"since": stamps[0], "limit": 1}))
    assert [s["timestamp"] for s in first_after] == [stamps[1]]
    assert await _json(await client.get(url, params={"since": stamps[-1]})) == []
    by_node = await _json(await client.get(url, params={"node_id": NODE}))
    assert {s["node_id"] for s in by_node} == {NODE} and len(by_node) == 4


async def test_history_is_bounded_by_capacity(client):
    """With --history 5 the ring keeps only the newest five snapshots."""
    stamps = await _tick(client, 7)
    history = await _json(await client.get("/api/system/metrics/history"))
    assert [s["timestamp"] for s in history] == stamps[-5:]


@pytest.mark.parametrize(
    "params, word",
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "-1"}, "since"),
        ({"since": "1.5"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "6"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
)
async def test_history_rejects_bad_parameters(client, params, word):
    """A non-integer or out-of-range `since`/`limit` is a 400 JSON error naming the parameter."""
    error = await _json(await client.get("/api/system/metrics/history", params=params), 400)
    assert error["error"]["code"] == "bad_request" and word in error["error"]["message"]


async def test_history_unknown_node_is_404(client):
    """History for a node this service does not know is a 404 JSON error."""
    error = await _json(await client.get("/api/system/metrics/history", params={"node_id": "nope"}), 404)
    assert error["error"]["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/health", "/api/system/info", "/api/system/metrics"])
async def test_wrong_method_is_405_with_allow(client, path):
    """A POST to a GET route is a 405 JSON error whose Allow header names GET."""
    response = await client.post(path, data=b"{}")
    error = await _json(response, 405)
    assert "GET" in response.headers["Allow"]
    assert error["error"]["code"] == "method_not_allowed"


async def test_unknown_path_is_404_json(client):
    """An unknown path is a 404 with a JSON error body, not aiohttp's text page."""
    error = await _json(await client.get("/api/system/nothing-here"), 404)
    assert error["error"]["code"] == "not_found" and error["error"]["message"]


async def test_handler_exception_is_500_without_traceback(aiohttp_client, counting):
    """An exception inside a handler becomes a 500 JSON error that leaks no traceback or detail."""

    async def explode(request: web.Request) -> web.Response:
        raise ZeroDivisionError("secret-internal-detail")

    app = create_app(_config(), collectors=counting)
    app.router.add_get("/api/explode", explode)
    client = await aiohttp_client(app)
    response = await client.get("/api/explode")
    text = await response.text()
    error = await _json(response, 500)
    assert error == {"error": {"code": "internal_error", "message": "internal error; see the service log"}}
    assert "Traceback" not in text and "secret-internal-detail" not in text and "ZeroDivision" not in text
