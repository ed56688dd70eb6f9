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


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """How many connections, and how long one may take to send its first request line and headers."""

    max_connections: int
    header_timeout: float


class GuardedServer(web.Server):
    """aiohttp's low-level server with a connection cap and a request-head deadline (slowloris).

    aiohttp closes idle kept-alive connections (`keepalive_timeout`), but a connection that never
    completes its first request head may wait far longer. Here each new connection has
    `header_timeout` seconds to do so; connections beyond the cap get a 503 JSON body and are closed.
    """

    def __init__(self, handler: Any, *, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self._refusal = _refusal(limits.max_connections)
        self._accepted: set[web.RequestHandler] = set()
        self._refused: set[web.RequestHandler] = set()
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
        """Accepted connections that are still open (refused ones not counted)."""
        return len(self._accepted)

    def __call__(self) -> web.RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        if len(self._accepted) >= self.limits.max_connections:
            self._refuse(handler, transport)
            return
        self._accepted.add(handler)
        super().connection_made(handler, transport)
        self._head_deadlines[handler] = self._loop.call_later(
            self.limits.header_timeout, self._head_too_slow, handler
        )

    def connection_lost(self, handler: web.RequestHandler, exc: BaseException | None = None) -> None:
        self._refused.discard(handler)
        deadline = self._head_deadlines.pop(handler, None)
        if deadline is not None:
            deadline.cancel()
        if handler in self._accepted:
            self._accepted.discard(handler)
            super().connection_lost(handler, exc)

    async def shutdown(self, timeout: float | None = None) -> None:
        for handler in list(self._refused):
            handler.force_close()
        for deadline in self._head_deadlines.values():
            deadline.cancel()
        self._head_deadlines.clear()
        await super().shutdown(timeout)

    def _refuse(self, handler: web.RequestHandler, transport: asyncio.Transport) -> None:
        self._refused.add(handler)
        transport.write(self._refusal)
        if transport.can_write_eof():
            transport.write_eof()
        handler.close()  # drops whatever the client sends from now on
        # Closing at once, with the client's request unread, would make the kernel send RST and the
        # client could lose the 503; reading it for a moment first lets the answer arrive.
        self._loop.call_later(REFUSAL_LINGER_SECONDS, handler.force_close)
        log.warning("refused a connection: %d open (--max-connections %d)",
                    len(self._accepted), self.limits.max_connections)

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
