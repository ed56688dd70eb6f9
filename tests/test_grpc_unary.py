"""The TPU client's transport (_grpc_unary): unary gRPC calls over one kept HTTP/2 connection, against a scripted
HTTP/2 server (tests/h2_script_server.py) that writes exact frames, and against grpcio's server (the TPU stand-in)."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing

import pytest
from h2_script_server import (
    GRPC_HEADERS,
    MAX_FRAME,
    OK_TRAILERS,
    Conn,
    Script,
    ScriptServer,
    answer_frames,
    data_frames,
    message,
)
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tpu_standin import StandInServer, StandInService, response

from tracklab_sysmon import _grpc_unary, _tpu
from tracklab_sysmon._grpc_unary import MAX_MESSAGE, RpcError, UnaryChannel, is_loopback

PATH = "/test.Probe/Ask"
REQUEST = b"which metric?"
PAYLOAD = b"answer \x00\xff"
TIMEOUT = 2.0  # seconds: every call here is answered, or ended, long before
START = 1000.0  # the fake clock's first reading


def answer(payload: bytes = PAYLOAD) -> Script:
    """The normal answer: headers, one message carrying `payload`, trailers with grpc-status 0."""
    return lambda conn, stream: conn.answer(stream, message(payload))


def then(*steps: Script) -> Script:
    """The scripts `steps`, one after the other."""

    def script(conn: Conn, stream: int) -> None:
        for step in steps:
            step(conn, stream)

    return script


@pytest.fixture
def quiet() -> Iterator[ScriptServer]:
    """A scripted server bound to its port, refusing connections until the test lets it listen."""
    server = ScriptServer(answer())
    yield server
    server.stop()


@pytest.fixture
def server(quiet: ScriptServer) -> ScriptServer:
    """A scripted server that answers every request normally unless a test plans other scripts."""
    return quiet.start()


@pytest.fixture
def channel(quiet: ScriptServer) -> Iterator[UnaryChannel]:
    with closing(UnaryChannel(quiet.address)) as made:
        yield made


class Clock:
    """Stands in for _grpc_unary's `time`: its monotonic() reads `now`, which only the test moves."""

    def __init__(self) -> None:
        self.now = START

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_grpc_unary, "time", fake)
    return fake


def call(channel: UnaryChannel, timeout: float = TIMEOUT) -> bytes:
    return channel.call(PATH, REQUEST, timeout)


def failure(channel: UnaryChannel, timeout: float = TIMEOUT) -> tuple[str, str]:
    """The (code, details) of the RpcError the call raises; any other outcome fails the test."""
    with pytest.raises(RpcError) as caught:
        call(channel, timeout)
    assert str(caught.value) == f"{caught.value.code}: {caught.value.details}"
    return caught.value.code, caught.value.details


def streams(server: ScriptServer) -> list[int]:
    """The stream id of each request the server received, in order (1 opens a new connection)."""
    return [stream for stream, _, _ in server.requests]


# ------------------------------------------------------------------ answers and the kept connection

@pytest.mark.usefixtures("clock")  # grpc-timeout: the whole timeout, as no time passes
def test_a_normal_answer_is_its_message_and_the_connection_is_kept(server, channel):
    """Two calls: each returns exactly the answer's message; both go on one connection (streams 1 and 3), each a
    gRPC POST whose grpc-timeout is the remaining deadline in tenths of a second."""
    assert [call(channel), call(channel)] == [PAYLOAD, PAYLOAD]
    assert server.connections == 1
    headers = {":method": "POST", ":scheme": "http", ":path": PATH, ":authority": server.address,
               "content-type": "application/grpc", "te": "trailers", "grpc-timeout": "2000m"}
    assert server.requests == [(1, headers, message(REQUEST)), (3, headers, message(REQUEST))]


def test_a_frame_sent_with_the_answers_end_is_counted_once(server, channel):
    """The answer and a connection WINDOW_UPDATE in one write: the update grows the send window once, the next call
    reading it (the answer's read stops at its end)."""
    server.plan(lambda conn, stream: conn.send(*answer_frames(conn.encoder, stream, message(PAYLOAD)),
                                               WindowUpdateFrame(0, 1000)))
    assert [call(channel), call(channel)] == [PAYLOAD, PAYLOAD]
    assert channel._send_window == 65535 + 1000 - 2 * len(message(REQUEST))


def plain_text_headers(conn: Conn, stream: int) -> None:
    """Headers that leave hpack's table as it is (never indexed), so the trailers after them are the bytes before."""
    block = Encoder().encode([NeverIndexedHeaderTuple(":status", "200"),
                              NeverIndexedHeaderTuple("content-type", "text/plain")])
    conn.send(HeadersFrame(stream, block, flags=("END_HEADERS",)), *data_frames(stream, message(PAYLOAD)))
    conn.headers(stream, OK_TRAILERS, end_stream=True)


