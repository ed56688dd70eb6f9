"""Multi-node aggregation, real services on loopback: listing, filter, a peer killed and restarted, duplicate ids."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from aiohttp import web

from tracklab_sysmon.config import PeerSpec, ServiceConfig
from tracklab_sysmon.server import create_app

AGG = "aggregator"
TICK = "0.2"
DEADLINE = 20.0


class Service:
    """A real `python -m tracklab_sysmon serve` process on a loopback port."""

    def __init__(self, tmp_path, node_id: str, *extra: str) -> None:
        self.portfile = tmp_path / f"{node_id}-{id(self)}.port"
        self.node_id, self.extra = node_id, extra
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Service:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", str(self.port),
             "--portfile", str(self.portfile), "--node-id", self.node_id, "--interval", TICK, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        return self

    async def ready(self) -> str:
        deadline = time.monotonic() + DEADLINE
        while not self.portfile.exists():
            assert self.process.poll() is None, f"{self.node_id} exited with {self.process.returncode}"
            assert time.monotonic() < deadline, f"{self.node_id} did not start"
            await asyncio.sleep(0.05)
        self.port = json.loads(self.portfile.read_text())["port"]
        self.url = f"http://127.0.0.1:{self.port}"
        return self.url

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self.portfile.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def spawn(tmp_path):
    """Start services (concurrently) and stop them all after the test."""
    started: list[Service] = []

    async def go(*specs: tuple[str, ...]) -> list[Service]:
        services = [Service(tmp_path, *spec).start() for spec in specs]
        started.extend(services)
        for service in services:
            await service.ready()
        return services

    yield go
    for service in started:
        service.stop()


async def _aggregator(aiohttp_client, *peers: PeerSpec, node_id: str = AGG):
    config = ServiceConfig(node_id=node_id, interval=float(TICK), history=5, peers=peers)
    return await aiohttp_client(create_app(config))


async def _get(client, path: str, status: int = 200, **params):
    response = await client.get(path, params=params)
    assert response.status == status, await response.text()
    return await response.json()


async def _until(client, check, what: str):
    """Poll /api/system/nodes until `check(nodes_by_url)` holds; return the nodes."""
    deadline = time.monotonic() + DEADLINE
    while True:
        nodes = {n["url"]: n for n in await _get(client, "/api/system/nodes")}
        if check(nodes):
            return nodes
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {nodes}"
        await asyncio.sleep(0.1)


def _ids(body) -> list[str]:
    return [snap["node_id"] for snap in body]


async def test_aggregates_every_node_local_first_and_filters(aiohttp_client, spawn):
    """With two peers, /api/system/metrics lists the local node then each peer; ?node_id= picks one."""
    b, c = await spawn(("node-b",), ("node-c",))
    client = await _aggregator(aiohttp_client, PeerSpec(b.url), PeerSpec(c.url))
    nodes = await _until(client, lambda n: n[b.url]["status"] == n[c.url]["status"] == "up", "both peers up")
    assert nodes[b.url]["nodeId"] == "node-b" and nodes[b.url]["transport"] == "websocket"
    assert isinstance(nodes[c.url]["lastSeen"], int)
    local = (await _get(client, "/api/system/nodes"))[0]
    assert local["local"] is True and local["nodeId"] == AGG and local["status"] == "up"
    assert _ids(await _get(client, "/api/system/metrics")) == [AGG, "node-b", "node-c"]
    assert _ids(await _get(client, "/api/system/metrics", node_id="node-c")) == ["node-c"]
    assert _ids(await _get(client, "/api/system/metrics", node_id=AGG)) == [AGG]
    error = await _get(client, "/api/system/metrics", 404, node_id="node-z")
    assert error["error"]["code"] == "not_found"
    error = await _get(client, "/api/system/metrics/history", 404, node_id="node-b")  # history stays local
    assert b.url in error["error"]["message"]
    text = await (await client.get("/metrics")).text()
    for node in (AGG, "node-b", "node-c"):
        assert f'tracklab_sysmon_memory_total_bytes{{node_id="{node}"}}' in text
    assert f'tracklab_sysmon_peer_up{{node_id="node-b",url="{b.url}"}} 1.0' in text


async def test_websocket_streams_every_node(aiohttp_client, spawn):
    """The aggregator's WebSocket carries metrics frames of its peers as well as its own."""
    (b,) = await spawn(("node-b",))
    client = await _aggregator(aiohttp_client, PeerSpec(b.url))
    seen: set[str] = set()
    async with client.ws_connect("/ws/system-metrics") as ws:
        deadline = time.monotonic() + DEADLINE
        while seen != {AGG, "node-b"}:
            assert time.monotonic() < deadline, f"only saw {seen}"
            frame = await ws.receive_json(timeout=DEADLINE)
            if frame["type"] == "metrics":
                seen.add(frame["data"]["node_id"])


