"""Peers are not trusted: invalid or oversized answers, kept bytes and hidden credentials, with stand-in peers on real
loopback servers.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest
from aiohttp import WSMsgType, web

from tracklab_sysmon.config import PeerSpec, ServiceConfig, redact
from tracklab_sysmon.protocol import WS_PATH
from tracklab_sysmon.server import create_app
from tracklab_sysmon.server.peers import MAX_FRAME_BYTES, PEERS, public_url

AGG = "aggregator"
DEADLINE = 20.0  # upper bound on waiting for an event; never a speed assertion
SECRET = "s3cret-pass"


def _snapshot(node_id: str, **sections) -> dict:
    body = {"node_id": node_id, "timestamp": 1_700_000_000_000, "cpu": None, "memory": None, "disk": None,
            "network": None, "accelerators": []}
    return body | sections


_CPU = {"overall": 12.5, "cores": [], "loadAverage": [0.5, 0.25, 0.125], "processes": 10, "threads": 20,
        "temperature": None}


async def _aggregator(aiohttp_client, *peers: PeerSpec):
    return await aiohttp_client(create_app(ServiceConfig(node_id=AGG, interval=0.2, history=5, peers=peers)))


async def _until(client, check, what: str) -> dict:
    """Poll /api/system/nodes until `check(nodes_by_url)` holds; return the nodes."""
    deadline = time.monotonic() + DEADLINE
    while True:
        response = await client.get("/api/system/nodes")
        assert response.status == 200
        nodes = {n["url"]: n for n in await response.json()}
        if check(nodes):
            return nodes
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {nodes}"
        await asyncio.sleep(0.05)


def _polled(aiohttp_server, answer):
    """A stand-in peer with no WebSocket endpoint that answers each poll with `answer(request)` (raw bytes)."""
    async def metrics(request: web.Request) -> web.StreamResponse:
        return web.Response(body=answer(request), content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/system/metrics", metrics)
    return aiohttp_server(app)


def _url(server) -> str:
    return str(server.make_url("")).rstrip("/")


# ---------------------------------------------------------------- invalid snapshots

@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (_snapshot("bad", cpu=[1]), "cpu: expected object, got list of 1"),
        (_snapshot("bad", cpu=_CPU | {"loadAverage": 5}), "cpu.loadAverage: expected list of 3 numbers, got int"),
        (_snapshot("bad", memory={"total": "lots", "swap": {}}), "memory.total: expected integer, got string"),
    ],
    ids=["cpu-list", "load-int", "memory-string"],
)
async def test_invalid_peer_is_error_with_its_reason_and_other_nodes_keep_being_served(aiohttp_client, aiohttp_server,
                                                                                       bad, reason):
    """A peer sending wrong types is `error` with the field's path; a good peer stays up, and /metrics and
    /api/system/metrics answer 200 with the valid nodes only.
    """
    liar = await _polled(aiohttp_server, lambda request: orjson.dumps([bad]))
    honest = await _polled(aiohttp_server, lambda request: orjson.dumps([_snapshot("good", cpu=_CPU)]))
    client = await _aggregator(aiohttp_client, PeerSpec(_url(liar)), PeerSpec(_url(honest)))
    nodes = await _until(client, lambda n: n[_url(liar)]["status"] == "error" and n[_url(honest)]["status"] == "up",
                         "the liar refused, the honest peer up")
    assert nodes[_url(liar)]["error"] == reason
    listed = await (await client.get("/api/system/metrics")).json()
    assert [s["node_id"] for s in listed] == [AGG, "good"]
    scrape = await client.get("/metrics")
    assert scrape.status == 200
    text = await scrape.text()
    assert 'tracklab_sysmon_cpu_usage_ratio{node_id="good"} 0.125' in text
    assert 'node_id="bad"' not in text
    asked = await client.get("/api/system/metrics", params={"node_id": "bad"})
    assert asked.status == 404  # never accepted, so never known by that id


async def test_peer_that_turns_invalid_stops_being_served_and_returns_when_valid(aiohttp_client, aiohttp_server):
    """An up peer whose next answer is invalid becomes `error` (503 node_error when asked for), and `up` again with its
    next valid answer.
    """
    answers = {"now": _snapshot("flaky", cpu=_CPU)}
    peer = await _polled(aiohttp_server, lambda request: orjson.dumps([answers["now"]]))
    client = await _aggregator(aiohttp_client, PeerSpec(_url(peer)))
    await _until(client, lambda n: n[_url(peer)]["status"] == "up", "peer up")
    answers["now"] = _snapshot("flaky", timestamp="yesterday")
    nodes = await _until(client, lambda n: n[_url(peer)]["status"] == "error", "peer refused")
    assert nodes[_url(peer)]["error"] == "timestamp: expected integer, got string"
    asked = await client.get("/api/system/metrics", params={"node_id": "flaky"})
    assert asked.status == 503 and (await asked.json())["error"]["code"] == "node_error"
    answers["now"] = _snapshot("flaky", cpu=_CPU)
    await _until(client, lambda n: n[_url(peer)]["status"] == "up", "peer back up")


def _ws_peer(aiohttp_server, frames: list[str]):
    """A stand-in peer with a WebSocket endpoint: info, then `frames` as they are, then silence."""
    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str('{"type":"info","data":{"node_id":"streamed"}}')
        for frame in frames:
            await ws.send_str(frame)
        async for message in ws:  # the aggregator's subscribe; keep the socket open
            assert message.type is WSMsgType.TEXT
        return ws

    app = web.Application()
    app.router.add_get(WS_PATH, stream)
    return aiohttp_server(app)


async def test_invalid_websocket_frame_is_refused_too(aiohttp_client, aiohttp_server):
    """A WebSocket peer's metrics frame with a bad field puts it in `error` with the path, like a poll does."""
    bad = _snapshot("streamed", cpu=_CPU | {"cores": [{"id": 0, "times": {"user": "x"}}]})
    frame = orjson.dumps({"type": "metrics", "nodeId": "streamed", "data": bad}).decode()
    peer = await _ws_peer(aiohttp_server, [frame])
    client = await _aggregator(aiohttp_client, PeerSpec(_url(peer)))
    nodes = await _until(client, lambda n: n[_url(peer)]["status"] == "error", "frame refused")
    assert nodes[_url(peer)]["error"] == "cpu.cores[0].times.user: expected number, got string"
    assert nodes[_url(peer)]["transport"] == "websocket"


