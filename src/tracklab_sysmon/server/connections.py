"""HTTP connection limits: a cap with a 503 refusal, a deadline for the first request head, the open-file limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_parser import RawRequestMessage
from aiohttp.streams import StreamReader

from .. import wire
from .protocol_errors import JsonErrorRequestHandler

log = logging.getLogger(__name__)

FD_RESERVE = 64  # descriptors kept for everything but HTTP connections (collectors' files, peers, logs)
REFUSAL_LINGER_SECONDS = 0.5  # a refused client's request is read and dropped this long, so it sees the 503
# asyncio uses one number for two things: the kernel's queue of connections not yet accepted, and
# how many it accepts in one go. A queue of 128 overflows (SYNs dropped, clients retry after 1-3 s)
# when thousands connect at once; accepting 4096 in one go stalls every other request meanwhile.
ACCEPT_BATCH = 128
LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn
# A first head still unfinished at this size goes to aiohttp as it is: its parser enforces the real limits (8190
# bytes a line, a JSON 400 beyond) and the head deadline still runs. This only bounds what a pending one holds.
HANDOFF_BYTES = 8192


def _refusal(limit: int) -> bytes:
    body = wire.encode(wire.error_body(
        "too_many_connections",
        f"the service holds its limit of {limit} connections (--max-connections); retry shortly",
    ))
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def head_ends(buffer: bytes | bytearray, seen: int) -> bool:
    """Whether `buffer` holds the blank line that ends a request head; `seen` bytes of it were looked at before.

    A line end followed by an empty line, CRLF or bare LF (aiohttp's parser answers a bare-LF head with its 400),
    after any empty lines before the request line (which HTTP allows a client to send).
    """
    start = len(buffer) - len(buffer.lstrip(b"\r\n"))
    start = max(start, seen - 2)  # the end may straddle the previous piece
    return buffer.find(b"\n\n", start) >= 0 or buffer.find(b"\n\r\n", start) >= 0


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections, and how long one may take to send its first request line and headers."""

    max_connections: int
    header_timeout: float


class PendingHead(asyncio.Protocol):
    """A new connection until its first request head is complete: its bytes and a deadline, no aiohttp objects.

    aiohttp builds a handler, a parser, a task and timers for every connection as it opens, which slowloris
    connections would hold until the head deadline (5.8 KiB of RSS each with asyncio's transport and socket).
    This object is about 100 bytes plus what the client sent (2.1 KiB each in all), and the server swaps in
    aiohttp's handler (`GuardedServer.hand_over`) once the head is there. Client EOF closes it (asyncio's default).
    """

    __slots__ = ("_deadline", "_head", "_server", "_transport")

    def __init__(self, server: GuardedServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        # A copy, never the bytes object the socket read: asyncio reads into a 256 KiB one and shrinks it, and
        # glibc leaves that on a page of its own, so keeping those few bytes costs 4 KiB (measured: 5.8 against
        # 2.1 KiB of RSS per held connection).
        self._head = bytearray()
        self._deadline: asyncio.TimerHandle | None = None  # None once refused or handed over

    @property
    def head_bytes(self) -> int:
        """Bytes of the unfinished head held."""
        return len(self._head)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a stream socket's, from create_server
        self._transport = transport
        self._deadline = self._server.admit(self, transport)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None or self._transport is None:  # refused: the 503 is out, the rest is dropped
            return
        seen = len(self._head)
        self._head += data
        if len(self._head) > HANDOFF_BYTES or head_ends(self._head, seen):
            head, deadline, transport = bytes(self._head), self._deadline, self._transport
            self._head, self._deadline, self._transport = bytearray(), None, None
            self._server.hand_over(self, transport, deadline, head)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._transport = None
        self._server.pending_lost(self)

    def close(self) -> None:
        """Close the connection (head deadline, refusal linger, shutdown)."""
        if self._transport is not None:
            self._transport.close()


class GuardedServer(web.Server):
    """aiohttp's low-level server with a connection cap and a request-head deadline (slowloris).

    aiohttp closes idle kept-alive connections (`keepalive_timeout`), but a connection that never
    completes its first request head may wait far longer. Here each new connection is a `PendingHead`
    with `header_timeout` seconds to send one, and becomes aiohttp's handler only then; connections
    beyond the cap get a 503 JSON body and are closed.
    """

    def __init__(self, handler: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self._refusal = _refusal(limits.max_connections)
        self._pending: set[PendingHead] = set()
        self._accepted: set[web.RequestHandler] = set()
        self._refused: set[PendingHead] = set()
        self._head_deadlines: dict[web.RequestHandler, asyncio.TimerHandle] = {}
        make_request = self.request_factory

        def request_factory(
            message: RawRequestMessage, payload: StreamReader, protocol: web.RequestHandler,
            writer: AbstractStreamWriter, task: asyncio.Task[None],
        ) -> web.BaseRequest:
            deadline = self._head_deadlines.pop(protocol, None)  # a complete request head arrived in time
            if deadline is not None:
                deadline.cancel()
            return make_request(message, payload, protocol, writer, task)

        self.request_factory = request_factory

    @property
    def open_connections(self) -> int:
        """Accepted connections that are still open, with or without a complete head (refused ones not counted)."""
        return len(self._pending) + len(self._accepted)

    @property
    def pending_heads(self) -> int:
        """Connections still sending their first request head (no aiohttp handler yet)."""
        return len(self._pending)

    @property
    def pending_head_bytes(self) -> int:
        """Bytes of unfinished first request heads held for them."""
        return sum(pending.head_bytes for pending in self._pending)

    def __call__(self) -> PendingHead:  # type: ignore[override]  # asyncio's protocol factory; aiohttp's comes later
        return PendingHead(self)

    def admit(self, pending: PendingHead, transport: asyncio.Transport) -> asyncio.TimerHandle | None:
        """Count a new connection and start its head deadline, or refuse it beyond the cap (returns None)."""
        if self.open_connections >= self.limits.max_connections:
            self._refuse(pending, transport)
            return None
        self._pending.add(pending)
        return self._loop.call_later(self.limits.header_timeout, self._pending_too_slow, pending)

    def hand_over(
        self, pending: PendingHead, transport: asyncio.Transport, deadline: asyncio.TimerHandle, head: bytes
    ) -> None:
        """Give a connection whose head is in to aiohttp: its handler takes the transport and the bytes so far."""
        self._pending.discard(pending)
        deadline.cancel()
        handler = JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)
        transport.set_protocol(handler)  # later callbacks (data, EOF, loss, flow control) go to it directly
        handler.connection_made(transport)  # registers it here (connection_made below)
        # aiohttp's parser may still want more (a head over HANDOFF_BYTES): the same deadline runs until it has one.
        self._head_deadlines[handler] = self._loop.call_at(deadline.when(), self._head_too_slow, handler)
        handler.data_received(head)

    def pending_lost(self, pending: PendingHead) -> None:
        self._pending.discard(pending)
        self._refused.discard(pending)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        self._accepted.add(handler)
        super().connection_made(handler, transport)

    def connection_lost(self, handler: web.RequestHandler, exc: BaseException | None = None) -> None:
        deadline = self._head_deadlines.pop(handler, None)
        if deadline is not None:
            deadline.cancel()
        if handler in self._accepted:
            self._accepted.discard(handler)
            super().connection_lost(handler, exc)

    async def shutdown(self, timeout: float | None = None) -> None:
        for pending in (*self._refused, *self._pending):
            pending.close()
        for deadline in self._head_deadlines.values():
            deadline.cancel()
        self._head_deadlines.clear()
        await super().shutdown(timeout)

    def _refuse(self, pending: PendingHead, transport: asyncio.Transport) -> None:
        self._refused.add(pending)
        transport.write(self._refusal)
        if transport.can_write_eof():
            transport.write_eof()
        # Closing at once, with the client's request unread, would make the kernel send RST and the
        # client could lose the 503; reading (and dropping) it for a moment first lets the answer arrive.
        self._loop.call_later(REFUSAL_LINGER_SECONDS, pending.close)
        log.warning("refused a connection: %d open (--max-connections %d)",
                    self.open_connections, self.limits.max_connections)

    def _pending_too_slow(self, pending: PendingHead) -> None:
        log.debug("closed a connection that sent no complete request head in %.1f s", self.limits.header_timeout)
        pending.close()

    def _head_too_slow(self, handler: web.RequestHandler) -> None:
        self._head_deadlines.pop(handler, None)
        log.debug("closed a connection that sent no complete request head in %.1f s", self.limits.header_timeout)
        handler.force_close()


class GuardedRunner(web.AppRunner):
    """An AppRunner whose server is a GuardedServer (same app, same handler options)."""

    def __init__(self, app: web.Application, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limits = limits

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # starts the app; aiohttp's own server, rebuilt below with the guard
        return GuardedServer(
            made.request_handler, request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation, loop=made._loop, limits=self._limits, **made._kwargs,
        )


def deepen_listen_queue(site: web.TCPSite) -> None:
    """Let the kernel queue LISTEN_BACKLOG connections while asyncio still accepts ACCEPT_BATCH at a time."""
    server = site._server  # the asyncio Server; aiohttp's runner.addresses reads it the same way
    for sock in getattr(server, "sockets", None) or ():
        with contextlib.suppress(OSError), sock.dup() as same:  # asyncio's wrapper has no listen(); a dup has
            same.listen(LISTEN_BACKLOG)  # listen() on a listening socket only resizes its queue


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as servers do); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def connection_cap(wanted: int, open_file_limit: int) -> int:
    """`wanted`, lowered to what the open-file limit leaves after the descriptors already open."""
    room = open_file_limit - _open_descriptors() - FD_RESERVE
    if open_file_limit == resource.RLIM_INFINITY or wanted <= room:
        return wanted
    cap = max(1, room)
    log.warning("--max-connections %d lowered to %d: the open-file limit is %d", wanted, cap, open_file_limit)
    return cap


def _open_descriptors() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:  # no procfs (not Linux): assume little is open
        return FD_RESERVE
