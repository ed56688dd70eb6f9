"""Unary gRPC calls over one kept plaintext HTTP/2 connection on loopback: the TPU client's transport.

libtpu's runtime metrics service takes unary calls on loopback with gRPC's local credentials, which put
nothing on the wire beyond plain HTTP/2 (prior knowledge, no TLS). grpcio costs 20 MiB of RSS once imported
and, its event-engine threads waking after every call, 2.6 ms of CPU a second at one call a second (this: 0.5;
benchmarks/bench_tpu_transport.py). This makes the same calls in the calling thread alone, with hyperframe's
frames (an answer's own DATA, HEADERS and WINDOW_UPDATE read straight from the buffer) and hpack's headers, and runs
nothing between calls. One call at a time, each within its deadline; a call on a
connection the service closed since is made once more on a new one (a read: safe to repeat).
"""

from __future__ import annotations

import math
import select
import socket
import struct
import time
from itertools import pairwise
from typing import NamedTuple
from urllib.parse import unquote

from hpack import Decoder, Encoder, HPACKError, NeverIndexedHeaderTuple
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from .config import is_loopback
from .errors import RpcError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_MESSAGE = 4 << 20  # bytes: grpcio's default limit on a received message
MAX_HEADER_BLOCK = 64 << 10  # bytes: a longer header block (HEADERS and its CONTINUATIONs) breaks the connection
MAX_FRAME = 16384  # HTTP/2's default frame size, which this client never raises
DEFAULT_WINDOW = 65535  # HTTP/2's initial flow-control window
STREAM_WINDOW = MAX_MESSAGE + MAX_FRAME  # what the service may send on one stream without a WINDOW_UPDATE
CONNECTION_WINDOW = 1 << 30  # ... and on the connection; topped up once half of it is spent
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 5.0  # seconds without a connection attempt after one failed, doubling
# gRPC status codes by number (grpc/status.h), and the HTTP/2 mappings of PROTOCOL-HTTP2.md.
STATUS = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
          "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
          "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
_HTTP_STATUS = {400: "INTERNAL", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "UNIMPLEMENTED",
                429: "UNAVAILABLE", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "UNAVAILABLE"}
_RESET = {7: "UNAVAILABLE", 8: "CANCELLED", 11: "RESOURCE_EXHAUSTED", 12: "PERMISSION_DENIED"}  # else INTERNAL
_TIMEOUT_STEP = 0.1  # seconds: grpc-timeout is sent rounded up to this, so that few header blocks are ever built
# RFC 9113 4.1: a frame's header is its length (24 bits: 16 + 8 here), type, flags, and reserved bit + stream id.
_FRAME_HEADER = struct.Struct(">HBBBL")
DATA, HEADERS, WINDOW_UPDATE, CONTINUATION = 0x0, 0x1, 0x8, 0x9  # frame types (RFC 9113 6)
END_STREAM, END_HEADERS, PADDED, PRIORITY = 0x1, 0x4, 0x8, 0x20  # flags
_FLAGS = {DATA: END_STREAM, HEADERS: END_STREAM | END_HEADERS, CONTINUATION: END_HEADERS}  # each one's, of those two


class _Broken(RpcError):
    """The connection cannot carry another call: closed, timed out, or the service broke the protocol."""


class _Stale(_Broken):
    """A kept connection the service had closed before this call's answer began: worth one more try."""


class _Part(NamedTuple):
    """A DATA, HEADERS or CONTINUATION frame of a stream (padding and priority taken off), or a WINDOW_UPDATE."""

    type: int
    flags: int  # END_STREAM and END_HEADERS as on the wire
    stream_id: int
    data: bytes  # the message's bytes, the header block's, or the window increment's four
    length: int  # the payload's length as sent: what DATA counts against flow control


_new = tuple.__new__  # _Part's fields as a tuple made one: what its own __new__ does, less a Python call

