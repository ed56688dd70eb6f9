"""The FastAPI relay on a real FastAPI app served by uvicorn on port 0, in front of a real service."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import aiohttp
import fastapi  # the test extra installs the fastapi extra: a missing one fails, never skips
import orjson
import pytest
import uvicorn

from tracklab_sysmon.client import SystemMonitorClient
from tracklab_sysmon.integrations.fastapi import setup_websocket_routes
from tracklab_sysmon.monitor import SystemMonitor


@pytest.fixture(scope="module")
def service():
    """The real metrics service in a child process, ticking every 0.1 s."""
    with SystemMonitor(rest_port=0, node_id="relay-node", interval=0.1) as mon:
        yield mon


@contextlib.asynccontextmanager
async def serve(app):
    """Serve `app` with uvicorn on a socket bound to port 0; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", ws="wsproto", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def _relay_app(service_url: str, **kwargs):
    app = fastapi.FastAPI()
    setup_websocket_routes(app, service_url, **kwargs)
    return app


async def _frames(ws, count: int) -> list[dict]:
    frames = []
    while len(frames) < count:
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frames.append(orjson.loads(msg.data))
    return frames


async def test_relay_passes_info_then_metrics_with_seed_keys(service):
    """A client of the relay gets the service's info frame, then metrics frames with cpu.overall and memory.usage."""
    async with (
        serve(_relay_app(service.url)) as base,
        aiohttp.ClientSession() as session,
        session.ws_connect(base.replace("http", "ws") + "/ws/system-metrics") as ws,
    ):
        info, *metrics = await _frames(ws, 3)
    assert info["type"] == "info" and info["data"]["node_id"] == "relay-node"
    for frame in metrics:
        assert frame["type"] == "metrics" and frame["nodeId"] == "relay-node"
        assert isinstance(frame["data"]["cpu"]["overall"], float)
        assert isinstance(frame["data"]["memory"]["usage"], float)


async def test_relay_forwards_client_messages(service):
    """ping and subscribe go up to the service; its pong and error frames come back through the relay."""
    async with (
        serve(_relay_app(service.url)) as base,
        aiohttp.ClientSession() as session,
        session.ws_connect(base.replace("http", "ws") + "/ws/system-metrics") as ws,
    ):
        await ws.send_str('{"type":"ping","id":7}')
        await ws.send_str('{"type":"subscribe","nodeId":"nobody"}')
        replies = []
        while len(replies) < 2:
            frame = (await _frames(ws, 1))[0]
            if frame["type"] in ("pong", "error"):
                replies.append(frame)
    assert replies[0] == {"type": "pong", "id": 7}
    assert replies[1]["type"] == "error" and replies[1]["error"]["code"] == "unknown_node"


async def test_client_stream_works_through_the_relay(service):
    """SystemMonitorClient.stream() pointed at the FastAPI app streams the service's snapshots."""
    async with serve(_relay_app(service.url)) as base, SystemMonitorClient(base) as client:
        stream = client.stream(reconnect=False)
        snap = await asyncio.wait_for(anext(stream), 10)
        await stream.aclose()
    assert snap["node_id"] == "relay-node"


async def test_origin_check(service):
    """A foreign Origin is refused at the handshake; the app's own origin and allowed ones get through."""
    app = _relay_app(service.url, allow_origins=["https://dashboard.example"])
    async with serve(app) as base, aiohttp.ClientSession() as session:
        url = base.replace("http", "ws") + "/ws/system-metrics"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url, origin="https://evil.example")
        assert refused.value.status == 403
        for origin in (base, "https://dashboard.example"):
            async with session.ws_connect(url, origin=origin) as ws:
                assert (await _frames(ws, 1))[0]["type"] == "info"


async def test_unreachable_service_gets_error_frame_and_close():
    """With no service behind it the relay sends an `unavailable` error frame and closes with 1011."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with (
        serve(_relay_app(dead)) as base,
        aiohttp.ClientSession() as session,
        session.ws_connect(base.replace("http", "ws") + "/ws/system-metrics") as ws,
    ):
        (frame,) = await _frames(ws, 1)
        closing = await asyncio.wait_for(ws.receive(), 10)
    assert frame["type"] == "error" and frame["error"]["code"] == "unavailable"
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1011


async def test_service_shutdown_reaches_the_browser_as_going_away():
    """When the service stops, the relay closes its browser sockets with the service's 1001."""
    monitor = SystemMonitor(rest_port=0, interval=0.1)
    try:
        async with (
            serve(_relay_app(monitor.url)) as base,
            aiohttp.ClientSession() as session,
            session.ws_connect(base.replace("http", "ws") + "/ws/system-metrics") as ws,
        ):
            await _frames(ws, 2)
            await asyncio.to_thread(monitor.stop)
            while True:
                msg = await asyncio.wait_for(ws.receive(), 10)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
    finally:
        monitor.stop()
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001


async def test_relay_sends_the_service_token(monkeypatch):
    """A relay given the service's token streams from a --token service; without it the browser gets an error frame."""
    monkeypatch.delenv("TRACKLAB_SYSMON_TOKEN", raising=False)
    with SystemMonitor(rest_port=0, interval=0.1, token="relay-token") as guarded:
        async with serve(_relay_app(guarded.url, token="relay-token")) as good, \
                serve(_relay_app(guarded.url)) as bad, aiohttp.ClientSession() as session:
            async with session.ws_connect(good.replace("http", "ws") + "/ws/system-metrics") as ws:
                info, metrics = await _frames(ws, 2)
            async with session.ws_connect(bad.replace("http", "ws") + "/ws/system-metrics") as ws:
                (refused,) = await _frames(ws, 1)
    assert info["type"] == "info" and metrics["type"] == "metrics"
    assert refused["type"] == "error" and "401" in refused["error"]["message"]
