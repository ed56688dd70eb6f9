"""Peer aggregation: follow other nodes' latest snapshots (WebSocket, else polling) and republish them.

Every peer has one task; handlers only read the in-memory state, so a slow or dead peer never
delays the local node. A peer's own node is the one its `info` frame (or first snapshot) names;
frames about other nodes (the peer's own peers) are ignored, so aggregators never loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from .. import wire
from ..config import PeerSpec
from . import keys
from .bus import SnapshotBus
from .errors import json_error
from .ws_protocol import WS_PATH

log = logging.getLogger(__name__)

METRICS_PATH = "/api/system/metrics"
CONNECT_SECONDS = 2.0  # a peer that cannot answer this fast counts as down
BACKOFF_SECONDS = (0.5, 1.0, 2.0, 5.0)  # between attempts while a peer stays down
MAX_FRAME_BYTES = 4 << 20


class _NoWebSocket(Exception):
    """The peer has no WebSocket endpoint (an older build): poll it instead."""


@dataclass(slots=True)
class PeerState:
    """What this node knows about one peer; `latest` keeps the last snapshot even while down."""

    spec: PeerSpec
    node_id: str | None = None
    status: str = "connecting"  # connecting | up | down | duplicate
    last_seen: int | None = None  # ms since the epoch, when the last snapshot arrived
    latest: bytes | None = None  # wire JSON of the last snapshot
    transport: str | None = None  # websocket | polling
    error: str | None = None
    duplicate_of: str | None = None  # url of the node already holding node_id ("local": this one)

    def to_wire(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id, "url": self.spec.url, "status": self.status,
            "lastSeen": self.last_seen, "local": False, "transport": self.transport,
            "error": self.error, "duplicateOf": self.duplicate_of,
        }


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

    def accept(self, peer: PeerState, snapshot: dict[str, Any], encoded: bytes | None = None) -> None:
        """Store one snapshot of `peer`'s own node; publish it unless its id is taken."""
        node_id = snapshot.get("node_id") if isinstance(snapshot, dict) else None
        if not isinstance(node_id, str) or not node_id:
            raise ValueError("snapshot without a node_id")
        peer.node_id, peer.last_seen, peer.error = node_id, int(self._wall() * 1000), None
        peer.latest = encoded if encoded is not None else wire.encode(snapshot)
        holder = self._holder(node_id, peer)
        if holder is not None:
            if peer.status != "duplicate":
                log.warning("peer %s claims node id %r already held by %s", peer.spec.url, node_id, holder)
            peer.status, peer.duplicate_of = "duplicate", holder
            return
        if peer.status != "up":
            log.info("peer %s (%s) is up via %s", peer.spec.url, node_id, peer.transport)
        peer.status, peer.duplicate_of = "up", None
        self._bus.publish(node_id, peer.latest)

    def mark_down(self, peer: PeerState, error: str) -> None:
        if peer.status != "down":
            log.warning("peer %s is down: %s", peer.spec.url, error)
        peer.status, peer.error = "down", error

    def _holder(self, node_id: str, peer: PeerState) -> str | None:
        if node_id == self.local_node_id:
            return "local"
        for other in self.peers:
            if other is not peer and other.node_id == node_id and other.status in ("up", "down"):
                return other.spec.url
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
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, LookupError, TypeError) as exc:
                self.mark_down(peer, _describe(exc))
                use_ws = True  # it may come back as a newer build
            except Exception as exc:  # a follower must never die: that peer would vanish for good
                log.exception("following peer %s failed", peer.spec.url)
                self.mark_down(peer, _describe(exc))
            attempts = 0 if peer.last_seen != seen else attempts + 1
            await asyncio.sleep(BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS) - 1)])

    async def _stream(self, peer: PeerState, session: aiohttp.ClientSession) -> None:
        """Follow the peer's WebSocket until it closes or goes quiet."""
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                ws = await session.ws_connect(
                    peer.spec.url + WS_PATH, headers=_auth(peer.spec), heartbeat=self.stale_after,
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
                msg = await asyncio.wait_for(ws.receive(), self.stale_after)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionResetError(f"stream closed ({msg.type.name.lower()})")
                frame = wire.decode(msg.data)
                kind, data = frame.get("type"), frame.get("data")
                if kind == "info" and isinstance(data, dict):
                    own = data.get("node_id") or own
                    if own:  # only the peer's own frames, not those of its peers
                        await ws.send_str('{"type":"subscribe","nodeId":%s}' % wire.encode(own).decode())
                elif kind == "metrics" and isinstance(data, dict):
                    own = own or data.get("node_id")
                    if data.get("node_id") == own:
                        self.accept(peer, data)

    async def _poll(self, peer: PeerState, session: aiohttp.ClientSession) -> None:
        """GET the peer's metrics once per interval; its own node comes first in the list."""
        peer.transport = "polling"
        timeout = aiohttp.ClientTimeout(total=min(CONNECT_SECONDS, self.stale_after))
        while True:
            async with session.get(
                peer.spec.url + METRICS_PATH, headers=_auth(peer.spec), timeout=timeout
            ) as response:
                if response.status != 200:
                    raise aiohttp.ClientResponseError(
                        response.request_info, (), status=response.status, message=response.reason or ""
                    )
                nodes = wire.decode(await response.read())
            self.accept(peer, nodes[0])
            await asyncio.sleep(self.interval)


def _auth(spec: PeerSpec) -> dict[str, str]:
    return {"Authorization": f"Bearer {spec.token}"} if spec.token else {}


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


def missing_node(app: web.Application, node_id: str) -> web.Response:
    """The error for a `?node_id=` that is not served: 503 for a peer that is down, else 404."""
    peer = app[PEERS].find(node_id) if PEERS in app else None
    if peer is not None and peer.status == "down":
        return json_error(503, f"node {node_id!r} is down (last seen {peer.last_seen} ms)", "node_down")
    return json_error(404, f"unknown node_id {node_id!r}")


async def nodes(request: web.Request) -> web.Response:
    """GET /api/system/nodes: [{nodeId, url, status, lastSeen, ...}], the local node first."""
    app = request.app
    sampler = app[keys.SAMPLER]
    local = {
        "nodeId": sampler.node_id, "url": str(request.url.origin()), "status": "up",
        "lastSeen": sampler.latest.timestamp if sampler.latest else None, "local": True,
        "transport": None, "error": None, "duplicateOf": None,
    }
    peers = app[PEERS].peers if PEERS in app else []
    body = wire.encode([local, *(p.to_wire() for p in peers)])
    return web.Response(body=body, content_type="application/json")
