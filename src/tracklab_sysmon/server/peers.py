"""Peer aggregation: follow other nodes' latest snapshots (WebSocket, else polling) and republish them.

Every peer has one task; handlers only read the in-memory state, so a slow or dead peer never
delays the local node. A peer's own node is the one its `info` frame (or first snapshot) names;
frames about other nodes (the peer's own peers) are ignored, so aggregators never loop.

Peers are not trusted: each answer is read under the same size cap as a WebSocket frame, decoded
once into a validated `Snapshot` (`wire.snapshot_from_wire`) and kept with the bytes it came in,
which are served as they are (never re-encoded). An invalid answer puts that peer in `error`
with the reason. Credentials in a peer URL are used but never shown: state, metrics and logs
name the peer by its URL without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web

from .. import wire
from ..config import PeerSpec, redact
from ..errors import WireError
from ..model import Snapshot
from ..protocol import WS_PATH, NodeEntry, auth_headers, metrics_data, node_body, subscribe_message
from . import keys
from .bus import SnapshotBus
from .errors import json_error

log = logging.getLogger(__name__)

METRICS_PATH = "/api/system/metrics"
CONNECT_SECONDS = 2.0  # a peer that cannot answer this fast counts as down
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)  # between attempts while a peer stays down
MAX_FRAME_BYTES = 4 << 20  # the cap on one peer answer, WebSocket frame or poll body alike
_READ_CHUNK = 64 * 1024

PeerStatus = Literal["connecting", "up", "down", "duplicate", "error"]


class _NoWebSocket(Exception):
    """The peer has no WebSocket endpoint (an older build): poll it instead."""


@dataclass(slots=True)
class PeerState:
    """What this node knows about one peer; `latest` keeps the last snapshot even while down."""

    spec: PeerSpec
    url: str = field(init=False)  # spec.url without credentials: the only form ever shown
    node_id: str | None = None
    status: PeerStatus = "connecting"
    last_seen: int | None = None  # ms since the epoch, when the last snapshot arrived
    snapshot: Snapshot | None = None  # the last valid snapshot, decoded once
    latest: bytes | None = None  # the bytes it arrived as: served as they are
    transport: str | None = None  # websocket | polling
    error: str | None = None
    duplicate_of: str | None = None  # url of the node already holding node_id ("local": this one)

    def __post_init__(self) -> None:
        self.url = public_url(self.spec.url)

    def entry(self) -> NodeEntry:
        return NodeEntry(node_id=self.node_id, url=self.url, status=self.status, last_seen=self.last_seen,
                         local=False, transport=self.transport, error=self.error, duplicate_of=self.duplicate_of)


class PeerSet:
    """The peers of one node, their follower tasks, and node-id conflict rules."""

    def __init__(
        self,
        specs: Sequence[PeerSpec],
        *,
        local_node_id: str,
        bus: SnapshotBus,
        interval: float = 1.0,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.peers = [PeerState(spec) for spec in specs]
        self.local_node_id = local_node_id
        self.interval = interval
        self.stale_after = max(5.0, 3 * interval)  # no frame for this long: the peer is down
        self._bus = bus
        self._wall = wall

    def live(self) -> list[PeerState]:
        """Peers whose snapshots are served: up, not duplicates, in configured order."""
        return [p for p in self.peers if p.status == "up" and p.latest is not None]

    def find(self, node_id: str) -> PeerState | None:
        return next((p for p in self.peers if p.node_id == node_id), None)

    def accept(self, peer: PeerState, snapshot: Snapshot, encoded: bytes) -> None:
        """Store one validated snapshot of `peer`'s own node and its bytes; publish it unless its id is taken."""
        node_id = snapshot.node_id
        peer.node_id, peer.last_seen, peer.error = node_id, int(self._wall() * 1000), None
        peer.snapshot, peer.latest = snapshot, encoded
        holder = self._holder(node_id, peer)
        if holder is not None:
            if peer.status != "duplicate":
                log.warning("peer %s claims node id %r already held by %s", peer.url, node_id, holder)
            peer.status, peer.duplicate_of = "duplicate", holder
            return
        if peer.status != "up":
            log.info("peer %s (%s) is up via %s", peer.url, node_id, peer.transport)
        peer.status, peer.duplicate_of = "up", None
        self._bus.publish(node_id, encoded)

    def mark_down(self, peer: PeerState, error: str) -> None:
        self._mark(peer, "down", error)

    def mark_error(self, peer: PeerState, error: str) -> None:
        """The peer answered, but not with a snapshot this node can accept: not served until it does."""
        self._mark(peer, "error", error)

    def _mark(self, peer: PeerState, status: PeerStatus, error: str) -> None:
        error = redact(error)
        if peer.status != status or peer.error != error:
            log.warning("peer %s is %s: %s", peer.url, "down" if status == "down" else "refused", error)
        peer.status, peer.error = status, error

    def _holder(self, node_id: str, peer: PeerState) -> str | None:
        if node_id == self.local_node_id:
            return "local"
        for other in self.peers:
            if other is not peer and other.node_id == node_id and other.status in ("up", "down"):
                return other.url
        return None

    async def run(self, session: aiohttp.ClientSession) -> None:
        await asyncio.gather(*(self._follow(peer, session) for peer in self.peers))

    async def _follow(self, peer: PeerState, session: aiohttp.ClientSession) -> None:
        attempts, use_ws = 0, True
        while True:
            seen = peer.last_seen
            try:
                if use_ws:
                    await self._stream(peer, session)
                else:
                    await self._poll(peer, session)
            except _NoWebSocket:
                use_ws = False
                continue
            except WireError as exc:
                self.mark_error(peer, str(exc))
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, LookupError, TypeError) as exc:
                self.mark_down(peer, _describe(exc))
                use_ws = True  # it may come back as a newer build
            except Exception as exc:  # a follower must never die: that peer would vanish for good
                log.exception("following peer %s failed", peer.url)
                self.mark_down(peer, _describe(exc))
            attempts = 0 if peer.last_seen != seen else attempts + 1
            await asyncio.sleep(BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS) - 1)])

    async def _stream(self, peer: PeerState, session: aiohttp.ClientSession) -> None:
        """Follow the peer's WebSocket until it closes or goes quiet."""
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                ws = await session.ws_connect(
                    peer.spec.url + WS_PATH, headers=auth_headers(peer.spec.token), heartbeat=self.stale_after,
                    max_msg_size=MAX_FRAME_BYTES, autoping=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (404, 405):
                raise _NoWebSocket from None
            raise
        peer.transport = "websocket"
        own: str | None = None
        async with ws:
            while True:
                # Not wait_for: on Python 3.11 it drops a cancel that lands as a frame arrives,
                # and the follower then outlives its session (shutdown hangs).
                async with asyncio.timeout(self.stale_after):
                    msg = await ws.receive()
                if msg.type is aiohttp.WSMsgType.ERROR and getattr(msg.data, "code", None) == _TOO_BIG:
                    raise WireError(f"frame over the {MAX_FRAME_BYTES}-byte cap")
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionResetError(f"stream closed ({msg.type.name.lower()})")
                raw = msg.data.encode()
                frame = _object(raw, "frame")
                kind, data = frame.get("type"), frame.get("data")
                if kind == "info" and isinstance(data, dict):
                    named = data.get("node_id")
                    own = named if isinstance(named, str) and named else own
                    if own:  # only the peer's own frames, not those of its peers
                        await ws.send_str(subscribe_message(own))
                elif kind == "metrics" and isinstance(data, dict):
                    node = data.get("node_id")
                    own = own or (node if isinstance(node, str) else None)
                    if node == own:
                        snapshot = wire.snapshot_from_wire(data)
                        # The frame's inner bytes are served as they are; re-encoded only for a
                        # peer whose frames are laid out differently (not this service).
                        self.accept(peer, snapshot, metrics_data(raw, snapshot.node_id) or wire.encode(data))

    async def _poll(self, peer: PeerState, session: aiohttp.ClientSession) -> None:
        """GET the peer's metrics once per interval; its own node comes first in the list."""
        peer.transport = "polling"
        timeout = aiohttp.ClientTimeout(total=min(CONNECT_SECONDS, self.stale_after))
        own: str | None = None
        while True:
            # Once the peer's own node is known, ask for it alone: the body is then `[snapshot]`,
            # whose inner bytes are served as they are.
            params = {"node_id": own} if own else None
            async with session.get(
                peer.spec.url + METRICS_PATH, headers=auth_headers(peer.spec.token), timeout=timeout, params=params
            ) as response:
                if response.status != 200:
                    raise aiohttp.ClientResponseError(
                        response.request_info, (), status=response.status, message=response.reason or ""
                    )
                body = await read_capped(response, MAX_FRAME_BYTES)
            snapshot, encoded = _own_node(body)
            own = snapshot.node_id
            self.accept(peer, snapshot, encoded)
            await asyncio.sleep(self.interval)


_TOO_BIG = aiohttp.WSCloseCode.MESSAGE_TOO_BIG


async def read_capped(response: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body, read chunk by chunk and refused (WireError) as soon as it passes `cap` bytes."""
    if response.content_length is not None and response.content_length > cap:
        raise WireError(f"answer of {response.content_length} bytes is over the {cap}-byte cap")
    body = bytearray()
    async for chunk in response.content.iter_chunked(_READ_CHUNK):
        body += chunk
        if len(body) > cap:
            raise WireError(f"answer over the {cap}-byte cap")
    return bytes(body)


def _object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = wire.decode(raw)
    except ValueError:
        raise WireError(f"{what}: not JSON") from None
    if not isinstance(value, dict):
        raise WireError(f"{what}: expected object, got {type(value).__name__}")
    return value


def _own_node(body: bytes) -> tuple[Snapshot, bytes]:
    """The first (the peer's own) snapshot of a `/api/system/metrics` list, validated, and its bytes."""
    try:
        nodes = wire.decode(body)
    except ValueError:
        raise WireError("answer: not JSON") from None
    if not isinstance(nodes, list) or not nodes:
        raise WireError("answer: expected a non-empty list of snapshots")
    snapshot = wire.snapshot_from_wire(nodes[0])
    stripped = body.strip()
    if len(nodes) == 1 and stripped.startswith(b"[") and stripped.endswith(b"]"):
        return snapshot, stripped[1:-1].strip()
    return snapshot, wire.encode(nodes[0])  # a peer that lists its own peers too


def public_url(url: str) -> str:
    """`url` without `user:password@`: the form shown in /api/system/nodes, metrics and logs."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.WSServerHandshakeError | aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ---------------------------------------------------------------- app wiring and handlers

PEERS = web.AppKey("peers", PeerSet)


def setup_peers(app: web.Application) -> PeerSet:
    """Attach the PeerSet (empty when no --peer) and, if there are peers, their follower task."""
    config = app[keys.CONFIG]
    peers = app[PEERS] = PeerSet(
        config.peers, local_node_id=app[keys.SAMPLER].node_id, bus=app[keys.BUS], interval=config.interval
    )
    if peers.peers:
        app.cleanup_ctx.append(_following)
    return peers


async def _following(app: web.Application) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_SECONDS)
    # No pool limit: each followed peer holds one connection for good (the default caps at 100).
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        task = asyncio.create_task(app[PEERS].run(session), name="tracklab-sysmon-peers")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def node_snapshots(app: web.Application) -> list[tuple[str, bytes]]:
    """Every served node's latest snapshot bytes, the local node first."""
    sampler = app[keys.SAMPLER]
    peers = app[PEERS].live() if PEERS in app else []
    return [(sampler.node_id, sampler.latest_bytes), *((p.node_id or "", p.latest or b"null") for p in peers)]


def served_snapshots(app: web.Application) -> list[Snapshot]:
    """Every served node's latest typed snapshot, the local node first: the nodes of `node_snapshots`, in its order."""
    latest = app[keys.SAMPLER].latest
    peers = app[PEERS].live() if PEERS in app else []
    # A live peer holds both forms (accept() sets them together); none before the first tick.
    return [*([latest] if latest is not None else []), *(p.snapshot for p in peers if p.snapshot is not None)]


def missing_node(app: web.Application, node_id: str) -> web.Response:
    """The error for a `?node_id=` that is not served: 503 for a peer that is down, else 404."""
    peer = app[PEERS].find(node_id) if PEERS in app else None
    if peer is not None and peer.status == "down":
        return json_error(503, f"node {node_id!r} is down (last seen {peer.last_seen} ms)", "node_down")
    if peer is not None and peer.status == "error":
        return json_error(503, f"node {node_id!r} sent an answer this node refused: {peer.error}", "node_error")
    return json_error(404, f"unknown node_id {node_id!r}")


async def nodes(request: web.Request) -> web.Response:
    """GET /api/system/nodes: [{nodeId, url, status, lastSeen, ...}], the local node first."""
    app = request.app
    sampler = app[keys.SAMPLER]
    local = NodeEntry(
        node_id=sampler.node_id, url=str(request.url.origin()), status="up",
        last_seen=sampler.latest.timestamp if sampler.latest else None, local=True,
        transport=None, error=None, duplicate_of=None,
    )
    peers = app[PEERS].peers if PEERS in app else []
    body = wire.encode([node_body(entry) for entry in (local, *(p.entry() for p in peers))])
    return web.Response(body=body, content_type="application/json")
