"""`/ws/system-metrics` on a real aiohttp server at port 0, driven by real WebSocket clients and raw sockets."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from dataclasses import replace

import aiohttp
import orjson
import pytest

from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.server import create_app, keys, ws

NODE = "ws-node"
SLOW = 3600.0  # no background tick: a test ticks the sampler itself
DEADLINE = 10.0  # upper bound on waiting for an event; never a speed assertion


def _app(**overrides):
    app = create_app(ServiceConfig(**{"node_id": NODE, "interval": SLOW, "history": 50, **overrides}))
    return app


async def _frame(conn) -> dict:
    message = await asyncio.wait_for(conn.receive(), DEADLINE)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return orjson.loads(message.data)


async def _next(conn, kind: str) -> dict:
    """The next frame of `kind`, skipping metrics frames that a tick may slip in between."""
    while True:
        frame = await _frame(conn)
        if frame["type"] == kind:
            return frame
        assert frame["type"] == "metrics", frame


async def _tick(app, count: int = 1) -> list[int]:
    sampler = app[keys.SAMPLER]
    stamps = []
    for _ in range(count):
        await asyncio.sleep(0.002)  # each tick in a later millisecond
        stamps.append((await sampler.tick()).timestamp)
    return stamps


async def _open(client, **kwargs):
    """Connect and consume the info frame and the latest snapshot that follows it."""
    conn = await client.ws_connect(ws.WS_PATH, **kwargs)
    assert (await _frame(conn))["type"] == "info"
    assert (await _frame(conn))["type"] == "metrics"
    return conn


async def _raw_upgrade(port: int, *, rcvbuf: int | None = None, headers: str = ""):
    """A hand-written handshake over a plain socket; returns (reader, writer, status line)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET {ws.WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
    return reader, writer, head.split(b"\r\n", 1)[0].decode()


async def _until(predicate, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while not predicate():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
async def client(aiohttp_client):
    return await aiohttp_client(_app())


async def test_info_then_one_metrics_frame_per_tick_with_seed_keys(aiohttp_client):
    """On connect: info with the seed's keys, then every tick's snapshot once, in order,
    with cpu.overall and memory.usage."""
    app = _app(interval=0.05)
    ticks: list[int] = []
    app[keys.SAMPLER].add_listener(lambda snapshot, encoded: ticks.append(snapshot.timestamp))
    client = await aiohttp_client(app)
    async with client.ws_connect(ws.WS_PATH) as conn:
        info = await _frame(conn)
        assert info["type"] == "info"
        assert {"platform", "cpu_cores", "memory_total", "hostname", "node_id"} <= set(info["data"])
        frames = [await _frame(conn) for _ in range(6)]
    assert all(f["type"] == "metrics" and f["nodeId"] == NODE for f in frames)
    for frame in frames:
        data = frame["data"]
        assert isinstance(data["cpu"]["overall"], (int, float)) and 0 <= data["cpu"]["overall"] <= 100
        assert isinstance(data["memory"]["usage"], (int, float)) and 0 < data["memory"]["usage"] <= 100
    stamps = [f["data"]["timestamp"] for f in frames]
    start = ticks.index(stamps[0])
    assert stamps == ticks[start:start + len(stamps)]  # no tick skipped, none sent twice


async def test_every_subscriber_gets_the_same_bytes_built_once(client, monkeypatch):
    """Three subscribers receive byte-identical frames for a tick, and the frame is built once, not per client."""
    conns = [await _open(client) for _ in range(3)]
    built = []
    real = ws.metrics_payload
    monkeypatch.setattr(ws, "metrics_payload", lambda node, encoded: built.append(node) or real(node, encoded))
    await _tick(client.server.app)
    frames = [await asyncio.wait_for(conn.receive(), DEADLINE) for conn in conns]
    assert len({f.data for f in frames}) == 1 and orjson.loads(frames[0].data)["type"] == "metrics"
    assert built == [NODE]
    for conn in conns:
        await conn.close()


async def test_subscribe_every_n_ticks(client):
    """`every: 3` is acknowledged and then yields the 1st, 4th and 7th tick's snapshot only."""
    conn = await _open(client)
    await conn.send_str('{"type": "subscribe", "every": 3}')
    ack = await _next(conn, "subscribed")
    assert ack == {"type": "subscribed", "nodeId": None, "every": 3}
    stamps = await _tick(client.server.app, 7)
    got = [(await _frame(conn))["data"]["timestamp"] for _ in range(3)]
    assert got == [stamps[0], stamps[3], stamps[6]]
    await conn.close()


async def test_peer_frames_fan_out_and_node_filter(client):
    """A peer's snapshot published on the bus reaches subscribers; subscribing to it filters the local node out."""
    app = client.server.app
    everything, only_peer = await _open(client), await _open(client)
    app[keys.BUS].publish("peer-1", b'{"node_id":"peer-1","timestamp":1}')
    assert await _frame(everything) == {"type": "metrics", "nodeId": "peer-1",
                                        "data": {"node_id": "peer-1", "timestamp": 1}}
    await _frame(only_peer)
    await only_peer.send_str('{"type": "subscribe", "nodeId": "peer-1"}')
    assert (await _next(only_peer, "subscribed"))["nodeId"] == "peer-1"
    await _tick(app)
    app[keys.BUS].publish("peer-1", b'{"node_id":"peer-1","timestamp":2}')
    assert (await _frame(only_peer))["data"]["timestamp"] == 2  # the local tick before it was filtered
    assert (await _frame(everything))["nodeId"] == NODE
    await everything.close()
    await only_peer.close()


async def test_unknown_node_subscription_is_an_error_and_keeps_the_connection(client):
    """Subscribing to a node nobody publishes gets an unknown_node error; the socket stays usable."""
    conn = await _open(client)
    await conn.send_str('{"type": "subscribe", "nodeId": "nowhere"}')
    error = await _next(conn, "error")
    assert error["error"]["code"] == "unknown_node" and NODE in error["error"]["message"]
    await conn.send_str('{"type": "ping", "id": 7}')
    assert await _next(conn, "pong") == {"type": "pong", "id": 7}
    await conn.close()


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", "bad_message"),
        ("[1, 2]", "bad_message"),
        ('{"type": "unsubscribe"}', "unknown_type"),
        ('{"no": "type"}', "unknown_type"),
        ('{"type": "subscribe", "every": 0}', "bad_message"),
        ('{"type": "subscribe", "every": true}', "bad_message"),
        ('{"type": "subscribe", "every": 1.5}', "bad_message"),
        ('{"type": "subscribe", "nodeId": 5}', "bad_message"),
        (b'{"type": "ping"}', "bad_message"),  # binary frame
    ],
)
async def test_bad_message_gets_error_frame_and_connection_stays_open(client, message, code):
    """A malformed or unknown message is answered with an error frame and a later ping still gets its pong."""
    conn = await _open(client)
    await (conn.send_bytes(message) if isinstance(message, bytes) else conn.send_str(message))
    error = await _next(conn, "error")
    assert error["error"]["code"] == code and error["error"]["message"]
    await conn.send_str('{"type": "ping"}')
    assert await _next(conn, "pong") == {"type": "pong"}
    await conn.close()


