"""SystemMonitorClient.stream()/frames() over the real `/ws/system-metrics` of real servers on port 0."""

from __future__ import annotations

import asyncio
import itertools
import socket
import time

import pytest
from aiohttp.test_utils import TestServer

from tracklab_sysmon.client import NotFound, ServiceUnavailable, SystemMonitorClient
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.server import create_app

FAST = 0.1  # seconds between ticks, so a test sees several frames quickly


def _app(node_id: str):
    return create_app(ServiceConfig(node_id=node_id, interval=FAST, history=10))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
async def service(aiohttp_server):
    return await aiohttp_server(_app("stream-node"))


async def _take(iterator, count: int) -> list:
    items = []
    async for item in iterator:
        items.append(item)
        if len(items) == count:
            break
    return items


async def test_stream_yields_fresh_snapshots_with_seed_keys(aiohttp_server):
    """stream() yields one snapshot per tick, each newer than the last, with cpu.overall and memory.usage."""
    server = await aiohttp_server(create_app(ServiceConfig(node_id="stream-node", interval=FAST, history=600)))
    async with SystemMonitorClient(f"http://127.0.0.1:{server.port}") as client:
        snaps = await asyncio.wait_for(_take(client.stream(), 4), 10)
        ticks = [snap["timestamp"] for snap in await client.get_history()]  # every tick, in order
    # The first may be the latest on connect (or a tick before it); from then on no tick is skipped or repeated.
    positions = [ticks.index(snap["timestamp"]) for snap in snaps[1:]]
    assert positions == list(range(positions[0], positions[0] + 3))
    for snap in snaps:
        assert snap["node_id"] == "stream-node"
        assert isinstance(snap["cpu"]["overall"], float) and isinstance(snap["memory"]["usage"], float)


async def test_frames_start_with_info_then_metrics(service):
    """frames() passes every frame: the info frame first, then metrics frames tagged with nodeId."""
    async with SystemMonitorClient(f"http://127.0.0.1:{service.port}") as client:
        frames = await asyncio.wait_for(_take(client.frames(), 2), 10)
    assert frames[0]["type"] == "info" and frames[0]["data"]["node_id"] == "stream-node"
    assert frames[1]["type"] == "metrics" and frames[1]["nodeId"] == "stream-node"


async def test_subscribe_to_unknown_node_raises_not_found(service):
    """Subscribing to a node the service does not know surfaces its error frame as NotFound."""
    async with SystemMonitorClient(f"http://127.0.0.1:{service.port}") as client:
        with pytest.raises(NotFound, match="no-such-node"):
            await asyncio.wait_for(_take(client.stream("no-such-node"), 1), 10)


async def test_stream_every_n_skips_ticks(aiohttp_server):
    """every=3 yields every third tick: between throttled snapshots the service ticked exactly three times."""
    server = await aiohttp_server(create_app(ServiceConfig(node_id="stream-node", interval=FAST, history=600)))
    async with SystemMonitorClient(f"http://127.0.0.1:{server.port}") as client:
        snaps = await asyncio.wait_for(_take(client.stream("stream-node", every=3), 5), 15)
        ticks = [snap["timestamp"] for snap in await client.get_history()]  # every tick, in order (one per ms)
    # Up to two frames may precede the subscription (the latest on connect, one tick before the
    # service reads it) and the first one after it is sent at once; the last three are throttled.
    positions = [ticks.index(snap["timestamp"]) for snap in snaps[-3:]]
    assert [later - earlier for earlier, later in itertools.pairwise(positions)] == [3, 3]


async def test_stream_reconnects_after_the_service_restarts():
    """When the service goes away and comes back on the same port, stream() carries on with the new one."""
    port = _free_port()
    first = TestServer(_app("before"), host="127.0.0.1", port=port)
    await first.start_server()
    client = SystemMonitorClient(f"http://127.0.0.1:{port}")
    stream = client.stream(retry_delay=0.05, max_retry_delay=0.2)
    second = None
    try:
        assert (await asyncio.wait_for(anext(stream), 10))["node_id"] == "before"
        await first.close()
        second = TestServer(_app("after"), host="127.0.0.1", port=port)
        await second.start_server()
        node = None
        while node != "after":  # at most one frame of the old server may still be in flight
            node = (await asyncio.wait_for(anext(stream), 10))["node_id"]
    finally:
        await stream.aclose()
        await client.close()
        if second is not None:
            await second.close()


async def test_stream_retries_unknown_node_it_has_seen_before():
    """A node seen earlier in the stream but unknown to the restarted service is retried until it is back."""
    port = _free_port()
    connects = 0

    async def count_ws(request, response):
        nonlocal connects
        connects += request.path == "/ws/system-metrics"

    first = TestServer(_app("orig"), host="127.0.0.1", port=port)
    await first.start_server()
    client = SystemMonitorClient(f"http://127.0.0.1:{port}")
    stream = client.stream("orig", retry_delay=0.05, max_retry_delay=0.2)
    cutoff = float("inf")  # snapshots stamped before the last restart are the old service's

    async def next_fresh():
        async for snap in stream:
            if snap["timestamp"] >= cutoff:
                return snap
        return None

    servers, task = [first], None
    try:
        assert (await asyncio.wait_for(anext(stream), 10))["node_id"] == "orig"
        await first.close()
        other_app = _app("other")
        other_app.on_response_prepare.append(count_ws)
        servers.append(TestServer(other_app, host="127.0.0.1", port=port))
        await servers[-1].start_server()
        task = asyncio.create_task(next_fresh())
        async with asyncio.timeout(10):  # a second connection: the unknown_node answer was retried
            while connects < 2 and not task.done():
                await asyncio.sleep(0.01)
        assert not task.done(), task.exception()
        await servers[-1].close()
        cutoff = time.time() * 1000
        servers.append(TestServer(_app("orig"), host="127.0.0.1", port=port))
        await servers[-1].start_server()
        assert (await asyncio.wait_for(task, 10))["node_id"] == "orig"
    finally:
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()
        await client.close()
        for server in servers:
            await server.close()


async def test_stream_without_reconnect_raises_when_service_stops():
    """With reconnect=False a service shutting down (close 1001) ends the stream with ServiceUnavailable."""
    server = TestServer(_app("once"), host="127.0.0.1", port=0)
    await server.start_server()
    async with SystemMonitorClient(f"http://127.0.0.1:{server.port}") as client:
        stream = client.stream(reconnect=False)
        await asyncio.wait_for(anext(stream), 10)
        await server.close()
        with pytest.raises(ServiceUnavailable, match=r"1001|closed"):
            while True:
                await asyncio.wait_for(anext(stream), 10)


async def test_stream_to_nothing_listening_raises_without_reconnect():
    """No service at all: a non-reconnecting stream raises ServiceUnavailable at once."""
    async with SystemMonitorClient(f"http://127.0.0.1:{_free_port()}") as client:
        with pytest.raises(ServiceUnavailable):
            await anext(client.stream(reconnect=False))
