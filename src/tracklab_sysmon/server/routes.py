"""REST handlers: thin adapters over the sampler's cached bytes; no collection per request."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from aiohttp import web

from .. import __version__, hotpath, protocol, wire
from ..collectors.backend import backend_health
from ..collectors.nvidia import profiling_health
from . import keys, peers, prometheus_route
from .errors import json_error
from .writes import HISTORY_STREAMS, stream_json_list

JSON = "application/json"


def _json_bytes(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


async def health(request: web.Request) -> web.Response:
    app = request.app
    sampler = app[keys.SAMPLER]
    config = app[keys.CONFIG]
    loop = sampler.health()
    body = protocol.health_body(protocol.Health(
        status=loop.status,
        stalled=loop.stalled,
        last_tick_age_ms=loop.last_tick_age_ms,
        failed_ticks=loop.failed_ticks,
        node_id=sampler.node_id,
        version=__version__,
        uptime=round(time.monotonic() - app[keys.STARTED_AT], 3),
        backend=hotpath.BACKEND,
        backend_reason=hotpath.BACKEND_REASON,
        interval=sampler.interval,
        ticks=sampler.ticks,
        last_tick=sampler.latest.timestamp if sampler.latest else None,
        collectors=sampler.status,
        pid=os.getpid(),
        cpu_percent=sampler.own_cpu_percent,
        rss=sampler.own_rss,
        dcgm=profiling_health(sampler.collectors, config.enable_dcgm),
        collectors_backend=backend_health(sampler.collectors),
    ))
    return _json_bytes(wire.encode(body))


async def system_info(request: web.Request) -> web.Response:
    return _json_bytes(request.app[keys.SYSTEM_INFO_BYTES])


async def metrics(request: web.Request) -> web.Response:
    nodes = peers.node_snapshots(request.app)  # the local node first, then live peers
    node_id = request.query.get("node_id")
    if node_id is not None:
        nodes = [node for node in nodes if node[0] == node_id]
        if not nodes:
            return peers.missing_node(request.app, node_id)
    return _json_bytes(b"[" + b",".join(body for _, body in nodes) + b"]")


async def history(request: web.Request) -> web.StreamResponse:
    sampler = request.app[keys.SAMPLER]
    query = request.query
    node_id = query.get("node_id")
    if node_id is not None and node_id != sampler.node_id:
        peer = request.app[peers.PEERS].find(node_id)
        if peer is not None:  # history stays where it is sampled; aggregators keep only the latest
            return json_error(404, f"history is kept by each node: ask {peer.url} for {node_id!r}")
        return json_error(404, f"unknown node_id {node_id!r}")
    try:
        since = _int_param(query, "since", 0, None)
        limit = _int_param(query, "limit", 1, sampler.ring.capacity)
    except ValueError as exc:
        return json_error(400, str(exc))
    slots = request.app[HISTORY_STREAMS]
    if not slots.try_acquire():  # each stream holds up to a chunk and a socket buffer: bound their number
        return json_error(
            503, f"{slots.limit} history responses are being written (--max-history-streams); retry shortly",
            "busy", **{"Retry-After": "1"},
        )
    try:
        # The ring's own bytes, sent in chunks: nothing the size of the whole history is built.
        items = sampler.ring.select(since, limit)
        return await stream_json_list(request, items, request.app[keys.CONFIG].write_timeout)
    finally:
        slots.release()


def _int_param(query: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    # ASCII digits only: int() would also take "+3", " 3", "1_0" and other scripts' digits ("٣").
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"{name} must be a whole number in ASCII digits (0-9), got {raw!r}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bound = f"{low}-{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


ROUTES = [
    web.get("/api/health", health),
    web.get("/api/system/info", system_info),
    web.get("/api/system/metrics", metrics),
    web.get("/api/system/metrics/history", history),
    web.get("/api/system/nodes", peers.nodes),
    web.get("/metrics", prometheus_route.metrics),
]