async def test_oversized_message_closes_with_1009(client):
    """A client message above the size limit closes the socket with 1009 (message too big)."""
    conn = await _open(client)
    await conn.send_str('{"type": "ping", "pad": "' + "x" * 8192 + '"}')
    message = await asyncio.wait_for(conn.receive(), DEADLINE)
    assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1009


async def test_plain_get_is_a_json_error(client):
    """A GET without the upgrade headers is a 400 with the JSON error body, not a traceback."""
    response = await client.get(ws.WS_PATH)
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "upgrade_required"


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "accepted"),
    [
        (None, None, (), True),  # not a browser: nothing to protect against
        ("same", None, (), True),
        ("http://evil.example", None, (), False),
        ("http://app.example:3000", None, ("http://app.example:3000",), True),
        ("HTTP://App.Example:3000/", None, ("http://app.example:3000",), True),
        ("http://app.example:3001", None, ("http://app.example:3000",), False),
        ("http://evil.example", None, ("*",), True),
        ("null", None, (), False),  # sandboxed frames and file:// pages
        ("http://rebound.example:{port}", "rebound.example:{port}", (), False),  # DNS rebinding
        ("http://[", None, (), False),  # malformed: refused, not a 500
        ("http://127.0.0.1:99999", None, (), False),
    ],
)
async def test_origin_check(aiohttp_client, origin, host, allowed, accepted):
    """Only the service's own origin, --allow-origin values, or no Origin at all may open the socket."""
    client = await aiohttp_client(_app(allow_origins=allowed))
    port = client.server.port
    headers = {}
    if origin is not None:
        headers["Origin"] = f"http://127.0.0.1:{port}" if origin == "same" else origin.format(port=port)
    if host is not None:
        headers["Host"] = host.format(port=port)
    if accepted:
        conn = await client.ws_connect(ws.WS_PATH, headers=headers)
        assert (await _frame(conn))["type"] == "info"
        await conn.close()
        return
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(ws.WS_PATH, headers=headers)
    assert refused.value.status == 403
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), **headers}
    body = await (await client.get(ws.WS_PATH, headers=upgrade)).json()
    # Without a token a rebound Host is refused before the origin is even looked at.
    assert body["error"]["code"] == ("host_not_allowed" if host else "origin_not_allowed")