# ---------------------------------------------------------------- bytes kept, never re-encoded

# Spacing and `12.50` that no encoder here would produce: seeing them served proves the bytes are the peer's.
_HAND_WRITTEN = (b'{"node_id": "streamed", "timestamp": 1700000000000, "cpu": {"overall": 12.50, "cores": [],'
                 b' "loadAverage": null, "processes": null, "threads": null, "temperature": null},'
                 b' "memory": null, "disk": null, "network": null, "accelerators": [], "futureKey": 1}')


async def test_websocket_peer_bytes_are_served_as_received(aiohttp_client, aiohttp_server):
    """The data bytes of a peer's metrics frame are what the aggregator serves (no decode and re-encode), and the kept
    Snapshot is their decode.
    """
    frame = b'{"type":"metrics","nodeId":"streamed","data":' + _HAND_WRITTEN + b"}"
    peer = await _ws_peer(aiohttp_server, [frame.decode()])
    client = await _aggregator(aiohttp_client, PeerSpec(_url(peer)))
    await _until(client, lambda n: n[_url(peer)]["status"] == "up", "peer up")
    served = await (await client.get("/api/system/metrics", params={"node_id": "streamed"})).read()
    assert served == b"[" + _HAND_WRITTEN + b"]"
    state = client.server.app[PEERS].peers[0]
    assert state.snapshot is not None and state.snapshot.cpu is not None and state.snapshot.cpu.overall == 12.5


async def test_polled_peer_bytes_are_served_as_received(aiohttp_client, aiohttp_server):
    """A polled peer that lists only itself is served byte for byte; after the first answer it is asked for its own
    node only.
    """
    asked: list[str | None] = []

    def answer(request: web.Request) -> bytes:
        asked.append(request.query.get("node_id"))
        return b"[" + _HAND_WRITTEN + b"]"

    peer = await _polled(aiohttp_server, answer)
    client = await _aggregator(aiohttp_client, PeerSpec(_url(peer)))
    await _until(client, lambda n: n[_url(peer)]["status"] == "up" and len(asked) >= 2, "two polls")
    served = await (await client.get("/api/system/metrics", params={"node_id": "streamed"})).read()
    assert served == b"[" + _HAND_WRITTEN + b"]"
    assert asked[0] is None and asked[1] == "streamed"


