"""The WebSocket endpoint of a real `tracklab-sysmon serve` process: CLI flags and SIGTERM with open sockets."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import aiohttp
import orjson
import pytest

from tracklab_sysmon.server.ws import WS_PATH

DEADLINE = 20.0  # upper bound on start-up and waits; never a speed assertion
EXIT_CONTRACT = 5.0  # the process contract: exit within 5 s of SIGTERM, sockets open or not


@pytest.fixture
def service(tmp_path):
    """Start the service with WebSocket flags; yields (process, base URL); always reaped."""
    portfile = tmp_path / "port.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--portfile", str(portfile),
         "--interval", "0.2", "--node-id", "proc-node", "--allow-origin", "http://app.example:3000",
         "--max-ws-clients", "3"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        url = _wait_for_portfile(proc, portfile)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(DEADLINE)
        proc.stderr.close()


def _wait_for_portfile(proc: subprocess.Popen, portfile) -> str:
    import time

    end = time.monotonic() + DEADLINE
    while not portfile.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < end, "the service never wrote its portfile"
        time.sleep(0.05)
    return json.loads(portfile.read_text())["url"]


async def _first(conn) -> dict:
    message = await asyncio.wait_for(conn.receive(), DEADLINE)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return orjson.loads(message.data)


async def test_allow_origin_and_max_ws_clients_flags(service):
    """--allow-origin lets that page's origin in, others get 403, and --max-ws-clients 3 refuses a 4th with 1013."""
    _proc, url = service
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url + WS_PATH, headers={"Origin": "http://other.example:3000"})
        assert refused.value.status == 403
        conns = [await session.ws_connect(url + WS_PATH, headers={"Origin": "http://app.example:3000"})
                 for _ in range(3)]
        for conn in conns:
            assert (await _first(conn))["type"] == "info"
            metrics = await _first(conn)
            assert metrics["type"] == "metrics" and metrics["nodeId"] == "proc-node"
        extra = await session.ws_connect(url + WS_PATH)
        message = await asyncio.wait_for(extra.receive(), DEADLINE)
        assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1013
        for conn in conns:
            await conn.close()


async def test_sigterm_with_open_sockets_sends_1001_and_exits_within_5s(service):
    """SIGTERM closes reading sockets with 1001, cuts off a never-reading one, and the process exits 0 in time."""
    proc, url = service
    host, port = url.removeprefix("http://").rsplit(":", 1)
    async with aiohttp.ClientSession() as session:
        conns = [await session.ws_connect(url + WS_PATH) for _ in range(2)]
        for conn in conns:
            assert (await _first(conn))["type"] == "info"
        stuck_reader, stuck = await asyncio.open_connection(host, int(port))
        stuck.write(
            f"GET {WS_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert b" 101 " in await asyncio.wait_for(stuck_reader.readuntil(b"\r\n\r\n"), DEADLINE)
        stuck.transport.pause_reading()

        async def until_close(conn) -> aiohttp.WSMessage:
            while (message := await conn.receive()).type is aiohttp.WSMsgType.TEXT:
                pass
            return message

        closes = [asyncio.ensure_future(until_close(c)) for c in conns]
        os.kill(proc.pid, signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, EXIT_CONTRACT)
        assert code == 0, proc.stderr.read().decode()
        for message in await asyncio.wait_for(asyncio.gather(*closes), DEADLINE):
            assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1001
        stuck.close()