async def test_client_cap_refuses_with_1013_and_frees_the_slot(aiohttp_client):
    """Past --max-ws-clients a connection is closed with 1013 and a reason; a freed slot is usable again."""
    client = await aiohttp_client(_app(max_ws_clients=2))
    first, second = await _open(client), await _open(client)
    extra = await client.ws_connect(ws.WS_PATH)
    message = await asyncio.wait_for(extra.receive(), DEADLINE)
    assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1013
    assert "limit 2" in message.extra
    await first.close()
    await _until(lambda: len(client.server.app[ws.HUB].subscribers) == 1, "the slot to free")
    third = await _open(client)
    await second.close()
    await third.close()


async def test_never_reading_client_is_bounded_and_dropped_while_a_fast_one_keeps_every_frame(aiohttp_client):
    """A subscriber that stops reading holds at most one frame in user space, costs no RSS growth
    and is reset; a reader next to it misses nothing."""
    app = _app()
    hub = app[ws.HUB]
    hub.settings = replace(hub.settings, stall_timeout=0.3)
    client = await aiohttp_client(app)
    fast = await _open(client)
    _reader, writer, status = await _raw_upgrade(client.server.port, rcvbuf=4096)
    assert "101" in status
    writer.transport.pause_reading()  # from now on this peer reads nothing
    await _until(lambda: len(hub.subscribers) == 2, "both subscribers")
    stalled = next(s for s in hub.subscribers if s.ws is not _server_side(hub, fast))
    payload = b'"' + b"x" * (64 * 1024) + b'"'
    frame_size = len(payload) + 100
    received, most_buffered, sent = [], 0, 0
    rss_before = _rss()
    while stalled in hub.subscribers or sent < 1000:  # 64 MiB pushed at least
        sent += 1
        hub.publish("bulk", b'{"seq":%d,"pad":%s}' % (sent, payload))
        most_buffered = max(most_buffered, stalled.buffered())
        received.append((await _frame(fast))["data"]["seq"])
        assert sent < 5000, "the stalled subscriber was never dropped"
    assert received == list(range(1, sent + 1))
    assert most_buffered <= frame_size
    assert stalled.dropped > 0  # stale frames were replaced, not queued
    assert _rss() - rss_before < 32 * 1024 * 1024
    await _until(lambda: not _established(writer), "the server to reset the stalled connection")
    writer.close()
    await fast.close()


def _established(writer) -> bool:
    """The kernel's view of a client socket whose reader is paused (it would never see a reset itself)."""
    sock = writer.get_extra_info("socket")
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 1  # TCP_ESTABLISHED


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _server_side(hub, conn):
    """The server's WebSocketResponse for the client connection `conn` (matched by local port)."""
    port = conn.get_extra_info("sockname")[1]
    return next(s.ws for s in hub.subscribers if s.transport.get_extra_info("peername")[1] == port)


