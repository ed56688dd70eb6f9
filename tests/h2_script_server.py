"""A scripted HTTP/2 server on loopback for UnaryChannel's tests: each request runs a script that writes raw frames.

Plain HTTP/2 with prior knowledge, as gRPC's local credentials put it on the wire: the server reads the client's
preface and frames with hyperframe, sends its own (empty) SETTINGS, and for each request (HEADERS, then DATA with
END_STREAM) runs the next planned script, else the default one, in the connection's reading thread. It records
what the client sent; the client's frames arrive in order, so once a later call on the same connection has been
answered, everything the client sent before that call has been recorded.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import suppress

from hpack import Decoder, Encoder
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_FRAME = 16384  # HTTP/2's default SETTINGS_MAX_FRAME_SIZE
GRPC_HEADERS = ((":status", "200"), ("content-type", "application/grpc"))
OK_TRAILERS = (("grpc-status", "0"),)


def message(payload: bytes, *, compressed: bool = False) -> bytes:
    """A gRPC length-prefixed message: the compressed flag, the payload's length (4 bytes, big-endian), the payload."""
    return bytes([compressed]) + len(payload).to_bytes(4, "big") + payload


def headers_frame(encoder: Encoder, stream: int, headers: Iterable[tuple[str, str]], *,
                  end_stream: bool = False) -> HeadersFrame:
    flags = ("END_HEADERS", "END_STREAM") if end_stream else ("END_HEADERS",)
    return HeadersFrame(stream, encoder.encode(list(headers)), flags=flags)


def data_frames(stream: int, data: bytes, *, end_stream: bool = False) -> list[DataFrame]:
    """`data` in DATA frames of at most MAX_FRAME bytes; END_STREAM on the last one if asked."""
    chunks = [data[at:at + MAX_FRAME] for at in range(0, len(data), MAX_FRAME)] or [b""]
    return [DataFrame(stream, chunk, flags=("END_STREAM",) if end_stream and at == len(chunks) - 1 else ())
            for at, chunk in enumerate(chunks)]


def answer_frames(encoder: Encoder, stream: int, body: bytes, *,
                  trailers: Iterable[tuple[str, str]] = OK_TRAILERS) -> list[Frame]:
    """An answer: gRPC's headers, `body` as DATA (a message(), or not), then `trailers` with END_STREAM."""
    return [headers_frame(encoder, stream, GRPC_HEADERS), *data_frames(stream, body),
            headers_frame(encoder, stream, trailers, end_stream=True)]