def test_an_answer_after_one_that_passed_is_checked_in_full(server, channel):
    """Once answers passed (their header blocks decoded from the cache by then), an answer with their trailers (the
    very bytes) and other headers, then one with their headers and a status in its trailers, are each their error;
    then one passes again."""
    server.plan(answer(), answer(), plain_text_headers, lambda conn, stream: conn.answer(
        stream, message(PAYLOAD), trailers=[("grpc-status", "5"), ("grpc-message", "gone")]))
    assert [call(channel), call(channel)] == [PAYLOAD, PAYLOAD]
    assert failure(channel) == ("UNKNOWN", "the answer is not gRPC (content-type text/plain)")
    assert failure(channel) == ("NOT_FOUND", "gone")
    assert call(channel) == PAYLOAD
    assert server.connections == 1


def split_headers(conn: Conn, stream: int) -> None:
    block = conn.encoder.encode(list(GRPC_HEADERS))
    conn.send(HeadersFrame(stream, block[:3]), ContinuationFrame(stream, block[3:], flags=("END_HEADERS",)))
    conn.send(*answer_frames(conn.encoder, stream, message(PAYLOAD))[1:])


def message_in_pieces(conn: Conn, stream: int) -> None:
    body = message(PAYLOAD)
    conn.headers(stream, GRPC_HEADERS)
    conn.send(DataFrame(stream, body[:2]), DataFrame(stream, body[2:7], pad_length=9, flags=("PADDED",)),
              DataFrame(stream, body[7:]))
    conn.headers(stream, [("grpc-status", "0")], end_stream=True)


def chatter_between(conn: Conn, stream: int) -> None:
    frames = answer_frames(conn.encoder, stream, message(PAYLOAD))
    conn.send(frames[0], RstStreamFrame(stream - 2, error_code=8), frames[1],
              SettingsFrame(0, {SettingsFrame.MAX_CONCURRENT_STREAMS: 10}), frames[2])


@pytest.mark.parametrize("script", [split_headers, message_in_pieces, chatter_between])
def test_an_answer_in_other_valid_framings_is_its_message(server, channel, script):
    """The second call's answer with its headers continued in CONTINUATION, its message over several (padded) DATA
    frames, or connection frames and the first call's RST_STREAM in between: the same message, the same connection."""
    server.plan(answer(), script)
    assert [call(channel) for _ in range(3)] == [PAYLOAD] * 3
    assert streams(server) == [1, 3, 5]


