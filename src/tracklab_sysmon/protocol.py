"""The service's protocol beyond the snapshot itself: paths, auth, REST bodies and WebSocket frames.

Shared by the server, the client and the FastAPI relay, so it imports nothing of `server/`. With
`wire` (the snapshot's JSON), it is the only module that spells the service's JSON names.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import orjson

from .errors import BadMessage
from .wire import nesting_depth

WS_PATH = "/ws/system-metrics"
TOKEN_ENV = "TRACKLAB_SYSMON_TOKEN"  # the variable `serve --token`, the client and the relay read
MAX_EVERY = 86_400  # one frame a day at 1 Hz is the sparsest subscription that makes sense
MAX_MESSAGE_BYTES = 4096  # a client message may be this big (4 KiB) and no bigger
# Real messages nest 1 level; 16 leaves room for a structured ping id. orjson parses up to 1024
# levels but encodes only 254, and repr() of a deep value overflows the stack: both must be refused.
MAX_MESSAGE_DEPTH = 16
_SHOWN_CHARS = 60  # a client's value quoted in an error message is cut to this length
_TEXT_FIN = 0x81  # FIN bit + text opcode; server frames are never masked (RFC 6455 5.1)


def auth_headers(token: str | None) -> dict[str, str]:
    """`Authorization: Bearer <token>` for a service started with `--token`; nothing without one."""
    return {"Authorization": f"Bearer {token}"} if token else {}


# ---------------------------------------------------------------- REST bodies


class CollectorHealth(Protocol):
    """What /api/health says of one collector (the sampler's `CollectorStatus`)."""

    @property
    def state(self) -> str: ...
    @property
    def last_error(self) -> str | None: ...
    @property
    def last_duration_ms(self) -> float | None: ...
    @property
    def last_success(self) -> int | None: ...
    @property
    def failures(self) -> int: ...


def collector_body(status: CollectorHealth) -> dict[str, Any]:
    return {
        "status": status.state,
        "lastError": status.last_error,
        "lastDurationMs": status.last_duration_ms,
        "lastSuccess": status.last_success,
        "failures": status.failures,
    }


@dataclass(frozen=True, slots=True)
class Health:
    """Everything /api/health reports, named in Python terms."""

    status: str  # "healthy" or "degraded"
    stalled: bool
    last_tick_age_ms: float | None
    failed_ticks: int
    node_id: str
    version: str
    uptime: float
    backend: str
    backend_reason: str | None  # why the Python twin serves; None with the C helper
    interval: float
    ticks: int
    last_tick: int | None
    collectors: Mapping[str, CollectorHealth]
    pid: int
    cpu_percent: float | None
    rss: int | None
    dcgm: Mapping[str, Any]
    collectors_backend: Mapping[str, Any]


def health_body(health: Health) -> dict[str, Any]:
    return {
        "status": health.status,
        "stalled": health.stalled,
        "lastTickAgeMs": health.last_tick_age_ms,
        "failedTicks": health.failed_ticks,
        "service": "system_monitor",
        "nodeId": health.node_id,
        "version": health.version,
        "uptime": health.uptime,
        "backend": health.backend,
        "backendReason": health.backend_reason,
        "interval": health.interval,
        "ticks": health.ticks,
        "lastTick": health.last_tick,
        "collectors": {name: collector_body(status) for name, status in health.collectors.items()},
        "process": {"pid": health.pid, "cpuPercent": health.cpu_percent, "rss": health.rss},
        "dcgm": dict(health.dcgm),
        "collectorsBackend": dict(health.collectors_backend),
    }


@dataclass(frozen=True, slots=True)
class NodeEntry:
    """One row of /api/system/nodes: this node or a peer it follows."""

    node_id: str | None
    url: str  # without credentials
    status: str  # up, down, error, duplicate, pending
    last_seen: int | None  # ms since the epoch
    local: bool
    transport: str | None  # websocket or polling; None for the local node
    error: str | None
    duplicate_of: str | None


def node_body(entry: NodeEntry) -> dict[str, Any]:
    return {
        "nodeId": entry.node_id, "url": entry.url, "status": entry.status, "lastSeen": entry.last_seen,
        "local": entry.local, "transport": entry.transport, "error": entry.error, "duplicateOf": entry.duplicate_of,
    }


# ---------------------------------------------------------------- WebSocket frames


def frame_node_id(frame: Mapping[str, Any]) -> object:
    """The node a `metrics` or `subscribed` frame is about."""
    return frame.get("nodeId")


@dataclass(frozen=True, slots=True)
class Subscribe:
    node_id: str | None  # None: every node
    every: int


@dataclass(frozen=True, slots=True)
class Ping:
    id: object = None  # echoed in the pong when given, so a client can match round trips


def metrics_payload(node_id: str, encoded: bytes) -> bytes:
    """`{"type":"metrics","nodeId":...,"data":<snapshot>}` around already-encoded snapshot bytes."""
    return _metrics_head(node_id) + encoded + b"}"


def metrics_data(frame: bytes, node_id: str) -> bytes | None:
    """The snapshot bytes inside a `metrics` frame built by `metrics_payload`; None for any other layout."""
    head = _metrics_head(node_id)
    if frame.startswith(head) and frame.endswith(b"}"):
        return frame[len(head):-1]
    return None


def subscribe_message(node_id: str | None, every: int = 1) -> str:
    """The client's `subscribe` message (an aggregator following a peer sends it)."""
    body: dict[str, object] = {"type": "subscribe", "nodeId": node_id}
    if every != 1:
        body["every"] = every
    return orjson.dumps(body).decode()


def _metrics_head(node_id: str) -> bytes:
    return b'{"type":"metrics","nodeId":' + orjson.dumps(node_id) + b',"data":'


def info_payload(encoded_info: bytes) -> bytes:
    return b'{"type":"info","data":' + encoded_info + b"}"


def pong_payload(ping: Ping) -> bytes:
    return b'{"type":"pong"}' if ping.id is None else orjson.dumps({"type": "pong", "id": ping.id})


def subscribed_payload(sub: Subscribe) -> bytes:
    return orjson.dumps({"type": "subscribed", "nodeId": sub.node_id, "every": sub.every})


def error_payload(code: str, message: str) -> bytes:
    """Same `error` object as the REST error bodies, tagged as a frame."""
    return orjson.dumps({"type": "error", "error": {"code": code, "message": message}})


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked WebSocket text frame: built once, written to every socket as is."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", _TEXT_FIN, size)
    elif size < 65536:
        header = struct.pack("!BBH", _TEXT_FIN, 126, size)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, size)
    return header + payload