# ---------------------------------------------------------------- size cap on polls

async def test_poll_answer_over_the_frame_cap_is_refused_without_reading_it_all(aiohttp_client, aiohttp_server):
    """A peer streaming 64 MiB (chunked, no Content-Length) is refused past the 4 MiB cap, and the aggregator stops
    reading well before the end.
    """
    sent = {"bytes": 0}
    chunk = b" " * (256 * 1024)  # JSON whitespace: only the cap can stop it

    async def metrics(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            for _ in range(256):  # 64 MiB
                await response.write(chunk)
                sent["bytes"] += len(chunk)
        except ConnectionError:
            pass  # the aggregator hung up: what the test wants
        return response

    app = web.Application()
    app.router.add_get("/api/system/metrics", metrics)
    peer = await aiohttp_server(app)
    client = await _aggregator(aiohttp_client, PeerSpec(_url(peer)))
    nodes = await _until(client, lambda n: n[_url(peer)]["status"] == "error", "oversized answer refused")
    assert nodes[_url(peer)]["error"] == f"answer over the {MAX_FRAME_BYTES}-byte cap"
    assert sent["bytes"] < 32 * 1024 * 1024  # the rest was never read (kernel buffers take a few MiB)


async def test_poll_answer_announcing_too_much_is_refused_before_reading(aiohttp_client, aiohttp_server):
    """A Content-Length above the cap is refused from the header alone."""
    peer = await _polled(aiohttp_server, lambda request: b" " * (MAX_FRAME_BYTES + 1))
    client = await _aggregator(aiohttp_client, PeerSpec(_url(peer)))
    nodes = await _until(client, lambda n: n[_url(peer)]["status"] == "error", "oversized answer refused")
    assert nodes[_url(peer)]["error"] == f"answer of {MAX_FRAME_BYTES + 1} bytes is over the {MAX_FRAME_BYTES}-byte cap"


# ---------------------------------------------------------------- credentials never shown

async def test_url_credentials_are_used_but_never_shown(aiohttp_client, aiohttp_server, caplog):
    """A peer URL with user:password is sent as Basic auth, yet nodes, /metrics labels, error texts and logs show only
    scheme://host:port.
    """
    caplog.set_level(logging.DEBUG)
    seen_auth: list[str] = []

    def answer(request: web.Request) -> bytes:
        seen_auth.append(request.headers.get("Authorization", ""))
        return orjson.dumps([_snapshot("guarded", cpu=_CPU)])

    peer = await _polled(aiohttp_server, answer)
    public = _url(peer)
    with_creds = public.replace("http://", f"http://admin:{SECRET}@")
    dead = f"http://admin:{SECRET}@127.0.0.1:9"  # discard port: connection refused
    client = await _aggregator(aiohttp_client, PeerSpec(with_creds), PeerSpec(dead))
    nodes = await _until(client, lambda n: n[public]["status"] == "up" and n["http://127.0.0.1:9"]["status"] == "down",
                         "one up, one down")
    assert seen_auth and seen_auth[0].startswith("Basic ")  # the credentials were used
    listing = await (await client.get("/api/system/nodes")).text()
    scrape = await (await client.get("/metrics")).text()
    assert f'url="{public}"' in scrape
    for shown in (listing, scrape, caplog.text, nodes["http://127.0.0.1:9"]["error"]):
        assert SECRET not in shown and "admin" not in shown


@pytest.mark.parametrize(
    ("url", "public"),
    [("http://u:p@host:8080", "http://host:8080"), ("https://u@h", "https://h"), ("http://h:1", "http://h:1"),
     ("http://a:b@c@d:2", "http://d:2")],
)
def test_public_url_drops_userinfo(url, public):
    """public_url keeps scheme, host and port, and nothing before the last @."""
    assert public_url(url) == public


def test_redact_removes_credentials_quoted_in_text():
    """An exception text quoting a URL with credentials loses them, wherever the URL sits."""
    text = "Cannot connect to http://admin:pw@gpu-01:8080/api/system/metrics (and ws://x:y@h/ws)"
    assert redact(text) == "Cannot connect to http://gpu-01:8080/api/system/metrics (and ws://h/ws)"