def test_a_message_of_exactly_4_mib_is_returned(server, channel):
    """The largest message allowed (MAX_MESSAGE bytes) arrives whole."""
    big = bytes(range(256)) * (MAX_MESSAGE // 256)
    server.plan(answer(big))
    assert call(channel) == big


# ------------------------------------------------------------------ statuses: the call fails, the connection stays

def trailers_only(conn: Conn, stream: int) -> None:
    conn.headers(stream, [*GRPC_HEADERS, ("grpc-status", "5"), ("grpc-message", "metric%20x%25")], end_stream=True)


def http_status(status: int) -> Script:
    return lambda conn, stream: conn.headers(stream, [(":status", str(status))], end_stream=True)


def reset(code: int) -> Script:
    return lambda conn, stream: conn.send(RstStreamFrame(stream, error_code=code))


def body(data: bytes, trailers: tuple[tuple[str, str], ...] = (("grpc-status", "0"),)) -> Script:
    """Headers, `data` as the DATA frames' content (not necessarily one message), then `trailers`."""
    return lambda conn, stream: conn.answer(stream, data, trailers=trailers)


def not_grpc(conn: Conn, stream: int) -> None:
    conn.headers(stream, [(":status", "200"), ("content-type", "text/html")])
    conn.headers(stream, [("grpc-status", "0")], end_stream=True)


STATUS_ERRORS = {
    "trailers-only": (trailers_only, "NOT_FOUND", "metric x%"),
    "status-in-trailers": (body(b"", (("grpc-status", "14"), ("grpc-message", "busy"))), "UNAVAILABLE", "busy"),
    "unknown-grpc-status": (body(b"", (("grpc-status", "17"),)), "UNKNOWN", "status 17"),
    "http-503": (http_status(503), "UNAVAILABLE", "HTTP status 503"),
    "http-404": (http_status(404), "UNIMPLEMENTED", "HTTP status 404"),
    "http-500": (http_status(500), "UNKNOWN", "HTTP status 500"),
    "rst-refused": (reset(7), "UNAVAILABLE", "the service reset the call (HTTP/2 error 7)"),
    "rst-cancel": (reset(8), "CANCELLED", "the service reset the call (HTTP/2 error 8)"),
    "rst-internal": (reset(2), "INTERNAL", "the service reset the call (HTTP/2 error 2)"),
    "compressed": (body(message(PAYLOAD, compressed=True)), "INTERNAL", "the answer is not one uncompressed message"),
    "two-messages": (body(message(PAYLOAD) * 2), "INTERNAL", "the answer is not one uncompressed message"),
    "no-grpc-status": (body(message(PAYLOAD), (("grpc-note", "none"),)), "INTERNAL",
                       "the answer ended without a grpc-status"),
    "not-grpc": (not_grpc, "UNKNOWN", "the answer is not gRPC (content-type text/html)"),
}


@pytest.mark.parametrize(("script", "code", "details"), STATUS_ERRORS.values(), ids=STATUS_ERRORS.keys())
def test_a_status_answer_is_its_rpc_error_and_the_connection_is_kept(server, channel, script, code, details):
    """An answer that ends the call with a status (gRPC's, HTTP's, RST_STREAM's, or a malformed message) raises
    exactly that RpcError; the next call works on the same connection (stream 3)."""
    server.plan(script)
    assert failure(channel) == (code, details)
    assert call(channel) == PAYLOAD
    assert (server.connections, streams(server)) == (1, [1, 3])


# ------------------------------------------------------------------ broken answers: the call fails, the connection goes

def data_first(conn: Conn, stream: int) -> None:
    conn.send(DataFrame(stream, message(PAYLOAD), flags=("END_STREAM",)))


def oversized_frame(conn: Conn, stream: int) -> None:
    conn.headers(stream, GRPC_HEADERS)
    conn.send(DataFrame(stream, bytes(MAX_FRAME + 1)))


def broken_header_block(conn: Conn, stream: int) -> None:
    conn.send(HeadersFrame(stream, conn.encoder.encode(list(GRPC_HEADERS))), DataFrame(stream, message(PAYLOAD)))


def other_streams_headers(conn: Conn, stream: int) -> None:
    conn.headers(stream + 2, GRPC_HEADERS)


def goaway(last: int, error: int = 0) -> Script:
    return lambda conn, stream: conn.goaway(last, error)


def goaway_then_answer(error: int) -> Script:
    def script(conn: Conn, stream: int) -> None:
        conn.goaway(stream, error)
        conn.answer(stream, message(PAYLOAD))

    return script


BROKEN = {
    "data-before-headers": (data_first, "INTERNAL", "DATA before the answer's headers"),
    "over-4-mib": (body(message(bytes(MAX_MESSAGE + 1))), "RESOURCE_EXHAUSTED", "an answer over 4 MiB"),
    "frame-over-16-kib": (oversized_frame, "INTERNAL", "a 16385-byte frame (at most 16384 were allowed)"),
    "garbage": (lambda conn, stream: conn.send(b"garbage!" * 4), "INTERNAL",
                "a 6775154-byte frame (at most 16384 were allowed)"),
    "ping-of-7-bytes": (lambda conn, stream: conn.send(b"\0\0\x07\x06\0\0\0\0\0" + bytes(7)), "INTERNAL",
                        "an invalid PingFrame: PING frame must have 8 byte length: got 7"),
    "headers-on-stream-0": (lambda conn, stream: conn.send(b"\0\0\0\x01\x04\0\0\0\0"), "INTERNAL",
                            "an invalid frame header: Stream ID must be non-zero for HeadersFrame"),
    "undecodable-headers": (lambda conn, stream: conn.send(HeadersFrame(stream, b"\xbe", flags=("END_HEADERS",))),
                            "INTERNAL", "undecodable headers: Invalid table index 62"),  # the dynamic table is empty
    "header-block-broken-off": (broken_header_block, "INTERNAL", "a header block broken off by another frame"),
    "headers-on-another-stream": (other_streams_headers, "INTERNAL",
                                  "headers on stream 3, which this call did not open"),
    "goaway-with-error": (goaway_then_answer(2), "UNAVAILABLE",
                          "the service closed the connection (GOAWAY, HTTP/2 error 2)"),
    "goaway-on-a-new-connection": (goaway(0), "UNAVAILABLE",
                                   "the service closed the connection (GOAWAY, HTTP/2 error 0)"),
    "ended-on-a-new-connection": (lambda conn, stream: conn.close_write(), "UNAVAILABLE",
                                   "the service at {address} closed the connection"),
}


@pytest.mark.parametrize(("script", "code", "details"), BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_answer_is_an_rpc_error_and_the_next_call_connects_again(server, channel, script, code, details):
    """An answer that breaks the protocol (or a service that gives up on a new connection) raises exactly that
    RpcError, once (a new connection is not retried); the next call works on a new connection."""
    server.plan(script)
    assert failure(channel) == (code, details.format(address=server.address))
    assert call(channel) == PAYLOAD
    assert (server.connections, streams(server)) == (2, [1, 1])


def test_an_answer_that_never_comes_is_deadline_exceeded_at_the_deadline(server, channel):
    """A service that takes the call and never answers: DEADLINE_EXCEEDED once the timeout has passed (not before,
    and not much after); the late answer's connection is dropped and the next call connects again."""
    server.plan(lambda conn, stream: None)
    began = time.monotonic()
    assert failure(channel, 0.3) == ("DEADLINE_EXCEEDED", "the service did not answer within the deadline")
    took = time.monotonic() - began
    assert 0.3 <= took < 2.3
    assert call(channel) == PAYLOAD
    assert (server.connections, streams(server)) == (2, [1, 1])


# ------------------------------------------------------------------ the service closing the kept connection

@pytest.mark.parametrize(("says_goaway", "drops"), [(True, False), (True, True), (False, True)],
                         ids=["goaway", "goaway-then-closed", "closed"])
def test_a_kept_connection_the_service_closed_costs_no_call(server, channel, says_goaway, drops):
    """The service says GOAWAY (last stream 0) after the first call, and/or closes the connection between the calls:
    the second call, refused on the kept connection, is made once more on a new one and succeeds."""
    server.plan(then(answer(), goaway(0)) if says_goaway else answer())
    assert call(channel) == PAYLOAD
    if drops:
        server.drop()
    assert call(channel) == PAYLOAD
    assert server.connections == 2


def test_a_goaway_that_takes_the_call_lets_it_finish_and_the_next_call_connects_again(server, channel):
    """GOAWAY with the call's own stream as the last one: the call is answered; the next one opens a new connection
    (on the old one the service would never answer it)."""
    server.plan(goaway_then_answer(0))
    assert [call(channel), call(channel)] == [PAYLOAD, PAYLOAD]
    assert (server.connections, streams(server)) == (2, [1, 1])


# ------------------------------------------------------------------ any bytes at all

def answer_bytes() -> bytes:
    """A complete normal answer on stream 1 as a new connection's hpack table encodes it."""
    return b"".join(frame.serialize() for frame in answer_frames(Encoder(), 1, message(PAYLOAD)))


VALID = answer_bytes()
FRAME_SHAPED = st.tuples(st.integers(0, 10), st.integers(0, 255), st.integers(0, 5), st.binary(max_size=24)).map(
    lambda f: len(f[3]).to_bytes(3, "big") + bytes(f[:2]) + f[2].to_bytes(4, "big") + f[3])  # type, flags, stream, body
ANY_ANSWER = st.one_of(
    st.binary(max_size=200),
    st.lists(FRAME_SHAPED, max_size=6).map(b"".join),
    st.integers(0, len(VALID)).map(lambda cut: VALID[:cut]),
    st.tuples(st.integers(0, len(VALID)), st.binary(min_size=1, max_size=12)).map(
        lambda at: VALID[:at[0]] + at[1] + VALID[at[0] + len(at[1]):]),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sent=ANY_ANSWER)
def test_any_bytes_after_the_settings_end_in_a_message_or_an_rpc_error(server, sent):
    """Whatever bytes follow the service's SETTINGS (then the end of what it sends): the call returns bytes or
    raises RpcError, never anything else, within its deadline."""
    server.default = then(lambda conn, stream: conn.send(sent), lambda conn, stream: conn.close_write())
    with closing(UnaryChannel(server.address)) as channel:
        began = time.monotonic()
        try:
            outcome: object = call(channel)
        except RpcError as exc:
            outcome = exc
        assert time.monotonic() - began < TIMEOUT + 1
    assert isinstance(outcome, bytes | RpcError)
    if sent == VALID:
        assert outcome == PAYLOAD


# ------------------------------------------------------------------ connection frames

def pinged_answer(conn: Conn, stream: int) -> None:
    conn.send(PingFrame(0, b"opaque:8"), PingFrame(0, b"its-ack!", flags=("ACK",)))
    conn.answer(stream, message(PAYLOAD))


def test_the_services_settings_and_pings_are_acknowledged(server, channel):
    """The service's SETTINGS get one ACK and its PING one ACK with the same 8 bytes; a PING ACK gets none."""
    server.plan(pinged_answer)
    assert [call(channel), call(channel)] == [PAYLOAD, PAYLOAD]  # the second answer: every ACK has arrived
    assert (server.settings_acks, server.ping_acks) == (1, [b"opaque:8"])
    assert server.client_settings == [{SettingsFrame.ENABLE_PUSH: 0,
                                       SettingsFrame.INITIAL_WINDOW_SIZE: MAX_MESSAGE + MAX_FRAME}]


def test_the_connection_window_is_topped_up_by_what_arrived_once_half_is_spent(server, channel, monkeypatch):
    """With a 70000-byte connection window: the first WINDOW_UPDATE opens it to 70000; no top-up after 30005 bytes
    of DATA; one of all 40010 once a further 10005 bytes pass 35000."""
    monkeypatch.setattr(_grpc_unary, "CONNECTION_WINDOW", 70_000)
    server.plan(answer(b"a" * 30_000), answer(b"b" * 10_000))
    assert [call(channel) for _ in range(3)] == [b"a" * 30_000, b"b" * 10_000, PAYLOAD]
    assert server.window_updates == [(0, 70_000 - 65_535), (0, 30_005 + 10_005)]


WIDE = dict.fromkeys(range(2000), 50.0)  # a 61928-byte answer


@pytest.fixture
def standin() -> Iterator[StandInServer]:
    running = StandInServer(StandInService({_tpu.DUTY_CYCLE: WIDE})).start()
    yield running
    running.stop()


def test_a_real_grpc_server_keeps_sending_past_the_first_connection_window(standin, monkeypatch):
    """grpcio's server, a 70000-byte connection window, five 62 KB answers: all arrive whole (without the client's
    WINDOW_UPDATEs grpcio stops after the first 70000 bytes)."""
    monkeypatch.setattr(_grpc_unary, "CONNECTION_WINDOW", 70_000)
    expected = response(_tpu.DUTY_CYCLE, WIDE).SerializeToString()
    with closing(UnaryChannel(standin.address)) as channel:
        answers = [channel.call(_tpu._METHOD, _tpu._REQUESTS[_tpu.DUTY_CYCLE], TIMEOUT) for _ in range(5)]
    assert (len(expected), answers) == (61928, [expected] * 5)


# ------------------------------------------------------------------ connecting

def test_a_call_during_the_back_off_fails_at_once_without_connecting(quiet, channel, clock):
    """A refused connection fails with the OS's reason; a call 0.2 s later fails, naming the time left, without
    connecting to the port that listens by then; a call at the back-off's end connects."""
    refused = f"failed to connect to {quiet.address}: Connection refused"
    assert failure(channel) == ("UNAVAILABLE", refused)
    quiet.listen()
    clock.now = START + 0.2
    assert failure(channel) == ("UNAVAILABLE", f"{refused} (next attempt in 0.3 s)")
    assert quiet.pending() is False
    quiet.start()
    clock.now = START + 0.5
    assert call(channel) == PAYLOAD
    assert quiet.connections == 1


def test_the_back_off_doubles_up_to_5_s_and_a_connection_resets_it(quiet, channel, clock):
    """Each refused connection doubles the wait before the next attempt (0.5 s, 1, 2, 4, then 5 s at most); after a
    connection, the first refusal waits 0.5 s again."""
    refused = f"failed to connect to {quiet.address}: Connection refused"
    seen = []
    for wait in (0.5, 1.0, 2.0, 4.0, 5.0, 5.0):
        seen += [failure(channel), failure(channel)]
        clock.now += wait
    assert seen == [outcome for wait in ("0.5", "1.0", "2.0", "4.0", "5.0", "5.0") for outcome in (
        ("UNAVAILABLE", refused), ("UNAVAILABLE", f"{refused} (next attempt in {wait} s)"))]
    quiet.start()
    assert call(channel) == PAYLOAD
    channel.close()
    quiet.stop()
    assert [failure(channel), failure(channel)] == [("UNAVAILABLE", refused),
                                                    ("UNAVAILABLE", f"{refused} (next attempt in 0.5 s)")]


@pytest.mark.parametrize(("address", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True), ("fe80::1%eth0", False),
    ("10.0.0.1", False), ("::ffff:10.0.0.1", False), ("not an ip", False),
])
def test_only_loopback_peers_are_accepted(address, loopback):
    """127.0.0.0/8, ::1 and 127.x mapped into IPv6 are loopback; other addresses, and non-addresses, are not."""
    assert is_loopback(address) is loopback


# ------------------------------------------------------------------ frames read straight from the buffer

def hyperframe_reads(raw: bytes) -> tuple[object, ...]:
    """What hyperframe makes of one frame's bytes, told as (type, END_STREAM/END_HEADERS bits, stream, data,
    flow-controlled length) for an answer's frames, (increment, stream) for a WINDOW_UPDATE, else its repr."""
    try:
        frame, length = Frame.parse_frame_header(memoryview(raw[:9]))
        frame.parse_body(memoryview(raw[9:9 + length]))
    except HyperframeError:
        return ("invalid",)
    if isinstance(frame, WindowUpdateFrame):
        return ("window", frame.window_increment, frame.stream_id)
    kinds = {DataFrame: _grpc_unary.DATA, HeadersFrame: _grpc_unary.HEADERS,
             ContinuationFrame: _grpc_unary.CONTINUATION}
    if type(frame) in kinds:
        flags = ("END_STREAM" in frame.flags) * _grpc_unary.END_STREAM | ("END_HEADERS" in frame.flags) * \
            _grpc_unary.END_HEADERS
        length = frame.flow_controlled_length if isinstance(frame, DataFrame) else None
        return (kinds[type(frame)], flags, frame.stream_id, frame.data, length)
    return ("other", repr(frame))


def channel_reads(raw: bytes) -> tuple[object, ...]:
    """The same, of the channel's `_frame` reading the bytes from its buffer."""
    channel = UnaryChannel("127.0.0.1:1")
    channel._buffer = bytearray(raw + b"next")
    try:
        frame = channel._frame(None, time.monotonic() + 1, fresh=False)
    except RpcError:
        return ("invalid",)
    assert channel._buffer[channel._at:] == b"next"  # the read position is past this frame, on the next one
    return told(frame)


def told(frame: object) -> tuple[object, ...]:
    """A frame the channel read, told as `hyperframe_reads` tells hyperframe's."""
    if isinstance(frame, _grpc_unary._Part):
        if frame.type == _grpc_unary.WINDOW_UPDATE:
            return ("window", int.from_bytes(frame.data, "big"), frame.stream_id)
        return (frame.type, frame.flags, frame.stream_id, frame.data,
                frame.length if frame.type == _grpc_unary.DATA else None)
    return ("other", repr(frame))


FRAMES = st.tuples(st.sampled_from([0x0, 0x1, 0x9, 0x8, 0x3, 0x4, 0x6, 0x7, 0x2, 0xA]), st.integers(0, 255),
                   st.sampled_from([0, 1, 3, 0x7FFFFFFF, 0x80000001, 0x80000000]), st.binary(max_size=40))


@settings(max_examples=1000, deadline=None)
@given(frame=FRAMES)
def test_frames_read_from_the_buffer_are_what_hyperframe_reads(frame):
    """Any frame (every type the client meets, any flags, reserved stream bit, padding and priority, short or
    malformed payloads): the channel's reading equals hyperframe's, and leaves the buffer at the next frame."""
    kind, flags, stream, payload = frame
    raw = len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
    assert channel_reads(raw) == hyperframe_reads(raw)


def ends_a_batch(frame: object) -> bool:
    """Whether no frame may follow `frame` in one `_incoming` list: one not read straight from the buffer, the end of
    a stream, or a header block's frame that leaves it open."""
    if not isinstance(frame, _grpc_unary._Part):
        return True
    opens = frame.type in (_grpc_unary.HEADERS, _grpc_unary.CONTINUATION) and not frame.flags & _grpc_unary.END_HEADERS
    return bool(frame.flags & _grpc_unary.END_STREAM) or opens


# An answer's frames as a service sends them (valid, no padding or priority), mixed with any frames.
ANSWER_FRAMES = st.tuples(st.sampled_from([0x0, 0x1, 0x9]), st.sampled_from([0, 1, 4, 5]), st.sampled_from([1, 3]),
                          st.binary(max_size=8)) | \
    st.tuples(st.just(0x8), st.just(0), st.sampled_from([0, 1]), st.integers(1, (1 << 31) - 1).map(
        lambda increment: increment.to_bytes(4, "big")))


@settings(max_examples=500, deadline=None)
@given(frames=st.lists(ANSWER_FRAMES | ANSWER_FRAMES | FRAMES, min_size=1, max_size=8))
def test_frames_read_together_are_each_what_hyperframe_reads(frames):
    """Frames one after the other in the buffer, read in lists (as a call reads its answer): each, in order, is what
    hyperframe reads of it, up to the first invalid one (an error once those before it were taken); a list ends
    where `ends_a_batch` says, and the read position stays right past its last frame."""
    raws = [len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload
            for kind, flags, stream, payload in frames]
    expected = []
    for raw in raws:
        expected.append(hyperframe_reads(raw))
        if expected[-1] == ("invalid",):
            break
    channel = UnaryChannel("127.0.0.1:1")
    channel._buffer = bytearray(b"".join(raws) + b"next")
    read: list[tuple[object, ...]] = []
    while channel._buffer[channel._at:] != b"next":
        try:
            batch = channel._incoming(None, time.monotonic() + 1, False, True)
        except RpcError:
            read.append(("invalid",))
            break
        assert batch and not any(ends_a_batch(frame) for frame in batch[:-1])
        read += [told(frame) for frame in batch]
        assert channel._buffer[channel._at:] == b"".join(raws[len(read):]) + b"next"
        if not ends_a_batch(batch[-1]) and len(read) < len(raws):  # cut short only before one hyperframe parses
            assert not read_straight(raws[len(read)]) or not read_straight(raws[len(read) - 1])
    assert read == expected


def read_straight(raw: bytes) -> bool:
    """Whether the channel reads this frame from the buffer itself: DATA, HEADERS or CONTINUATION on a stream without
    padding or priority, or a WINDOW_UPDATE with a valid increment."""
    kind, flags, stream = raw[3], raw[4], int.from_bytes(raw[5:9], "big") & 0x7FFFFFFF
    if kind in (0x0, 0x1, 0x9):
        return bool(stream) and not flags & 0x28
    return kind == 0x8 and len(raw) == 13 and 0 < int.from_bytes(raw[9:], "big") < 1 << 31


@pytest.mark.parametrize(("raw", "read"), [
    (DataFrame(3, b"msg", flags=("END_STREAM",)).serialize(), (_grpc_unary.DATA, 1, 3, b"msg", 3)),
    (DataFrame(3, b"msg", pad_length=4, flags=("PADDED",)).serialize(), (_grpc_unary.DATA, 0, 3, b"msg", 8)),
    (HeadersFrame(5, b"blk", flags=("END_HEADERS", "PRIORITY"), depends_on=1, stream_weight=9).serialize(),
     (_grpc_unary.HEADERS, 4, 5, b"blk", None)),
    (WindowUpdateFrame(0, 1 << 20).serialize(), ("window", 1 << 20, 0)),
    (b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x80\x00\x00\x01", ("invalid",)),  # the increment's reserved bit
    (b"\x00\x00\x02\x00\x01\x00\x00\x00\x00hi", ("invalid",)),  # DATA on stream 0
])
def test_frames_read_from_the_buffer(raw, read):
    """Known frames: padding (counted by flow control) and priority taken off, a bad increment or stream refused."""
    assert channel_reads(raw) == read


# ------------------------------------------------------------------ the header-block cache

def channel_decodes(blocks: list[bytes]) -> list[list[tuple[bytes, bytes]]]:
    """What a new channel's `_headers` makes of these header blocks, in order (END_HEADERS: it reads no socket)."""
    channel = UnaryChannel("127.0.0.1:1")
    parts = [_grpc_unary._Part(_grpc_unary.HEADERS, _grpc_unary.END_HEADERS, 1, block, len(block)) for block in blocks]
    return [channel._headers(None, part, 0.0) for part in parts]


def plain_decodes(blocks: list[bytes]) -> list[list[tuple[bytes, bytes]]]:
    decoder = Decoder()
    return [[(bytes(name), bytes(value)) for name, value in decoder.decode(block, raw=True)] for block in blocks]


HEADER_LISTS = st.lists(st.lists(st.tuples(st.sampled_from([":status", "grpc-status", "grpc-message", "x-note"]),
                                           st.text("ab0%", max_size=8)), min_size=1, max_size=3),
                        min_size=2, max_size=3)
STEPS = st.lists(st.tuples(st.integers(0, 2), st.sampled_from([None] * 6 + [0, 64, 160, 4096]), st.booleans(),
                           st.integers(1, 2)), min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(header_lists=HEADER_LISTS, steps=STEPS)
def test_cached_header_blocks_decode_as_a_plain_decoder_decodes_them(header_lists, steps):
    """Header blocks of one hpack encoder (dynamic table, resized now and then, lists repeating): the channel's
    decoding, with its cache of blocks that leave the table as it is, equals a plain decoder's."""
    encoder = Encoder()
    blocks = []
    for index, table_size, huffman, times in steps:
        if table_size is not None:
            encoder.header_table_size = table_size
        blocks += [encoder.encode(header_lists[index % len(header_lists)], huffman=huffman) for _ in range(times)]
    assert channel_decodes(blocks) == plain_decodes(blocks)


def test_a_block_that_adds_to_the_table_is_decoded_again_each_time():
    """The same block adding an entry twice (as an encoder that never indexes may send it) adds it twice: index 63,
    the older copy, then decodes to it, as for a plain decoder."""
    adds = b"\x40\x01x\x011"  # a literal with incremental indexing: new name "x", value "1"
    blocks = [adds, adds, b"\xbf"]
    assert channel_decodes(blocks) == plain_decodes(blocks) == [[(b"x", b"1")]] * 3


# ------------------------------------------------------------------ what the client sends, and when it tries again

def test_a_request_over_16_kib_goes_in_frames_of_at_most_16_kib(server, channel, monkeypatch):
    """RFC 9113 4.2: no frame over SETTINGS_MAX_FRAME_SIZE (16384 until the peer raises it); the body arrives whole."""
    sent = bytearray()
    original = UnaryChannel._send

    def recording(self: UnaryChannel, sock: object, data: bytes, **how: bool) -> None:
        sent.extend(data)
        original(self, sock, data, **how)  # type: ignore[arg-type]

    monkeypatch.setattr(UnaryChannel, "_send", recording)
    body = bytes(range(256)) * 80  # 20,480 bytes: a message of 20,485, two frames and a piece of a third
    assert channel.call(PATH, body, TIMEOUT) == PAYLOAD
    sizes, at = [], 0
    while at < len(sent):
        size = int.from_bytes(sent[at:at + 3], "big")
        sizes.append((sent[at + 3], size))  # (frame type, length)
        at += 9 + size
    data_sizes = [size for kind, size in sizes if kind == 0]
    assert data_sizes == [MAX_FRAME, 20_485 - MAX_FRAME]
    assert server.requests[-1][2] == b"\x00" + len(body).to_bytes(4, "big") + body


def test_a_send_the_socket_cannot_take_at_once_waits_for_room_until_the_deadline():
    """The kept socket is non-blocking: bytes beyond what its buffers take go as the peer reads them, all of them in
    order; with no reader, the send ends in TimeoutError (the call's DEADLINE_EXCEEDED) once the deadline passed."""
    ours, peer = socket.socketpair()
    with closing(ours), closing(peer), closing(UnaryChannel("127.0.0.1:1")) as channel:
        ours.setblocking(False)
        channel._writable = select.poll()
        channel._writable.register(ours, select.POLLOUT)
        data = bytes(range(256)) * 16384  # 4 MiB: far more than a socket pair's buffers hold
        got = bytearray()

        def read() -> None:
            while len(got) < len(data) and (chunk := peer.recv(65536)):
                got.extend(chunk)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        channel._send(ours, data, end=time.monotonic() + 30)
        reader.join(10)
        assert got == data
        with pytest.raises(TimeoutError):
            channel._send(ours, data, end=time.monotonic() + 0.1)


def test_a_call_on_a_new_connection_after_goaway_is_not_made_again(server, channel):
    """After a GOAWAY the next call opens a new connection; the service ending that one fails the call (no third)."""
    def drain(conn: Conn, stream: int) -> None:
        conn.goaway(stream)
        conn.answer(stream, message(PAYLOAD))

    server.plan(drain, lambda conn, stream: conn.close_write())
    assert call(channel) == PAYLOAD
    assert failure(channel)[0] == "UNAVAILABLE"
    assert server.connections == 2


class _PipeBreaksAfterTheRequest:
    """A kept connection whose answer began (HEADERS) before a PING; sending the PING's ACK finds the pipe broken.
    It is also the channel's polls of it: always ready."""

    def __init__(self, incoming: bytes) -> None:
        self.incoming, self.sends = incoming, 0

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        return [(0, 0)]

    def recv_into(self, buffer: memoryview) -> int:
        size = min(len(buffer), len(self.incoming))
        buffer[:size], self.incoming = self.incoming[:size], self.incoming[size:]
        return size

    def send(self, data: bytes) -> int:
        self.sends += 1
        if self.sends > 1:
            raise BrokenPipeError(32, "Broken pipe")
        return len(data)

    def close(self) -> None:
        pass


def test_a_call_whose_answer_began_is_not_made_again(server, channel):
    """Only a connection lost before the answer began is worth another try: a loss after its headers fails the call."""
    from h2_script_server import headers_frame

    incoming = headers_frame(Encoder(), 1, GRPC_HEADERS).serialize() + PingFrame(0, b"12345678").serialize()
    kept = _PipeBreaksAfterTheRequest(incoming)
    channel._sock = channel._readable = channel._writable = kept  # type: ignore[assignment]  # as if from a call
    assert failure(channel) == ("UNAVAILABLE", f"connection to {server.address} lost: [Errno 32] Broken pipe")
    assert server.connections == 0