async def test_killed_peer_goes_down_and_returns(aiohttp_client, spawn):
    """A killed peer turns `down` with its last-seen time, leaves the list (503 when asked for),
    and is back after a restart."""
    b, c = await spawn(("node-b",), ("node-c",))
    client = await _aggregator(aiohttp_client, PeerSpec(b.url), PeerSpec(c.url))
    await _until(client, lambda n: n[b.url]["status"] == n[c.url]["status"] == "up", "both peers up")
    b.kill()
    nodes = await _until(client, lambda n: n[b.url]["status"] == "down", "node-b down")
    assert nodes[b.url]["nodeId"] == "node-b" and nodes[b.url]["lastSeen"] <= time.time() * 1000
    assert nodes[b.url]["error"]
    assert _ids(await _get(client, "/api/system/metrics")) == [AGG, "node-c"]
    error = await _get(client, "/api/system/metrics", 503, node_id="node-b")
    assert error["error"]["code"] == "node_down"
    b.start()  # same port: the aggregator keeps trying it
    await b.ready()
    await _until(client, lambda n: n[b.url]["status"] == "up", "node-b back up")
    assert _ids(await _get(client, "/api/system/metrics")) == [AGG, "node-b", "node-c"]


async def test_duplicate_ids_are_reported_not_merged(aiohttp_client, spawn):
    """Two peers claiming one id: one is served, the other is `duplicate`; a peer claiming the local id too."""
    b1, b2, b3 = await spawn(("twin",), ("twin",), (AGG,))
    client = await _aggregator(aiohttp_client, PeerSpec(b1.url), PeerSpec(b2.url), PeerSpec(b3.url))
    nodes = await _until(
        client, lambda n: all(n[s.url]["status"] in ("up", "duplicate") for s in (b1, b2, b3)), "all settled"
    )
    twins = sorted((nodes[b1.url], nodes[b2.url]), key=lambda n: n["status"])
    assert [t["status"] for t in twins] == ["duplicate", "up"]
    assert twins[0]["duplicateOf"] == twins[1]["url"]
    assert nodes[b3.url]["status"] == "duplicate" and nodes[b3.url]["duplicateOf"] == "local"
    assert _ids(await _get(client, "/api/system/metrics")) == [AGG, "twin"]


async def test_peers_are_contacted_with_their_own_token(aiohttp_client, spawn):
    """A peer protected by a token is up when given that token and down (HTTP 401) without it."""
    (b,) = await spawn(("node-b", "--token", "peer-secret"))
    with_token = await _aggregator(aiohttp_client, PeerSpec(b.url, "peer-secret"))
    without = await _aggregator(aiohttp_client, PeerSpec(b.url), node_id="other")
    await _until(with_token, lambda n: n[b.url]["status"] == "up", "authorised peer up")
    nodes = await _until(without, lambda n: n[b.url]["status"] == "down", "unauthorised peer down")
    assert nodes[b.url]["error"] == "HTTP 401" and nodes[b.url]["nodeId"] is None