def _part(frame: Frame) -> _Part | Frame:
    """A frame hyperframe parsed, as `_Part` where it is one of those (the rest stay hyperframe's)."""
    if isinstance(frame, DataFrame | HeadersFrame | ContinuationFrame):
        kind = DATA if isinstance(frame, DataFrame) else HEADERS if isinstance(frame, HeadersFrame) else CONTINUATION
        flags = END_STREAM * ("END_STREAM" in frame.flags) | END_HEADERS * ("END_HEADERS" in frame.flags)
        length = frame.flow_controlled_length if isinstance(frame, DataFrame) else len(frame.data)
        return _Part(kind, flags, frame.stream_id, frame.data, length)
    return frame


class UnaryChannel:
    """Unary calls to `address` (HOST:PORT, a loopback address); connects on the first call, again after a failure."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.address = address
        self._target = (host.strip("[]"), int(port))
        self._sock: socket.socket | None = None
        # The kept socket is non-blocking: each wait for it is one poll until the call's deadline (a timeout set on
        # the socket would cost an ioctl per read and a poll before each send and read).
        self._readable = self._writable = select.poll()
        self._chunk = memoryview(bytearray(65536))  # what a read fills, then appended to _buffer (no bytes made)
        self._buffer = bytearray()
        self._at = 0  # where the next frame starts in _buffer (what is before it was read)
        self._decoder = Decoder()
        self._stream = 1
        self._send_window = DEFAULT_WINDOW  # the connection's, as the service's WINDOW_UPDATEs grow it
        self._stream_window = DEFAULT_WINDOW  # each new stream's, from the service's SETTINGS
        self._unacknowledged = 0  # DATA bytes received since the last connection WINDOW_UPDATE
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        self._last_failure = ""
        self._draining = False  # the service said GOAWAY: this connection takes no new call
        # (path, grpc-timeout steps, request) -> its HEADERS and DATA frames, serialized, cut where their stream ids go
        self._frames: dict[tuple[str, int, bytes], list[bytes]] = {}
        self._decoded: dict[bytes, list[tuple[bytes, bytes]]] = {}  # header blocks that leave hpack's table as it is
        # The headers and trailers of the last answer `_check` passed: the same lists again (kept, never changed, so
        # they are those very blocks: `_headers` hands out its cached ones) pass again unchecked.
        self._passed: tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]] = ([], [])

    def call(self, path: str, request: bytes, timeout: float) -> bytes:
        """The answer's message for `request` (serialized) to `path` ("/package.Service/Method"); RpcError else."""
        end = time.monotonic() + timeout
        if self._draining or self._stream >= 1 << 31:  # after a GOAWAY, or out of 31-bit stream ids: a new connection
            self.close()
        reused = self._sock is not None
        try:
            return self._call(path, request, end)
        except _Stale:
            if not reused:
                raise
        return self._call(path, request, end)  # the service closed the kept connection: once more on a new one

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _call(self, path: str, request: bytes, end: float) -> bytes:
        sock = self._sock or self._connect(end)
        try:
            return self._exchange(sock, path, request, end)
        except _Broken:
            self.close()
            raise
        except TimeoutError:
            self.close()  # a late answer is never read: the next call starts on a new connection
            raise RpcError("DEADLINE_EXCEEDED", "the service did not answer within the deadline") from None
        except OSError as exc:
            self.close()
            raise RpcError("UNAVAILABLE", f"connection to {self.address} lost: {exc}") from None

    # ---------------------------------------------------------------- the connection

    def _connect(self, end: float) -> socket.socket:
        now = time.monotonic()
        if now < self._retry_at:
            raise RpcError("UNAVAILABLE", f"{self._last_failure} (next attempt in {self._retry_at - now:.1f} s)")
        try:
            sock = socket.create_connection(self._target, timeout=max(end - now, 0.001))
        except OSError as exc:
            self._failed(f"failed to connect to {self.address}: {exc.strerror or exc}")
            raise RpcError("UNAVAILABLE", self._last_failure) from None
        peer = sock.getpeername()[0]
        if not is_loopback(peer):  # gRPC's local credentials refuse it too
            sock.close()
            self._failed(f"{self.address} is not a loopback address ({peer}): the service is asked on this host only")
            raise RpcError("UNAVAILABLE", self._last_failure)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        settings = SettingsFrame(0, {SettingsFrame.ENABLE_PUSH: 0, SettingsFrame.INITIAL_WINDOW_SIZE: STREAM_WINDOW})
        try:
            sock.sendall(PREFACE + settings.serialize()
                         + WindowUpdateFrame(0, CONNECTION_WINDOW - DEFAULT_WINDOW).serialize())
        except OSError as exc:
            sock.close()
            self._failed(f"failed to connect to {self.address}: {exc}")
            raise RpcError("UNAVAILABLE", self._last_failure) from None
        sock.setblocking(False)
        self._readable, self._writable = select.poll(), select.poll()
        self._readable.register(sock, select.POLLIN)
        self._writable.register(sock, select.POLLOUT)
        self._sock, self._buffer, self._at, self._decoder, self._stream = sock, bytearray(), 0, Decoder(), 1
        self._draining = False
        self._decoded = {}
        self._decoder.max_header_list_size = MAX_HEADER_BLOCK
        self._send_window = self._stream_window = DEFAULT_WINDOW
        self._unacknowledged = 0
        self._backoff = BACKOFF_FIRST
        return sock

    def _failed(self, why: str) -> None:
        self._last_failure = why
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)

    # ---------------------------------------------------------------- one call

    def _exchange(self, sock: socket.socket, path: str, request: bytes, end: float) -> bytes:
        stream, self._stream = self._stream, self._stream + 2
        size = len(request) + 5  # the message: not compressed, its length, the request
        while size > min(self._send_window, self._stream_window):
            if size > self._stream_window:
                raise _Broken("RESOURCE_EXHAUSTED", f"a {size}-byte request exceeds the service's window")
            self._handle(sock, self._frame(sock, end, fresh=True), stream, end)  # the service's WINDOW_UPDATE
        self._send_window -= size
        # The frames with this stream's id in bytes 5-8 of each frame's header (RFC 9113 4.1).
        self._send(sock, stream.to_bytes(4, "big").join(self._request_frames(path, end - time.monotonic(), request)),
                   end=end, request=True)
        blocks: list[list[tuple[bytes, bytes]]] = []
        data = bytearray()
        while True:
            # The frames in hand, in order: a batch never reaches past a stream's end, so the answer's last frame is
            # its batch's last, and what follows it stays in the buffer for the next call.
            for frame in self._incoming(sock, end, not blocks and not data, True):
                if type(frame) is not _Part or frame.stream_id != stream or frame.type == WINDOW_UPDATE:
                    if isinstance(frame, RstStreamFrame) and frame.stream_id == stream:
                        code = _RESET.get(frame.error_code, "INTERNAL")
                        raise RpcError(code, f"the service reset the call (HTTP/2 error {frame.error_code})")
                    self._handle(sock, frame, stream, end)
                    continue
                if frame.type == HEADERS:
                    blocks.append(self._headers(sock, frame, end))
                elif frame.type == DATA:
                    if not blocks or len(data) + len(frame.data) > MAX_MESSAGE + 5:
                        raise _Broken("RESOURCE_EXHAUSTED" if blocks else "INTERNAL",
                                      "an answer over 4 MiB" if blocks else "DATA before the answer's headers")
                    data += frame.data
                    self._consumed(sock, frame.length, end)
                else:
                    raise _Broken("INTERNAL", "a CONTINUATION frame outside a header block")
                if frame.flags & END_STREAM:
                    if blocks[0] is not self._passed[0] or blocks[-1] is not self._passed[1]:
                        _check(blocks)
                        self._passed = (blocks[0], blocks[-1])
                    message = bytes(data)
                    if len(message) < 5 or message[0] != 0 or int.from_bytes(message[1:5], "big") != len(message) - 5:
                        raise RpcError("INTERNAL", "the answer is not one uncompressed message")
                    return message[5:]

    def _request_frames(self, path: str, remaining: float, request: bytes) -> list[bytes]:
        """The call's HEADERS and DATA frames, built once and cut where each frame's stream id goes (joined by it
        they are the call's bytes): the header block's literals are never indexed, so it stands alone (no hpack
        table), and only the stream id changes from call to call. The message goes in DATA frames of at most
        MAX_FRAME bytes (the size every peer takes: this client never asks its own)."""
        steps = max(1, math.ceil(remaining / _TIMEOUT_STEP))
        frames = self._frames.get((path, steps, request))
        if frames is None:
            if len(self._frames) >= 64:
                self._frames.clear()
            block = Encoder().encode([NeverIndexedHeaderTuple(name, value) for name, value in (
                (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", self.address),
                ("content-type", "application/grpc"), ("te", "trailers"),
                ("grpc-timeout", f"{min(steps * round(_TIMEOUT_STEP * 1000), 99_999_999)}m"))])  # 8 digits at most
            message = b"\x00" + len(request).to_bytes(4, "big") + request
            last = (len(message) - 1) // MAX_FRAME * MAX_FRAME
            serialized = (HeadersFrame(1, block, flags=("END_HEADERS",)).serialize(),
                          *(DataFrame(1, message[at:at + MAX_FRAME],
                                      flags=("END_STREAM",) if at == last else ()).serialize()
                            for at in range(0, len(message), MAX_FRAME)))
            # Cut around each frame's stream id: its first 5 bytes end a piece, its payload begins the next.
            frames = [serialized[0][:5], *(before[9:] + after[:5] for before, after in pairwise(serialized)),
                      serialized[-1][9:]]
            self._frames[path, steps, request] = frames
        return frames

    def _headers(self, sock: socket.socket, frame: _Part, end: float) -> list[tuple[bytes, bytes]]:
        """A header block, its CONTINUATION frames joined, decoded (every block is: hpack's table depends on it)."""
        key = frame.data
        if not frame.flags & END_HEADERS:
            block = bytearray(key)
            while True:
                last = self._frame(sock, end, fresh=False)
                if type(last) is not _Part or last.type != CONTINUATION or last.stream_id != frame.stream_id:
                    raise _Broken("INTERNAL", "a header block broken off by another frame")
                block += last.data
                if len(block) > MAX_HEADER_BLOCK:
                    raise _Broken("INTERNAL", "a header block over 64 KiB")
                if last.flags & END_HEADERS:
                    break
            key = bytes(block)
        known = self._decoded.get(key)
        if known is not None:
            return known
        # A block that adds nothing to hpack's table decodes alike while the table stays as it is: a service answers
        # every call with the same few such blocks once its first answers filled the table. Any change: all forgotten.
        table = self._decoder.header_table
        before = (tuple(table.dynamic_entries), table.maxsize)
        try:
            headers = [(bytes(name), bytes(value)) for name, value in self._decoder.decode(key, raw=True)]
        except HPACKError as exc:
            raise _Broken("INTERNAL", f"undecodable headers: {exc}") from None
        if (tuple(table.dynamic_entries), table.maxsize) != before:
            self._decoded.clear()
        elif len(self._decoded) < 64:
            self._decoded[key] = headers
        return headers

    def _handle(self, sock: socket.socket, frame: _Part | Frame, stream: int, end: float) -> None:
        """A frame that is not part of the call's answer: the connection's own, or a late one of an earlier call."""
        if type(frame) is _Part:
            if frame.type == WINDOW_UPDATE:
                if frame.stream_id == 0:  # a stream's own window is never the limit (requests fit the first)
                    self._send_window += int.from_bytes(frame.data, "big")
            elif frame.type == DATA:
                self._consumed(sock, frame.length, end)  # an earlier call's: dropped, but flow-controlled
            else:
                raise _Broken("INTERNAL", f"headers on stream {frame.stream_id}, which this call did not open")
        elif isinstance(frame, SettingsFrame):
            if "ACK" not in frame.flags:
                window = frame.settings.get(SettingsFrame.INITIAL_WINDOW_SIZE)
                if window is not None:
                    self._stream_window = window
                self._send(sock, SettingsFrame(0, flags=("ACK",)).serialize(), end=end)
        elif isinstance(frame, PingFrame):
            if "ACK" not in frame.flags:
                self._send(sock, PingFrame(0, frame.opaque_data, flags=("ACK",)).serialize(), end=end)
        elif isinstance(frame, GoAwayFrame):
            why = f"the service closed the connection (GOAWAY, HTTP/2 error {frame.error_code})"
            if frame.last_stream_id < stream:  # the call was not taken: safe to make on a new connection
                raise _Stale("UNAVAILABLE", why)
            if frame.error_code:
                raise _Broken("UNAVAILABLE", why)
            self._draining = True  # the call goes on; the next one opens a new connection
        # PRIORITY, RST_STREAM of an earlier stream, frames of unknown types: nothing to do (RFC 9113 5.5).

    def _consumed(self, sock: socket.socket, length: int, end: float) -> None:
        self._unacknowledged += length
        if self._unacknowledged >= CONNECTION_WINDOW // 2:
            self._send(sock, WindowUpdateFrame(0, self._unacknowledged).serialize(), end=end)
            self._unacknowledged = 0

    def _send(self, sock: socket.socket, data: bytes, *, end: float, request: bool = False) -> None:
        """`data` sent by `end` (TimeoutError else); a connection found lost while sending the `request` is stale (the
        call may be made again)."""
        sent = 0
        while True:
            try:
                sent += sock.send(data[sent:] if sent else data)
            except BlockingIOError:
                pass  # no room in the socket's buffer: wait for some
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise (_Stale if request else _Broken)("UNAVAILABLE", f"connection to {self.address} lost: {exc}") \
                    from None
            if sent == len(data):
                return
            self._wait(self._writable, end)

    def _frame(self, sock: socket.socket, end: float, *, fresh: bool) -> _Part | Frame:
        """The next frame, waiting for it until `end`; `fresh`: nothing of the answer came yet (a loss is stale)."""
        return self._incoming(sock, end, fresh, False)[0]

    def _incoming(self, sock: socket.socket, end: float, fresh: bool, many: bool) -> list[_Part | Frame]:
        """The next frame, waiting for it until `end` (`fresh`: nothing of the answer came yet, a loss is stale), and
        if `many`, each whole one the buffer holds after it up to the first that ends a stream (END_STREAM) or leaves
        its header block open (its CONTINUATIONs are `_headers`' to read), before any out of the ordinary.

        An answer's frames (DATA, HEADERS, CONTINUATION without padding or priority, a WINDOW_UPDATE) are read
        straight from the buffer, as hyperframe reads them, at a tenth of its cost (its objects are made per frame),
        several in one call (a call's answer mostly comes in one read); every other frame, and any of those out of
        the ordinary, is hyperframe's to parse and check, alone in its list (as is an error: raised once the frames
        before it were taken)."""
        buffer = self._buffer
        if len(buffer) - self._at < 9:
            self._fill(sock, 9, end, fresh)
        frames: list[_Part | Frame] = []
        at = self._at
        while True:
            high, low, kind, flags, stream = _FRAME_HEADER.unpack_from(buffer, at)
            length = high << 8 | low
            if length > MAX_FRAME:
                if frames:
                    break
                raise _Broken("INTERNAL", f"a {length}-byte frame (at most {MAX_FRAME} were allowed)")
            if len(buffer) - at < 9 + length:
                if frames:
                    break
                self._fill(sock, 9 + length, end, False)
                at = 0
            start, at = at, at + 9 + length
            stream &= 0x7FFFFFFF
            if kind in _FLAGS and stream and not flags & (PADDED | PRIORITY):
                flags &= _FLAGS[kind]
                frames.append(_new(_Part, (kind, flags, stream, bytes(buffer[start + 9:at]), length)))
                if not many or flags & END_STREAM or (kind != DATA and not flags & END_HEADERS):
                    break
            elif kind == WINDOW_UPDATE and length == 4 and 0 < int.from_bytes(buffer[start + 9:at], "big") < 1 << 31:
                frames.append(_new(_Part, (kind, 0, stream, bytes(buffer[start + 9:at]), length)))
                if not many:
                    break
            elif frames:
                at = start  # hyperframe's, in a list of its own
                break
            else:
                self._at = at
                return [self._parsed(bytes(buffer[start:at]))]
            if len(buffer) - at < 9:
                break
        self._at = at
        return frames

    @staticmethod
    def _parsed(raw: bytes) -> _Part | Frame:
        """A whole frame, header and payload, as hyperframe parses it (`_part` where it is one of an answer's)."""
        try:
            frame, _ = Frame.parse_frame_header(memoryview(raw[:9]))
        except HyperframeError as exc:
            raise _Broken("INTERNAL", f"an invalid frame header: {exc}") from None
        try:
            frame.parse_body(memoryview(raw[9:]))
        except HyperframeError as exc:
            raise _Broken("INTERNAL", f"an invalid {type(frame).__name__}: {exc}") from None
        return _part(frame)

    def _fill(self, sock: socket.socket, size: int, end: float, fresh: bool) -> None:
        """Reads until the buffer holds `size` bytes past the read position (which moves to its start)."""
        buffer = self._buffer
        if self._at:
            del buffer[:self._at]
            self._at = 0
        chunk = self._chunk
        while len(buffer) < size:
            self._wait(self._readable, end)
            try:
                got = sock.recv_into(chunk)
            except BlockingIOError:
                continue  # woken with nothing to read after all
            except (ConnectionResetError, BrokenPipeError) as exc:
                raise (_Stale if fresh and not buffer else _Broken)("UNAVAILABLE", f"connection lost: {exc}") \
                    from None
            if not got:
                raise (_Stale if fresh and not buffer else _Broken)(
                    "UNAVAILABLE", f"the service at {self.address} closed the connection")
            buffer += chunk[:got]

    @staticmethod
    def _wait(ready: select.poll, end: float) -> None:
        """Returns once the socket `ready` polls is ready (or has failed: its next read or send says how); raises
        TimeoutError if it is not by `end`."""
        remaining = end - time.monotonic()
        if remaining <= 0 or not ready.poll(remaining * 1000):  # ms, rounded up: never wakes before `end`
            raise TimeoutError


def _check(blocks: list[list[tuple[bytes, bytes]]]) -> None:
    """Raises RpcError unless an answer's header blocks (headers, trailers; the first and last) say it succeeded."""
    headers = dict(blocks[0])
    status = headers.get(b":status")
    if status != b"200":
        code = _HTTP_STATUS.get(int(status) if status and status.isdigit() else 0, "UNKNOWN")
        raise RpcError(code, f"HTTP status {(status or b'none').decode('ascii', 'replace')}")
    trailers = dict(blocks[-1]) if len(blocks) > 1 else headers  # one block only: a trailers-only answer
    grpc_status = trailers.get(b"grpc-status")
    if grpc_status is None:
        raise RpcError("INTERNAL", "the answer ended without a grpc-status")
    number = int(grpc_status) if grpc_status.isdigit() and len(grpc_status) < 3 else -1
    if number != 0:
        details = unquote(trailers.get(b"grpc-message", b"").decode("utf-8", "replace"))
        raise RpcError(STATUS[number] if 0 < number < len(STATUS) else "UNKNOWN", details or f"status {number}")
    if not headers.get(b"content-type", b"").startswith(b"application/grpc"):
        raise RpcError("UNKNOWN", "the answer is not gRPC (content-type "
                                  f"{headers.get(b'content-type', b'none').decode('ascii', 'replace')})")
