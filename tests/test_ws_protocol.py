"""Pure parts of the WebSocket protocol: frame bytes, message parsing, origin rules, and their config."""

from __future__ import annotations

import struct
import subprocess
import sys

import orjson
import pytest

from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.errors import ConfigError
from tracklab_sysmon.protocol import (
    BadMessage,
    Ping,
    Subscribe,
    metrics_payload,
    normalize_origin,
    origin_allowed,
    parse_message,
    text_frame,
)


@pytest.mark.parametrize(("size", "header"), [
    (0, b"\x81\x00"),
    (125, b"\x81\x7d"),
    (126, b"\x81\x7e" + struct.pack("!H", 126)),
    (65535, b"\x81\x7e" + struct.pack("!H", 65535)),
    (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
])
def test_text_frame_uses_the_shortest_length_encoding(size, header):
    """A frame is FIN+text, unmasked, with the 7-, 16- or 64-bit length RFC 6455 requires at each size."""
    payload = b"x" * size
    assert text_frame(payload) == header + payload


def test_metrics_payload_wraps_encoded_bytes_without_reencoding():
    """The snapshot bytes are embedded as they are, and the node id is JSON-escaped."""
    frame = orjson.loads(metrics_payload('odd "node"', b'{"cpu":{"overall":1.5}}'))
    assert frame == {"type": "metrics", "nodeId": 'odd "node"', "data": {"cpu": {"overall": 1.5}}}


@pytest.mark.parametrize(("text", "expected"), [
    ('{"type": "ping"}', Ping()),
    ('{"type": "ping", "id": "a"}', Ping("a")),
    ('{"type": "subscribe"}', Subscribe(None, 1)),
    ('{"type": "subscribe", "nodeId": null, "every": 86400}', Subscribe(None, 86400)),
    ('{"type": "subscribe", "nodeId": "n1", "every": 2}', Subscribe("n1", 2)),
])
def test_valid_messages_parse(text, expected):
    """Each documented client message parses to its record, with `every` defaulting to 1."""
    assert parse_message(text) == expected


@pytest.mark.parametrize("text", [
    '{"type": "subscribe", "every": 86401}', '{"type": "subscribe", "every": -1}',
    '{"type": "subscribe", "nodeId": ""}', '{"type": "subscribe", "every": "2"}', "null", "",
])
def test_invalid_messages_say_why(text):
    """A malformed message raises BadMessage with a code and a message naming the problem."""
    with pytest.raises(BadMessage) as error:
        parse_message(text)
    assert error.value.code == "bad_message" and str(error.value)


@pytest.mark.parametrize(("origin", "normal"), [
    ("HTTP://Example.COM:80/", "http://example.com"),
    ("https://example.com:443", "https://example.com"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("null", "null"),
])
def test_normalize_origin(origin, normal):
    """Origins compare equal regardless of case, trailing slash and default port."""
    assert normalize_origin(origin) == normal


def test_same_origin_by_name_needs_an_address_or_a_token():
    """A same-origin page on a DNS name is refused unless a token guards the service (DNS rebinding)."""
    same = {"scheme": "http", "host": "metrics.example:8080", "allowed": ()}
    assert not origin_allowed("http://metrics.example:8080", **same)
    assert origin_allowed("http://metrics.example:8080", **same, authenticated=True)
    assert origin_allowed("http://localhost:8080", scheme="http", host="localhost:8080", allowed=())
    assert origin_allowed("http://[::1]:8080", scheme="http", host="[::1]:8080", allowed=())


@pytest.mark.parametrize(("options", "message"), [
    ({"max_ws_clients": 0}, "max WebSocket clients"),
    ({"allow_origins": ("ftp://x",)}, "allowed origin"),
    ({"allow_origins": ("http://x/path",)}, "allowed origin"),
    ({"allow_origins": ("localhost:3000",)}, "allowed origin"),
])
def test_config_rejects_bad_websocket_options(options, message):
    """ServiceConfig refuses a client cap below 1 and origins that are not scheme://host[:port] or *."""
    with pytest.raises(ConfigError, match=message):
        ServiceConfig(**options)


def test_cli_bad_allow_origin_is_one_line_and_nonzero():
    """`serve --allow-origin` with a malformed origin exits non-zero with one readable line."""
    result = subprocess.run(
        [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--allow-origin", "example.com"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and "allowed origin" in result.stderr


@pytest.mark.parametrize("origin", ["http://[", "http://[::1", "http://h:99999", "http://h:port"])
def test_malformed_origin_fails_the_check(origin):
    """An Origin that is not a valid URL is refused (False), never an exception, even with `*`-free lists."""
    for host in ("127.0.0.1:8080", "[", "h:99999"):
        assert origin_allowed(origin, scheme="http", host=host, allowed=("http://app.example",)) is False
    assert origin_allowed("http://127.0.0.1:8080", scheme="http", host="[", allowed=()) is False
