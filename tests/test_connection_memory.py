"""What a held connection keeps: no aiohttp handler until its first request head is complete, no response body
once its answer is written; and it is served as before."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from service_process import DEADLINE, parse_response

from tracklab_sysmon.server.connections import HANDOFF_BYTES, ConnectionLimits, GuardedRunner, GuardedServer, head_ends
from tracklab_sysmon.server.writes import write_deadline_middleware

HALF_HEAD = b"GET /api/system/metrics HTTP/1.1\r\nHost: 127."
# One request, cut inside the request line, inside a header, between the blank line's CR and LF, and in the body.
PIECES = (
    b"POST /echo?a=1&b=",
    b"two HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Tr",
    b"ace: abc\r\nContent-Length: 11\r\nConnection: close\r\n\r",
    b"\n",
    b"hello ",
    b"world",
)
ECHO = {"method": "POST", "path": "/echo?a=1&b=two", "headers": [["Host", "127.0.0.1"], ["X-Trace", "abc"],
        ["Content-Length", "11"], ["Connection", "close"]], "body": "hello world"}


async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method, "path": request.path_qs,
                              "headers": [list(pair) for pair in request.headers.items()],
                              "body": (await request.read()).decode()})


class Answered:
    """A handler that remembers the responses it returned."""

    def __init__(self) -> None:
        self.responses: list[web.Response] = []

    async def answer(self, request: web.Request) -> web.Response:
        response = web.Response(body=b"x" * 3000, content_type="application/json")
        self.responses.append(response)
        return response


class Served:
    """A GuardedRunner on loopback port 0 serving `_echo` and an `Answered`, and raw connections to it."""

    def __init__(self, runner: GuardedRunner, port: int, answered: Answered) -> None:
        self.runner, self.port, self.answered = runner, port, answered
        self.writers: list[asyncio.StreamWriter] = []  # closed at teardown, even when a test fails

    @property
    def server(self) -> GuardedServer:
        assert isinstance(self.runner.server, GuardedServer)
        return self.runner.server

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer

    def handlers(self) -> list[web.RequestHandler]:
        """aiohttp handlers alive and bound to this server, however they are referenced."""
        gc.collect()
        return [o for o in gc.get_objects() if isinstance(o, web.RequestHandler) and o._manager is self.server]


async def _serve(header_timeout: float) -> AsyncIterator[Served]:
    app = web.Application(middlewares=[write_deadline_middleware(DEADLINE)])  # the service's outermost middleware
    app.router.add_route("*", "/echo", _echo)
    answered = Answered()
    app.router.add_get("/answered", answered.answer)
    runner = GuardedRunner(app, limits=ConnectionLimits(max_connections=100, header_timeout=header_timeout),
                           handle_signals=False, access_log=None, keepalive_timeout=600)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    served = Served(runner, runner.addresses[0][1], answered)
    try:
        yield served
    finally:
        for writer in served.writers:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for writer in served.writers), return_exceptions=True)
        await runner.cleanup()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async for each in _serve(header_timeout=10 * DEADLINE):  # never reached: a hang fails first
        yield each


@pytest.fixture
async def served_fast_deadline() -> AsyncIterator[Served]:
    async for each in _serve(header_timeout=0.5):
        yield each


async def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for the server's loop (this one) to reach a state; the ceiling only catches a hang."""
    end = asyncio.get_running_loop().time() + DEADLINE
    while not condition():
        assert asyncio.get_running_loop().time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _read_to_close(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), DEADLINE)


async def test_connections_that_never_finish_their_head_hold_no_aiohttp_handler(served):
    """Three half-sent heads are counted (cap, open_connections) but hold only their bytes: no aiohttp handler
    exists for them, and shutdown closes them."""
    clients = [await served.connect() for _ in range(3)]
    for _, writer in clients:
        writer.write(HALF_HEAD)
        await writer.drain()
    await _until(lambda: served.server.pending_head_bytes == 3 * len(HALF_HEAD), "the three half heads")
    assert served.server.open_connections == 3
    assert served.server.pending_heads == 3
    assert served.server.connections == []  # aiohttp's own registry of handlers
    assert served.handlers() == []
    await served.runner.cleanup()
    for reader, _ in clients:
        assert await _read_to_close(reader) == b""  # closed by the shutdown, nothing written


