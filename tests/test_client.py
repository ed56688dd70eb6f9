"""SystemMonitorClient REST calls against real aiohttp servers on port 0, and its error mapping."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web

from tracklab_sysmon.client import (
    URL_ENV,
    ClientError,
    NotFound,
    ProtocolError,
    ResponseError,
    ServiceUnavailable,
    SystemMonitorClient,
    default_url,
    ws_url,
)
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.errors import SysmonError
from tracklab_sysmon.server import create_app

NODE = "client-node"


@pytest.fixture
async def service(aiohttp_server):
    """The real service app, sampling this machine, on a free port."""
    return await aiohttp_server(create_app(ServiceConfig(node_id=NODE, interval=3600.0, history=5)))


@pytest.fixture
async def odd(aiohttp_server):
    """A server that answers the client's routes wrongly, one way per path."""

    async def not_json(request):
        return web.Response(text="<html>hello</html>", content_type="text/html")

    async def wrong_shape(request):
        return web.json_response({"not": "a list"})

    async def empty(request):
        return web.json_response([])

    async def crash(request):
        return web.json_response({"error": {"code": "internal_error", "message": "boom"}}, status=500)

    async def slow(request):
        await asyncio.sleep(5)
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/notjson/api/system/info", not_json)
    app.router.add_get("/shape/api/system/metrics", wrong_shape)
    app.router.add_get("/empty/api/system/metrics", empty)
    app.router.add_get("/crash/api/system/info", crash)
    app.router.add_get("/crash/api/health", crash)
    app.router.add_get("/slow/api/health", slow)
    app.router.add_get("/slow/api/system/info", slow)
    return await aiohttp_server(app)


def _url(server, prefix: str = "") -> str:
    return f"http://127.0.0.1:{server.port}{prefix}"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_seed_calls_return_seed_keys(service):
    """The seed's calls work as written: info has platform/cpu_cores, metrics cpu.overall and memory.usage."""
    async with SystemMonitorClient(_url(service)) as client:
        assert await client.health_check() is True
        info = await client.get_system_info()
        metrics = await client.get_formatted_metrics()
    assert info["platform"] == "linux" and info["cpu_cores"] >= 1
    assert metrics["node_id"] == NODE
    assert 0.0 <= metrics["cpu"]["overall"] <= 100.0
    assert 0.0 < metrics["memory"]["usage"] < 100.0


async def test_metrics_history_and_health(service):
    """get_metrics returns the node list, get_history the kept snapshots, get_health the health body."""
    async with SystemMonitorClient(_url(service)) as client:
        nodes = await client.get_metrics()
        same = await client.get_metrics(NODE)
        history = await client.get_history(NODE, limit=1)
        health = await client.get_health()
    assert [n["node_id"] for n in nodes] == [NODE] and same[0]["node_id"] == NODE
    assert len(history) == 1 and history[0]["timestamp"] == nodes[0]["timestamp"]
    assert health["service"] == "system_monitor" and health["nodeId"] == NODE


async def test_unknown_node_is_not_found(service):
    """An unknown node_id maps the service's 404 JSON error onto NotFound with status and code."""
    async with SystemMonitorClient(_url(service)) as client:
        with pytest.raises(NotFound) as caught:
            await client.get_formatted_metrics("no-such-node")
    assert caught.value.status == 404 and caught.value.code == "not_found"
    assert "no-such-node" in str(caught.value)


async def test_bad_query_is_response_error(service):
    """A 400 from the service becomes a ResponseError (not NotFound) carrying the service's message."""
    async with SystemMonitorClient(_url(service)) as client:
        with pytest.raises(ResponseError) as caught:
            await client.get_history(limit=0)
    assert not isinstance(caught.value, NotFound)
    assert caught.value.status == 400 and "limit" in str(caught.value)


async def test_closed_port_is_unavailable_and_health_check_false():
    """Nothing listening: calls raise ServiceUnavailable and health_check answers False without raising."""
    async with SystemMonitorClient(f"http://127.0.0.1:{_closed_port()}") as client:
        assert await client.health_check() is False
        with pytest.raises(ServiceUnavailable):
            await client.get_system_info()


async def test_timeout_is_unavailable(odd):
    """A service that does not answer in time is ServiceUnavailable, and health_check is False."""
    async with SystemMonitorClient(_url(odd, "/slow"), timeout=0.2) as client:
        with pytest.raises(ServiceUnavailable, match="no answer"):
            await client.get_system_info()
        assert await client.health_check() is False