async def test_heartbeat_closes_a_peer_that_never_answers_pings(aiohttp_client):
    """A peer that completes the handshake but never answers pings is disconnected by the heartbeat."""
    app = _app()
    hub = app[ws.HUB]
    hub.settings = replace(hub.settings, heartbeat=0.2)
    client = await aiohttp_client(app)
    reader, writer, status = await _raw_upgrade(client.server.port)
    assert "101" in status
    data = await asyncio.wait_for(reader.read(), DEADLINE)  # reads until the server hangs up
    assert b'"type":"info"' in data and b"\x89" in data  # it got the info frame and at least one ping
    await _until(lambda: not hub.subscribers, "the dead peer to be forgotten")
    writer.close()


async def test_peer_that_neither_reads_nor_answers_pings_is_released(aiohttp_client):
    """A heartbeat close stuck behind unread bytes still ends in the socket being cut off and forgotten."""
    app = _app()
    hub = app[ws.HUB]
    hub.settings = replace(hub.settings, heartbeat=0.3, stall_timeout=1.0)
    client = await aiohttp_client(app)
    _reader, writer, status = await _raw_upgrade(client.server.port, rcvbuf=4096)
    assert "101" in status
    writer.transport.pause_reading()
    await _until(lambda: len(hub.subscribers) == 1, "the subscriber")
    (stuck,) = hub.subscribers
    payload = b'"' + b"x" * (64 * 1024) + b'"'
    while not stuck.buffered():  # fill the kernel buffers until asyncio has to hold bytes
        hub.publish("bulk", b'{"pad":%s}' % payload)
        await asyncio.sleep(0)
    await _until(lambda: not hub.subscribers and not stuck.buffered(), "the stuck peer to be cut off")
    await _until(lambda: not _established(writer), "the server to reset the connection")
    writer.close()


async def test_500_connect_disconnect_cycles_leak_no_tasks_or_fds(client):
    """Opening and closing 500 sockets leaves no subscriber, task or file descriptor behind."""
    hub = client.server.app[ws.HUB]
    for _ in range(5):  # warm-up: lazily created tasks and sockets exist before the baseline
        await (await _open(client)).close()
    await _until(lambda: not hub.subscribers, "warm-up sockets to go")
    tasks, fds = len(asyncio.all_tasks()), len(os.listdir("/proc/self/fd"))
    for cycle in range(500):
        conn = await client.ws_connect(ws.WS_PATH)
        assert (await _frame(conn))["type"] == "info"
        if cycle % 2:
            await conn.send_str('{"type": "ping"}')
        await conn.close()
    await _until(lambda: not hub.subscribers, "every subscriber to go")
    await _until(lambda: len(asyncio.all_tasks()) <= tasks, "handler tasks to finish")
    await _until(lambda: len(os.listdir("/proc/self/fd")) <= fds, "sockets to close")


async def test_shutdown_closes_every_socket_with_1001(aiohttp_client):
    """Stopping the server sends close 1001 to every open socket, including one that never reads."""
    app = _app()
    app[ws.HUB].settings = replace(app[ws.HUB].settings, close_timeout=0.3)
    client = await aiohttp_client(app)
    conns = [await _open(client) for _ in range(3)]
    _reader, writer, _status = await _raw_upgrade(client.server.port, rcvbuf=4096)
    writer.transport.pause_reading()
    receives = [asyncio.ensure_future(c.receive()) for c in conns]
    await client.server.close()
    for message in await asyncio.wait_for(asyncio.gather(*receives), DEADLINE):
        assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1001
    assert not app[ws.HUB].subscribers
    writer.close()


def test_websocket_constants_have_one_definition():
    """Path and client limits are defined once: `is` shows peers, hub, client, relay and CLI share one object."""
    from tracklab_sysmon import cli, client, config, protocol
    from tracklab_sysmon.server import peers

    assert ws.WS_PATH is protocol.WS_PATH and peers.WS_PATH is protocol.WS_PATH and client.WS_PATH is protocol.WS_PATH
    assert ws.WsSettings().max_clients is config.DEFAULT_WS_CLIENTS is ServiceConfig().max_ws_clients
    option = next(p for p in cli.serve.params if p.name == "max_ws_clients")
    assert option.default is config.DEFAULT_WS_CLIENTS
    assert option.type.min == 1 and option.type.max is config.MAX_WS_CLIENTS