async def test_a_head_sent_in_slow_pieces_is_answered_as_if_sent_whole(served):
    """A request whose head (and body) arrive in pieces, each read by the server before the next is sent, gets
    the same answer as the same bytes sent at once; until the blank line is in, no aiohttp handler exists."""
    whole_reader, whole_writer = await served.connect()
    whole_writer.write(b"".join(PIECES))
    whole = parse_response(await _read_to_close(whole_reader))
    assert whole[0] == 200 and json.loads(whole[2]) == ECHO

    reader, writer = await served.connect()
    sent = 0
    for piece in PIECES[:3]:  # the head without its last LF
        writer.write(piece)
        await writer.drain()
        sent += len(piece)
        await _until(lambda: served.server.pending_head_bytes == sent, f"{sent} bytes of the head")  # noqa: B023
        assert served.server.connections == []
        assert served.handlers() == []
    for piece in PIECES[3:]:
        writer.write(piece)
        await writer.drain()
        if piece == b"\n":
            await _until(lambda: len(served.server.connections) == 1, "aiohttp's handler once the head is in")
            assert served.server.pending_heads == 0
    pieces = parse_response(await _read_to_close(reader))
    assert pieces[0] == whole[0] and pieces[2] == whole[2]
    assert {k: v for k, v in pieces[1].items() if k != "date"} == {k: v for k, v in whole[1].items() if k != "date"}


async def test_a_head_over_the_handoff_size_goes_to_aiohttp_and_keeps_its_deadline(served_fast_deadline):
    """A first head still unfinished past HANDOFF_BYTES (legal header lines) is handed to aiohttp unfinished;
    the head deadline still closes it (keep-alive being 600 s), and the handler is gone after."""
    served = served_fast_deadline
    reader, writer = await served.connect()
    filler = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 100) for i in range(HANDOFF_BYTES // 100 + 1))
    writer.write(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n" + filler)
    await writer.drain()
    await _until(lambda: len(served.server.connections) == 1, "the handover to aiohttp")
    assert served.server.pending_heads == 0
    assert await _read_to_close(reader) == b""  # the deadline: closed with no answer
    await _until(lambda: served.server.open_connections == 0, "the handler's connection to go")
    assert served.handlers() == []


async def test_a_url_too_long_sent_slowly_gets_aiohttp_json_400(served):
    """A 9 KiB request line never finished is handed over at HANDOFF_BYTES, and aiohttp's limit (8190) answers it
    with the JSON 400 as when it arrives at once."""
    reader, writer = await served.connect()
    writer.write(b"GET /echo?q=" + b"a" * 4000)
    await writer.drain()
    await _until(lambda: served.server.pending_head_bytes == 4012, "the first part")
    writer.write(b"a" * 5000)
    status, headers, body = parse_response(await _read_to_close(reader))
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "bad_request"


async def test_an_idle_kept_alive_connection_keeps_no_response_body(served):
    """aiohttp holds a kept-alive connection's last response until the next request; once written, its body is
    dropped, and the connection still serves the next request."""
    reader, writer = await served.connect()
    for turn in (1, 2):
        writer.write(b"GET /answered HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE)
        status, headers, _ = parse_response(head)
        assert status == 200 and await reader.readexactly(int(headers["content-length"])) == b"x" * 3000
        response = served.answered.responses[-1]
        await _until(lambda: response.body is None, f"response {turn} to let go of its body")  # noqa: B023
    assert len(served.server.connections) == 1  # one connection, kept alive throughout


@pytest.mark.parametrize(("buffer", "seen", "ends"), [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, True),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 26, True),  # the last LF arrived alone
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 25, True),  # CR LF arrived alone
    (b"GET / HTTP/1.1\r\nHost: a\r\n", 0, False),
    (b"GET / HTTP/1.1\nHost: a\n\n", 0, True),  # bare LF: aiohttp answers it (400)
    (b"\r\n\r\n", 0, False),  # empty lines before a request line are not a head
    (b"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 2, True),
    (b"\r\n\r\nGET / HTTP/1.1\r\n", 0, False),
])
def test_head_ends_finds_the_blank_line_across_pieces(buffer, seen, ends):
    """The end of a head is found wherever the previous piece stopped, and never in leading empty lines."""
    assert head_ends(buffer, seen) is ends