async def test_malformed_answers_are_protocol_errors(odd):
    """Non-JSON, a dict where a list belongs, and an empty node list all raise ProtocolError."""
    async with SystemMonitorClient(_url(odd, "/notjson")) as client:
        with pytest.raises(ProtocolError, match="not JSON"):
            await client.get_system_info()
    async with SystemMonitorClient(_url(odd, "/shape")) as client:
        with pytest.raises(ProtocolError, match="list"):
            await client.get_metrics()
    async with SystemMonitorClient(_url(odd, "/empty")) as client:
        with pytest.raises(ProtocolError, match="no snapshot"):
            await client.get_formatted_metrics()


async def test_server_error_maps_to_response_error(odd):
    """A 500 JSON error body becomes ResponseError(status=500, code=...); health_check says False."""
    async with SystemMonitorClient(_url(odd, "/crash")) as client:
        with pytest.raises(ResponseError) as caught:
            await client.get_system_info()
        assert await client.health_check() is False
    assert caught.value.status == 500 and caught.value.code == "internal_error"


def test_hierarchy_roots_at_sysmon_error():
    """Every client error is a ClientError and a SysmonError, so one except clause catches them all."""
    for cls in (ServiceUnavailable, ProtocolError, ResponseError, NotFound):
        assert issubclass(cls, ClientError) and issubclass(cls, SysmonError)
    assert issubclass(NotFound, ResponseError)


async def test_injected_session_is_used_and_left_open(service):
    """An injected session carries the requests and is still open after the client closes."""
    seen: list[str] = []

    async def trace(session, ctx, params):
        seen.append(str(params.url))

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(trace)
    async with aiohttp.ClientSession(trace_configs=[tracing]) as session:
        async with SystemMonitorClient(_url(service), session=session) as client:
            await client.get_system_info()
        assert not session.closed
        assert seen == [_url(service) + "/api/system/info"]


async def test_client_is_reusable_after_exit(service):
    """The same client object works again after its context closed its own session."""
    client = SystemMonitorClient(_url(service))
    async with client:
        first = await client.get_system_info()
    async with client:
        second = await client.get_system_info()
    assert first == second


def test_default_url_comes_from_environment(monkeypatch):
    """Without a base URL the client uses $TRACKLAB_SYSMON_URL, else 127.0.0.1:8080."""
    monkeypatch.delenv(URL_ENV, raising=False)
    assert default_url() == "http://127.0.0.1:8080"
    monkeypatch.setenv(URL_ENV, "http://127.0.0.1:9999/")
    assert SystemMonitorClient().base_url == "http://127.0.0.1:9999"


def test_ws_url_and_bad_scheme():
    """The stream URL swaps http(s) for ws(s); a base URL of another scheme is refused up front."""
    assert ws_url("http://127.0.0.1:1/") == "ws://127.0.0.1:1/ws/system-metrics"
    assert ws_url("https://h") == "wss://h/ws/system-metrics"
    with pytest.raises(ValueError, match="http"):
        SystemMonitorClient("ftp://127.0.0.1")


async def test_token_is_sent_on_rest_and_stream(aiohttp_server, monkeypatch):
    """A client with the service's --token reads it over REST and WebSocket; without it gets HTTP 401."""
    monkeypatch.delenv("TRACKLAB_SYSMON_TOKEN", raising=False)
    server = await aiohttp_server(create_app(ServiceConfig(node_id=NODE, interval=0.1, token="s3cret")))
    async with SystemMonitorClient(_url(server)) as anonymous:
        with pytest.raises(ResponseError) as caught:
            await anonymous.get_system_info()
        with pytest.raises(ResponseError) as refused:
            await anext(anonymous.stream(reconnect=False))
    assert caught.value.status == 401 and refused.value.status == 401
    async with SystemMonitorClient(_url(server), token="s3cret") as client:
        assert (await client.get_system_info())["node_id"] == NODE
        snap = await asyncio.wait_for(anext(client.stream(reconnect=False)), 10)
    assert snap["node_id"] == NODE
    monkeypatch.setenv("TRACKLAB_SYSMON_TOKEN", "s3cret")  # the variable `serve --token` reads
    async with SystemMonitorClient(_url(server)) as from_env:
        assert (await from_env.get_metrics())[0]["node_id"] == NODE
