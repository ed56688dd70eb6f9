"""The `/ws/system-metrics` message shapes: frames built as bytes once, client messages parsed strictly."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson

from ..errors import BadMessage
from ..wire import nesting_depth

WS_PATH = "/ws/system-metrics"
MAX_EVERY = 86_400  # one frame a day at 1 Hz is the sparsest subscription that makes sense
MAX_MESSAGE_BYTES = 4096  # a client message may be this big (4 KiB) and no bigger
# Real messages nest 1 level; 16 leaves room for a structured ping id. orjson parses up to 1024
# levels but encodes only 254, and repr() of a deep value overflows the stack: both must be refused.
MAX_MESSAGE_DEPTH = 16
_SHOWN_CHARS = 60  # a client's value quoted in an error message is cut to this length
_TEXT_FIN = 0x81  # FIN bit + text opcode; server frames are never masked (RFC 6455 5.1)


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