class Conn:
    """One accepted connection; a script answers a request through it (hpack's table is the connection's)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.encoder = Encoder()
        self.last_stream: int | None = None  # set by goaway(): later streams are read but not answered

    def send(self, *frames: Frame | bytes) -> None:
        self.sock.sendall(b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames))

    def headers(self, stream: int, headers: Iterable[tuple[str, str]], *, end_stream: bool = False) -> None:
        self.send(headers_frame(self.encoder, stream, headers, end_stream=end_stream))

    def answer(self, stream: int, body: bytes, *, trailers: Iterable[tuple[str, str]] = OK_TRAILERS) -> None:
        self.send(*answer_frames(self.encoder, stream, body, trailers=trailers))

    def goaway(self, last_stream: int, error: int = 0) -> None:
        self.last_stream = last_stream
        self.send(GoAwayFrame(0, last_stream_id=last_stream, error_code=error))

    def close_write(self) -> None:
        """Ends what the server sends (the client reads EOF after it); the server reads on until the client closes."""
        self.sock.shutdown(socket.SHUT_WR)


Script = Callable[[Conn, int], None]  # (the connection, the request's stream id): writes the answer


class ScriptServer:
    """Bound to 127.0.0.1, port 0 (refusing connections until `listen` or `start`); `stop` ends every thread and
    closes every socket, and may be called more than once."""

    def __init__(self, default: Script) -> None:
        self.default = default
        self.planned: deque[Script] = deque()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self.address = "{}:{}".format(*self._listener.getsockname())
        self.connections = 0
        self.requests: list[tuple[int, dict[str, str], bytes]] = []  # (stream, headers, request body)
        self.client_settings: list[dict[int, int]] = []
        self.settings_acks = 0
        self.ping_acks: list[bytes] = []
        self.window_updates: list[tuple[int, int]] = []  # (stream, increment)
        self._conns: list[tuple[Conn, threading.Thread]] = []
        self._acceptor = threading.Thread(target=self._accept, name="h2-accept", daemon=True)

    def plan(self, *scripts: Script) -> None:
        """Scripts for the next requests, in order; the default one answers the requests after them."""
        self.planned.extend(scripts)

    def listen(self) -> None:
        """Connections complete (into the backlog) but none is accepted yet."""
        self._listener.listen()

    def pending(self) -> bool:
        """Whether a connection waits in the backlog (taken and closed if so); for a server not started."""
        self._listener.setblocking(False)
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return False
        finally:
            self._listener.setblocking(True)
        sock.close()
        return True

    def start(self) -> ScriptServer:
        self._listener.listen()
        self._acceptor.start()
        return self

    def stop(self) -> None:
        if self._acceptor.ident is not None:
            with suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
            self._acceptor.join(5)
        self._listener.close()
        self.drop()
        for _, thread in self._conns:
            thread.join(5)
        assert not self._acceptor.is_alive() and not any(thread.is_alive() for _, thread in self._conns)

    def drop(self) -> None:
        """Shuts every accepted connection down, as a service's idle timeout would (each thread closes its socket)."""
        for conn, _ in self._conns:
            with suppress(OSError):  # shut down already
                conn.sock.shutdown(socket.SHUT_RDWR)  # also wakes the thread's recv()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            conn = Conn(sock)
            thread = threading.Thread(target=self._serve, args=(conn,), name="h2-conn", daemon=True)
            self._conns.append((conn, thread))
            thread.start()

    def _serve(self, conn: Conn) -> None:
        with conn.sock:
            try:
                if _read(conn.sock, len(PREFACE)) == PREFACE:
                    conn.send(SettingsFrame(0))
                    self._frames(conn)
            except (OSError, EOFError, HyperframeError):
                pass  # the client closed or reset the connection, or drop() shut it down

    def _frames(self, conn: Conn) -> None:
        decoder = Decoder()
        opened: dict[int, tuple[dict[str, str], bytearray]] = {}
        while True:
            frame, length = Frame.parse_frame_header(memoryview(_read(conn.sock, 9)))
            frame.parse_body(memoryview(_read(conn.sock, length)))
            if isinstance(frame, SettingsFrame):
                if "ACK" in frame.flags:
                    self.settings_acks += 1
                else:
                    self.client_settings.append(dict(frame.settings))
                    conn.send(SettingsFrame(0, flags=("ACK",)))
            elif isinstance(frame, PingFrame):
                if "ACK" in frame.flags:
                    self.ping_acks.append(frame.opaque_data)
            elif isinstance(frame, WindowUpdateFrame):
                self.window_updates.append((frame.stream_id, frame.window_increment))
            elif isinstance(frame, HeadersFrame):
                opened[frame.stream_id] = ({str(n): str(v) for n, v in decoder.decode(frame.data)}, bytearray())
            elif isinstance(frame, DataFrame):
                opened[frame.stream_id][1].extend(frame.data)
            if isinstance(frame, HeadersFrame | DataFrame) and "END_STREAM" in frame.flags:
                headers, body = opened.pop(frame.stream_id)
                self.requests.append((frame.stream_id, headers, bytes(body)))
                if conn.last_stream is None or frame.stream_id <= conn.last_stream:
                    (self.planned.popleft() if self.planned else self.default)(conn, frame.stream_id)


def _read(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)
