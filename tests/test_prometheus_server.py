"""A real Prometheus server on loopback scrapes two services; its query API returns the REST API's values."""

from __future__ import annotations

import asyncio
import socket
import subprocess

import aiohttp
import pytest
from conftest import require_command

from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.server import create_app

SLOW = 3600.0  # each service keeps one snapshot, so Prometheus and REST see the same values
NODES = ("alpha", "beta")
DEADLINE = 60.0  # seconds for Prometheus to start and scrape both targets


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def prometheus_for(tmp_path):
    """Start Prometheus (127.0.0.1, temp storage) scraping the given targets every second; stop it after."""
    binary = require_command("prometheus")
    processes: list[subprocess.Popen] = []

    def start(targets: list[str]) -> str:
        port = _free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n"
            f"  - job_name: sysmon\n    static_configs: [{{targets: {targets!r}}}]\n"
        )
        with open(tmp_path / "prometheus.log", "wb") as log:
            processes.append(subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=log,
            ))
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _query(session: aiohttp.ClientSession, base: str, expr: str) -> dict[str, float]:
    """Instant query; the value of each series keyed by its node_id ({} while Prometheus is not ready)."""
    try:
        async with session.get(f"{base}/api/v1/query", params={"query": expr}) as response:
            if response.status != 200:
                return {}
            body = await response.json()
    except aiohttp.ClientConnectionError:
        return {}
    return {r["metric"]["node_id"]: float(r["value"][1]) for r in body["data"]["result"]}


async def test_prometheus_scrapes_two_nodes_with_rest_values(aiohttp_server, prometheus_for):
    """Through Prometheus's query API, each node's memory, timestamp and CPU seconds equal its REST snapshot."""
    servers = [
        await aiohttp_server(create_app(ServiceConfig(node_id=node, interval=SLOW, history=5)))
        for node in NODES
    ]
    base = prometheus_for([f"127.0.0.1:{server.port}" for server in servers])
    async with aiohttp.ClientSession() as session:
        snaps = {}
        for server in servers:
            async with session.get(server.make_url("/api/system/metrics")) as response:
                snap = (await response.json())[0]
                snaps[snap["node_id"]] = snap
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE
        while set(await _query(session, base, "tracklab_sysmon_memory_used_bytes")) != set(NODES):
            assert loop.time() < deadline, "Prometheus did not scrape both services in time"
            await asyncio.sleep(0.25)
        used = await _query(session, base, "tracklab_sysmon_memory_used_bytes")
        stamps = await _query(session, base, "tracklab_sysmon_snapshot_timestamp_seconds")
        user = await _query(session, base, 'tracklab_sysmon_cpu_seconds_total{cpu="0",mode="user"}')
        up = await _query(session, base, "up * on(instance) group_left(node_id) tracklab_sysmon_build_info")
    for node, snap in snaps.items():
        assert used[node] == snap["memory"]["used"]
        assert stamps[node] == snap["timestamp"] / 1000
        assert user[node] == snap["cpu"]["cores"][0]["times"]["user"]
        assert up[node] == 1.0
