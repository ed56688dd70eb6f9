"""A real `tracklab-sysmon serve` subprocess for the hardening and load tests: start, raw sockets, RSS, stop."""

from __future__ import annotations

import json
import os
import pathlib
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

DEADLINE = 30.0  # ceiling on start-up and waits: catches hangs, never a speed assertion
PAGE = os.sysconf("SC_PAGE_SIZE")


class Service:
    """One service process; its stderr goes to a file so a flood can be measured, not block the pipe."""

    def __init__(
        self, tmp: pathlib.Path, *flags: str, nofile: tuple[int, int] | None = None, python_flags: tuple[str, ...] = ()
    ) -> None:
        self.portfile = tmp / f"port-{time.monotonic_ns()}.json"
        self.log_path = tmp / f"stderr-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        preexec: Callable[[], None] | None = None
        if nofile is not None:
            preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile)  # noqa: E731
        self.proc = subprocess.Popen(
            [sys.executable, *python_flags, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0",
             "--portfile", str(self.portfile), *flags],
            stdout=subprocess.DEVNULL, stderr=self._log, preexec_fn=preexec,
        )
        try:
            self.port = self._wait_for_port()
        except BaseException:
            self.kill()
            raise

    def _wait_for_port(self) -> int:
        end = time.monotonic() + DEADLINE
        while True:
            if self.portfile.exists():
                return int(json.loads(self.portfile.read_text())["port"])
            assert self.proc.poll() is None, f"service exited: {self.log()}"
            assert time.monotonic() < end, "the service never wrote its portfile"
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss(self) -> int:
        """Resident set size in bytes, from /proc/PID/statm (second field, in pages)."""
        with open(f"/proc/{self.proc.pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE

    def connect(self, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window the server sees stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(DEADLINE)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def exchange(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send raw bytes, read until the server closes; (status, lower-case headers, body)."""
        with self.connect() as sock:
            sock.sendall(raw)
            return parse_response(read_all(sock))

    def get(self, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
        return self.exchange(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(DEADLINE)
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)
        self._log.close()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def wait_until(condition: Callable[[], bool], what: str, ceiling: float = DEADLINE) -> None:
    end = time.monotonic() + ceiling
    while not condition():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.05)


TCP_CLOSE = 7  # linux/tcp_states.h: after a reset (or a full close) is received


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of `sock` (first byte of TCP_INFO)."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def wait_closed_by_server(sock: socket.socket) -> None:
    """Wait until the server closes or resets the connection; fail if it still holds it after the socket timeout."""
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"the server still holds the connection after {sock.gettimeout()} s") from None