def parse_message(text: str | bytes) -> Subscribe | Ping:
    """One client message; raises `BadMessage` with a reason a person can act on."""
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise BadMessage("bad_message", "message is not JSON") from None
    if nesting_depth(message, MAX_MESSAGE_DEPTH) > MAX_MESSAGE_DEPTH:
        raise BadMessage("bad_message", f"message nests deeper than {MAX_MESSAGE_DEPTH} levels")
    if not isinstance(message, dict):
        raise BadMessage("bad_message", "message must be a JSON object with a \"type\"")
    kind = message.get("type")
    if kind == "ping":
        return Ping(message.get("id"))
    if kind == "subscribe":
        return _subscribe(message)
    raise BadMessage("unknown_type", f"unknown message type {_shown(kind)}; expected 'subscribe' or 'ping'")


def _subscribe(message: dict[str, object]) -> Subscribe:
    node_id = message.get("nodeId")
    if node_id is not None and (not isinstance(node_id, str) or not node_id):
        raise BadMessage("bad_message", "nodeId must be a non-empty string or null")
    every = message.get("every", 1)
    if isinstance(every, bool) or not isinstance(every, int) or not 1 <= every <= MAX_EVERY:
        raise BadMessage("bad_message", f"every must be an integer 1-{MAX_EVERY}, got {_shown(every)}")
    return Subscribe(node_id, every)


def _shown(value: object) -> str:
    """A client's value quoted in an error message: repr of a shallow value, cut short."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def origin_allowed(origin: str | None, *, scheme: str, host: str, allowed: tuple[str, ...],
                   authenticated: bool = False) -> bool:
    """Browser pages may connect only from this service's own origin or an allowed one.

    No `Origin` header means a non-browser client, which no other site can drive. Same-origin
    counts only for an address (or `localhost`) in `Host`, or when a token guards the service:
    a page on `evil.example` that re-binds its name to 127.0.0.1 is same-origin by name only.
    """
    if origin is None:
        return True
    try:
        origin = normalize_origin(origin)
        if "*" in allowed or origin in allowed:
            return True
        if origin != normalize_origin(f"{scheme}://{host}"):
            return False
        return authenticated or is_address(urlsplit(origin).hostname or "")
    except ValueError:  # a malformed Origin or Host is nobody's origin: refuse, never a 500
        return False


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]` in lower case, default port dropped, so equal origins compare equal.

    Raises ValueError for text that is not a URL at all (say `http://[`).
    """
    parts = urlsplit(origin.strip().lower())
    if not parts.scheme or not parts.hostname:
        return origin.strip().lower()
    default = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return origin.strip().lower()
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def is_address(hostname: str) -> bool:
    """An IP literal or `localhost`: a name no other site can re-point (DNS rebinding) at this service."""
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True
