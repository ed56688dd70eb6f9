"""`/ws/system-metrics`: each tick's frame is built once and the same bytes go to every subscriber.

Fan-out writes the pre-framed bytes straight to each socket's transport, synchronously, from the
bus callback: no task wake-up, no copy, no per-client encoding. A subscriber whose socket is
backed up (bytes it was given are not on the wire yet: the peer's TCP window is closed, or
asyncio holds what the kernel refused) holds at most one pending frame per node, the newest
replacing the stale one, and is dropped once it has made no full progress for `stall_timeout`.
Replies to client messages (info, pong, errors) go through aiohttp's writer; both paths write
whole frames within one event-loop step, so frames never interleave.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import fcntl
import logging
import socket
import struct
import time
from dataclasses import dataclass

from aiohttp import WSMessage, WSMsgType, web

from ..config import DEFAULT_WS_CLIENTS
from ..errors import BadMessage
from ..protocol import (
    MAX_MESSAGE_BYTES,
    WS_PATH,
    Ping,
    Subscribe,
    error_payload,
    info_payload,
    metrics_payload,
    normalize_origin,
    origin_allowed,
    parse_message,
    pong_payload,
    subscribed_payload,
    text_frame,
)
from . import keys
from .errors import json_error

log = logging.getLogger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013


@dataclass(frozen=True, slots=True)
class WsSettings:
    max_clients: int = DEFAULT_WS_CLIENTS
    heartbeat: float = 20.0  # ping period; no pong within half of it closes a dead peer
    stall_timeout: float = 10.0  # a socket backed up this long is dropped
    retry_first: float = 0.005  # a backed-up socket is checked for room after this long,
    retry_max: float = 0.2  # then twice as long each time up to this: cheap for stalled peers
    max_message: int = MAX_MESSAGE_BYTES  # a bigger client message closes with 1009
    # SO_SNDBUF per socket (Linux doubles it: 64 KiB). The default lets the kernel take ~256 KiB
    # that a stalled peer never reads: at 1 Hz minutes of frames before a stall even shows, and
    # 1,000 such peers pin ~256 MB. 64 KiB still keeps a 20 Hz stream of 20 KB frames moving
    # over a 150 ms round trip.
    send_buffer: int = 32 * 1024
    close_timeout: float = 1.0  # wait this long for a client's close reply on shutdown


class Subscriber:
    """One socket's subscription and its bounded backlog (one frame per node at most)."""

    __slots__ = (
        "_counts",
        "_delay",
        "_fd",
        "_pending",
        "_retry",
        "_stalled_since",
        "dropped",
        "every",
        "hub",
        "node_id",
        "ready",
        "transport",
        "ws",
    )

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, hub: WsHub) -> None:
        self.ws, self.transport, self.hub = ws, transport, hub
        sock = transport.get_extra_info("socket")
        self._fd: int = sock.fileno() if sock is not None else -1
        self.node_id: str | None = None
        self.every = 1
        self.ready = False  # frames wait in the backlog until the info frame is out
        self.dropped = 0  # stale frames replaced before they could be written
        self._counts: dict[str, int] = {}
        self._pending: dict[str, bytes] = {}
        self._stalled_since: float | None = None
        self._retry: asyncio.TimerHandle | None = None
        self._delay = 0.0

    def subscribe(self, sub: Subscribe) -> None:
        self.node_id, self.every = sub.node_id, sub.every
        self._counts.clear()
        self._pending = {n: f for n, f in self._pending.items() if sub.node_id in (None, n)}

    def offer(self, node_id: str, frame: bytes) -> None:
        """Queue this node's newest frame (replacing a stale one) and write it if the socket has room."""
        if self.node_id is not None and node_id != self.node_id:
            return
        if self.every > 1:
            seen = self._counts[node_id] = self._counts.get(node_id, 0) + 1
            if (seen - 1) % self.every:
                return
        if node_id in self._pending:
            self.dropped += 1
        self._pending[node_id] = frame
        self.flush()

    def flush(self) -> None:
        if not self.ready or self._retry is not None:
            return
        transport = self.transport
        # asyncio buffers only what the kernel refused; the kernel's unsent queue fills as soon as
        # the peer's window closes, long before its buffer is full: the stall clock starts there.
        # Checked even once closing: asyncio keeps a closed transport open until its buffer
        # drains, which for a peer that reads nothing (say, after a missed pong) is never.
        if transport.get_write_buffer_size() or kernel_unsent(self._fd):
            self._backed_up()
            return
        self._stalled_since, self._delay = None, 0.0
        if transport.is_closing() or self.ws.closed:
            self._pending.clear()
            return
        for frame in self._pending.values():
            transport.write(frame)
        self._pending.clear()

    def stalled_for(self) -> float | None:
        """Seconds since this socket last had everything it was given on the wire; None: not backed up."""
        return None if self._stalled_since is None else time.monotonic() - self._stalled_since

    def buffered(self) -> int:
        """Bytes this socket holds in user space: asyncio's write buffer (pending frames are shared)."""
        return self.transport.get_write_buffer_size()

    def cancel(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._pending.clear()

    def _backed_up(self) -> None:
        now = time.monotonic()
        if self._stalled_since is None:
            self._stalled_since = now
        elif now - self._stalled_since > self.hub.settings.stall_timeout:
            log.info("WebSocket client %s stalled for %.1f s; dropping it", _peer(self.transport),
                     now - self._stalled_since)
            self.cancel()
            reset(self.transport)  # it reads nothing, so a close handshake could never finish
            return
        settings = self.hub.settings
        self._delay = min(settings.retry_max, self._delay * 2 or settings.retry_first)
        self._retry = asyncio.get_running_loop().call_later(self._delay, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        self.flush()


class WsHub:
    """The set of subscribers and the latest frame of every node; subscribed to the snapshot bus."""

    def __init__(self, settings: WsSettings, allow_origins: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.allow_origins = tuple(normalize_origin(o) if o != "*" else o for o in allow_origins)
        self.subscribers: set[Subscriber] = set()
        self.latest: dict[str, bytes] = {}
        self.closing = False

    def publish(self, node_id: str, encoded: bytes) -> None:
        """Bus callback: frame the snapshot once, then hand the same bytes to every subscriber."""
        frame = text_frame(metrics_payload(node_id, encoded))
        self.latest[node_id] = frame
        for subscriber in tuple(self.subscribers):
            subscriber.offer(node_id, frame)

    def start(self, subscriber: Subscriber) -> None:
        """The info frame is out: send each node's latest frame now, then every tick's."""
        subscriber.ready = True
        for node_id, frame in self.latest.items():
            subscriber.offer(node_id, frame)

    async def close_all(self) -> None:
        """Close every socket with 1001 concurrently; a peer that does not answer is cut off."""
        self.closing = True
        await asyncio.gather(*(self._close(s) for s in tuple(self.subscribers)))

    async def _close(self, subscriber: Subscriber) -> None:
        subscriber.cancel()
        try:
            await asyncio.wait_for(
                subscriber.ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down"),
                self.settings.close_timeout,
            )
        except (TimeoutError, ConnectionError):
            reset(subscriber.transport)


HUB = web.AppKey("ws_hub", WsHub)


def setup(app: web.Application) -> WsHub:
    """Create the hub, subscribe it to the bus, register the route and the shutdown hook."""
    config = app[keys.CONFIG]
    settings = WsSettings(max_clients=config.max_ws_clients)
    hub = app[HUB] = WsHub(settings, config.allow_origins)
    app[keys.BUS].subscribe(hub.publish)
    app.router.add_get(WS_PATH, handle)
    app.on_shutdown.append(_shutdown)
    return hub


async def _shutdown(app: web.Application) -> None:
    hub = app[HUB]
    app[keys.BUS].unsubscribe(hub.publish)
    await hub.close_all()


async def handle(request: web.Request) -> web.StreamResponse:
    """Check the origin and the client cap, send info, then stream frames and answer messages."""
    hub = request.app[HUB]
    config = request.app[keys.CONFIG]
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, scheme=request.scheme, host=request.host, allowed=hub.allow_origins,
                          authenticated=config.token is not None):
        return json_error(403, f"origin {origin!r} may not open this WebSocket; "
                               "start the service with --allow-origin to allow it", "origin_not_allowed")
    settings = hub.settings
    # aiohttp refuses a message of max_msg_size bytes or more; the documented limit is inclusive.
    ws = web.WebSocketResponse(heartbeat=settings.heartbeat, max_msg_size=settings.max_message + 1,
                               compress=False, timeout=settings.close_timeout)
    if not ws.can_prepare(request).ok:
        return json_error(400, f"{WS_PATH} expects a WebSocket upgrade request", "upgrade_required")
    if hub.closing or len(hub.subscribers) >= settings.max_clients:
        await ws.prepare(request)
        reason = "server shutting down" if hub.closing else f"too many clients (limit {settings.max_clients})"
        await ws.close(code=CLOSE_GOING_AWAY if hub.closing else CLOSE_TRY_AGAIN_LATER, message=reason.encode())
        return ws
    transport = request.transport
    assert transport is not None  # a live request always has one
    subscriber = Subscriber(ws, transport, hub)
    hub.subscribers.add(subscriber)  # before any await, so the cap cannot be overrun
    try:
        await ws.prepare(request)
        _limit_send_buffer(transport, settings.send_buffer)
        await ws.send_str(info_payload(request.app[keys.SYSTEM_INFO_BYTES]).decode())
        hub.start(subscriber)
        async for message in ws:
            await _answer(ws, subscriber, message)
    except ConnectionError:
        pass  # the peer went away mid-write; nothing to tell it
    finally:
        hub.subscribers.discard(subscriber)
        subscriber.cancel()
        if transport.get_write_buffer_size():  # e.g. a missed pong closed it behind unread bytes
            asyncio.get_running_loop().call_later(settings.stall_timeout, _abort_if_stuck, transport)
    return ws


def _abort_if_stuck(transport: asyncio.Transport) -> None:
    """A closed socket whose peer still has not taken its last bytes is cut off, freeing the fd."""
    if transport.get_write_buffer_size():
        reset(transport)


def reset(transport: asyncio.Transport) -> None:
    """Drop a connection now: RST, unsent bytes discarded (a plain close would leave the kernel
    retrying them to a peer that reads nothing, for minutes, as an orphaned socket)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _answer(ws: web.WebSocketResponse, subscriber: Subscriber, message: WSMessage) -> None:
    await ws.send_str(reply(subscriber, message).decode())


def reply(subscriber: Subscriber, message: WSMessage) -> bytes:
    """The frame that answers one client message; a message the server cannot use gets an error frame."""
    if message.type is not WSMsgType.TEXT:
        return error_payload("bad_message", "send JSON text frames, not binary")
    try:
        return _apply(subscriber, parse_message(message.data))
    except BadMessage as exc:
        return error_payload(exc.code, str(exc))


def _apply(subscriber: Subscriber, request: Subscribe | Ping) -> bytes:
    if isinstance(request, Ping):
        return pong_payload(request)
    hub = subscriber.hub
    if request.node_id is not None and request.node_id not in hub.latest:
        known = ", ".join(sorted(hub.latest)) or "none yet"
        return error_payload("unknown_node", f"unknown nodeId {request.node_id!r} (known: {known})")
    subscriber.subscribe(request)
    return subscribed_payload(request)


_SIOCOUTQNSD = 0x894B  # linux/sockios.h: bytes in a socket's send queue not yet sent
_QUEUE = array.array("i", [0])  # the ioctl's out-parameter, reused: the event loop is one thread


def kernel_unsent(fd: int) -> int:
    """Bytes the kernel holds for this socket but has not sent (the peer's window is closed); 0 if unknown."""
    if fd < 0:
        return 0
    try:
        fcntl.ioctl(fd, _SIOCOUTQNSD, _QUEUE, True)
    except OSError:  # closed meanwhile, or not a TCP socket (a Unix socket in a test): no signal
        return 0
    return _QUEUE[0]


def _limit_send_buffer(transport: asyncio.Transport, size: int) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def _peer(transport: asyncio.Transport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if peer else "?"


__all__ = ["HUB", "WS_PATH", "WsHub", "WsSettings", "handle", "setup"]