async def test_polling_fallback_takes_only_the_peers_own_node(aiohttp_client, aiohttp_server):
    """A peer without a WebSocket endpoint is polled: a malformed list puts it in `error`,
    then only its own (first) node is served."""
    bad: list = [None]
    good = [{"node_id": "polled", "timestamp": 1, "cpu": None, "memory": None, "disk": None,
               "network": None, "accelerators": []},
              {"node_id": "its-peer", "timestamp": 1, "cpu": None, "memory": None, "disk": None,
               "network": None, "accelerators": []}]

    listed = bad

    async def metrics(request: web.Request) -> web.Response:
        return web.json_response(listed)

    stand_in = web.Application()
    stand_in.router.add_get("/api/system/metrics", metrics)
    server = await aiohttp_server(stand_in)
    url = str(server.make_url("")).rstrip("/")
    client = await _aggregator(aiohttp_client, PeerSpec(url))
    nodes = await _until(client, lambda n: n[url]["status"] == "error", "malformed peer refused")
    assert nodes[url]["error"] == "snapshot: expected object, got null"
    listed = good
    nodes = await _until(client, lambda n: n[url]["status"] == "up", "polled peer up")
    assert nodes[url]["transport"] == "polling"
    assert _ids(await _get(client, "/api/system/metrics")) == [AGG, "polled"]


async def test_silent_peer_never_delays_the_local_node(aiohttp_client):
    """A peer that accepts connections but never answers is marked down, and local reads are served meanwhile."""
    with socket.socket() as silent:  # listening, never accepting: the handshake just hangs
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = await _aggregator(aiohttp_client, PeerSpec(url))
        assert _ids(await _get(client, "/api/system/metrics")) == [AGG]
        nodes = await _until(client, lambda n: n[url]["status"] == "down", "silent peer down")
        assert nodes[url]["error"] == "timed out"
        assert _ids(await _get(client, "/api/system/metrics")) == [AGG]


def test_peer_option_parsing():
    """--peer takes URL, URL,token=T or URL,token-env=VAR; the token never shows in repr."""
    from tracklab_sysmon.config import parse_peer
    from tracklab_sysmon.errors import ConfigError

    assert parse_peer("http://127.0.0.1:9000/") == PeerSpec("http://127.0.0.1:9000")
    spec = parse_peer("http://127.0.0.1:9000,token=abc")
    assert spec.token == "abc" and "abc" not in repr(spec)
    os.environ["TRACKLAB_SYSMON_TEST_PEER_TOKEN"] = "from-env"
    try:
        assert parse_peer("http://[::1]:9,token-env=TRACKLAB_SYSMON_TEST_PEER_TOKEN").token == "from-env"
    finally:
        del os.environ["TRACKLAB_SYSMON_TEST_PEER_TOKEN"]
    for bad in ("127.0.0.1:9000", "ftp://127.0.0.1", "http://127.0.0.1:9/x", "http://127.0.0.1:9,secret=1"):
        with pytest.raises(ConfigError):
            parse_peer(bad)


async def test_peer_that_aggregates_contributes_only_its_own_node(aiohttp_client, spawn):
    """Following an aggregator yields its own node only, so chained or mutual aggregation never loops."""
    (c,) = await spawn(("node-c",))
    (b,) = await spawn(("node-b", "--peer", c.url))
    client = await _aggregator(aiohttp_client, PeerSpec(b.url))
    await _until(client, lambda n: n[b.url]["status"] == "up", "aggregating peer up")
    async with client.ws_connect("/ws/system-metrics") as ws:  # a few ticks of frames: none about node-c
        seen = {(await ws.receive_json(timeout=DEADLINE)).get("data", {}).get("node_id") for _ in range(12)}
    assert "node-c" not in seen and "node-b" in seen
    assert _ids(await _get(client, "/api/system/metrics")) == [AGG, "node-b"]
