"""HTTP hardening (issue 10): idle and half-open connections, protocol errors, stalled readers, redirects, stop."""

from __future__ import annotations

import asyncio
import json
import logging
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import FIXTURES
from service_process import (
    DEADLINE,
    TCP_CLOSE,
    Service,
    parse_response,
    read_all,
    tcp_state,
    wait_closed_by_server,
    wait_until,
)

from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.errors import ConfigError
from tracklab_sysmon.server import create_app
from tracklab_sysmon.server.lograte import RateLimitFilter
from tracklab_sysmon.server.runner import remove_portfile

TOKEN = "tok-9f8e7d6c5b4a"


def _json_error(body: bytes) -> dict:
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"}
    return error


# --- Defect 1: idle, half-open and too many connections -----------------------------------------------------

def test_half_sent_request_is_closed_after_the_header_timeout(tmp_path):
    """A client that sends half a request line and stalls is closed (--header-timeout), keep-alive being long."""
    service = Service(tmp_path, "--header-timeout", "0.5", "--keepalive-timeout", "600")
    try:
        with service.connect() as sock:
            sock.sendall(b"GET /api/hea")
            wait_closed_by_server(sock)
    finally:
        service.kill()


def test_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(tmp_path):
    """After a response on a kept-alive connection, an idle client is closed after --keepalive-timeout."""
    service = Service(tmp_path, "--keepalive-timeout", "0.5")
    try:
        with service.connect() as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, headers, body = parse_response(read_all(sock))  # ends only when the server closes
            assert status == 200 and len(body) == int(headers["content-length"])
    finally:
        service.kill()


def test_half_sent_second_request_is_closed_after_the_keepalive_timeout(tmp_path):
    """On a kept-alive connection, a next request left half-sent is closed after --keepalive-timeout."""
    service = Service(tmp_path, "--keepalive-timeout", "0.5", "--header-timeout", "600")
    try:
        with service.connect() as sock:
            sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            buffer = b""
            while b"\r\n\r\n" not in buffer:
                buffer += sock.recv(65536)
            head, _, body = buffer.partition(b"\r\n\r\n")
            length = int(parse_response(head + b"\r\n\r\n")[1]["content-length"])
            while len(body) < length:
                body += sock.recv(65536)
            sock.sendall(b"GET /api/hea")
            wait_closed_by_server(sock)
    finally:
        service.kill()


def test_connections_beyond_the_cap_get_a_503_json_body(tmp_path):
    """With --max-connections 3, a 4th connection gets 503 JSON and is closed; once one goes, new clients are served."""
    service = Service(tmp_path, "--max-connections", "3", "--header-timeout", "600")
    try:
        held = [service.connect() for _ in range(3)]
        for sock in held:
            sock.sendall(b"GET /api/hea")  # open, never completed
        status, headers, body = service.get("/api/health")
        assert status == 503 and headers["content-type"] == "application/json" and headers["retry-after"] == "1"
        assert _json_error(body)["code"] == "too_many_connections"
        held.pop().close()

        def served() -> bool:
            return service.get("/api/health")[0] == 200

        wait_until(served, "a free slot after one client left")
        for sock in held:
            sock.close()
    finally:
        service.kill()


def test_a_normal_client_is_served_while_more_slowloris_connections_than_the_fd_limit_are_held(tmp_path):
    """Started with a soft open-file limit of 256, the service raises it, serves /api/health beside 600
    half-sent connections, and logs no flood (the old service hit EMFILE and logged a traceback per accept)."""
    soft, hard = 256, max(4096, _hard_nofile())
    _raise_own_nofile(2048)
    service = Service(tmp_path, "--header-timeout", "600", nofile=(soft, hard))
    held: list[socket.socket] = []
    try:
        for _ in range(600):
            sock = service.connect()
            sock.sendall(b"GET /api/system/metrics HTTP/1.1\r\nHost: 127.0")
            held.append(sock)
        status, _, body = service.get("/api/health")
        assert status == 200 and json.loads(body)["service"] == "system_monitor"
        with open(f"/proc/{service.proc.pid}/limits") as handle:
            limits = handle.read()
        assert f"Max open files            {hard}" in limits
    finally:
        for sock in held:
            sock.close()
        service.stop()
    assert len(service.log().splitlines()) <= 2, service.log()[:2000]


def _hard_nofile() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _raise_own_nofile(wanted: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def test_rate_limit_filter_passes_one_record_per_kind_and_window_and_counts_the_rest():
    """Within a window only the first of identical warnings passes; the next one after it carries the dropped count."""
    now = [100.0]
    limiter = RateLimitFilter(window=10.0, clock=lambda: now[0])

    def record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("asyncio", level, __file__, 1, msg, None, None)

    assert limiter.filter(record("socket.accept() out of system resource"))
    passed = sum(limiter.filter(record("socket.accept() out of system resource")) for _ in range(999))
    assert passed == 0
    assert limiter.filter(record("another error"))  # another kind has its own window
    assert all(limiter.filter(record("request %s", logging.INFO)) for _ in range(5))  # below WARNING: never limited
    now[0] += 10.0
    later = record("socket.accept() out of system resource")
    assert limiter.filter(later)
    assert later.getMessage() == (
        "socket.accept() out of system resource [999 more like this in the last 10 s not logged]"
    )


# --- Defect 6: protocol-level errors ------------------------------------------------------------------------

MALFORMED = {
    "bad request line": b"GARBAGE\r\n\r\n",
    "100 KB URL with a token": b"GET /api/system/metrics?token=" + TOKEN.encode() + b"&x=" + b"a" * 100_000
                               + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "100 KB header": b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"b" * 100_000 + b"\r\n\r\n",
    "NUL in the target": b"GET /api/health\x00?token=" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "NUL in a header": b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\x00b\r\n\r\n",
    "bare LF": b"GET /api/health HTTP/1.1\nHost: 127.0.0.1\nX-A: 1\n\n",
    "Content-Length with chunked": b"POST /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                                   b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
}


def test_protocol_errors_get_a_json_400_one_log_line_and_never_log_the_token(tmp_path):
    """Each malformed request gets 400 with the JSON error body; 100 of them log one line, none a token or target."""
    service = Service(tmp_path, "--token", TOKEN, "--verbose")
    try:
        for name, raw in MALFORMED.items():
            status, headers, body = service.exchange(raw)
            assert status == 400, name
            assert headers["content-type"].startswith("application/json"), name
            error = _json_error(body)
            assert error["code"] == "bad_request" and error["message"].startswith("malformed HTTP request"), name
            assert TOKEN not in body.decode(errors="replace"), name
        for _ in range(100):
            assert service.exchange(MALFORMED["bad request line"])[0] == 400
    finally:
        assert service.stop() == 0
    log = service.log()
    assert TOKEN not in log
    assert "Traceback" not in log
    assert "aaaaaaaa" not in log and "bbbbbbbb" not in log  # no request target or header echoed
    assert sum("rejected a malformed HTTP request" in line for line in log.splitlines()) == 1, log[-3000:]


# --- Defect 3: clients that do not read ---------------------------------------------------------------------

def _history_bytes(service: Service) -> int:
    status, headers, body = service.get("/api/system/metrics/history")
    assert status == 200 and len(body) == int(headers["content-length"])
    json.loads(body)
    return len(body)


def _many_core_tree(tmp_path: pathlib.Path) -> list[str]:
    """The workstation capture with 512 CPUs: ~90 KB snapshots, so a short history outgrows the socket buffers."""
    root = tmp_path / "many-cores"
    shutil.copytree(FIXTURES / "workstation", root)
    stat = root / "proc" / "stat"
    lines = stat.read_text().splitlines()
    cores = [line for line in lines if re.match(r"cpu\d+ ", line)]
    others = [line for line in lines if not re.match(r"cpu\d+ ", line)]
    many = [re.sub(r"^cpu\d+", f"cpu{i}", cores[i % len(cores)]) for i in range(512)]
    stat.write_text("\n".join([others[0], *many, *others[1:]]) + "\n")
    return ["--proc-root", str(root / "proc"), "--sys-root", str(root / "sys"), "--interval", "0.05"]


def _ask_history_and_never_read(service: Service) -> socket.socket:
    sock = service.connect(rcvbuf=4096)
    sock.sendall(b"GET /api/system/metrics/history HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    return sock


def test_non_reading_history_clients_are_reset_and_memory_stays_bounded(tmp_path):
    """30 clients ask for a ~7 MB history and never read: RSS grows by far less than one copy each, every one is
    reset after --write-timeout, and RSS is back near its baseline after they are gone."""
    service = Service(tmp_path, *_many_core_tree(tmp_path), "--history", "80", "--write-timeout", "1")
    clients: list[socket.socket] = []
    try:
        wait_until(lambda: _history_bytes(service) > 6_000_000, "6 MB of history", ceiling=120)
        size = _history_bytes(service)
        baseline = service.rss()
        clients = [_ask_history_and_never_read(service) for _ in range(30)]
        time.sleep(0.5)  # every response under way; only places the sample, no speed is asserted
        during = service.rss()
        wait_until(lambda: all(tcp_state(sock) == TCP_CLOSE for sock in clients), "the server resetting all 30")
        for sock in clients:
            got = 0
            try:
                while chunk := sock.recv(65536):
                    got += len(chunk)
            except ConnectionResetError:
                pass
            assert got < size, "a client that did not read was sent the whole history"
        after = service.rss()
        print(f"history {size} B; RSS baseline {baseline / 2**20:.1f} MiB, during {during / 2**20:.1f} MiB, "
              f"after {after / 2**20:.1f} MiB")
        assert during - baseline < 30 * size // 4
        assert after - baseline < 32 * 2**20
        assert _history_bytes(service) >= size  # a client that reads still gets all of it
    finally:
        for sock in clients:
            sock.close()
        service.kill()


def test_history_streams_beyond_the_cap_get_503(tmp_path):
    """With --max-history-streams 1, a second history request while one is stuck gets 503 busy with Retry-After."""
    service = Service(tmp_path, *_many_core_tree(tmp_path), "--history", "80", "--write-timeout", "600",
                      "--max-history-streams", "1")
    try:
        wait_until(lambda: _history_bytes(service) > 6_000_000, "6 MB of history", ceiling=120)
        with _ask_history_and_never_read(service):

            def busy() -> bool:
                status, headers, body = service.get("/api/system/metrics/history")
                return status == 503 and headers["retry-after"] == "1" and _json_error(body)["code"] == "busy"

            wait_until(busy, "a 503 while the only slot is held")
        wait_until(lambda: service.get("/api/system/metrics/history?limit=1")[0] == 200, "the slot freed")
    finally:
        service.kill()


# --- Defect 12 (REST): strict integers ----------------------------------------------------------------------

@pytest.fixture
async def client(aiohttp_client):
    return await aiohttp_client(create_app(ServiceConfig(node_id="strict", interval=3600.0, history=5)))


@pytest.mark.parametrize("raw", ["\u0663", "+3", "1_0", " 3", "3 ", "-1", "3.0", "\uff13", ""])
async def test_limit_and_since_take_only_ascii_digits(client, raw):
    """`limit`/`since` written other than in ASCII digits are a 400 JSON error, never read by int()'s leniency."""
    for name in ("limit", "since"):
        response = await client.get("/api/system/metrics/history", params={name: raw})
        assert response.status == 400, (name, raw)
        assert (await response.json())["error"] == {
            "code": "bad_request", "message": f"{name} must be a whole number in ASCII digits (0-9), got {raw!r}",
        }


async def test_ascii_digits_still_work(client):
    """`limit=1` and `since=0` are valid and give the one snapshot held."""
    for params in ({"limit": "1"}, {"since": "0"}, {"limit": "001"}):
        response = await client.get("/api/system/metrics/history", params=params)
        assert response.status == 200 and len(await response.json()) == 1, params


# --- Defect 7: open redirect --------------------------------------------------------------------------------

@pytest.mark.parametrize(("target", "location"), [
    ("//evil.example/?token=T", "/evil.example/"),
    ("///evil.example/x?token=T&a=1", "/evil.example/x?a=1"),
    ("/\\evil.example/?token=T", "/evil.example/"),
    ("/%5C/evil.example/?token=T", "/%5C/evil.example/"),
    ("/api/system/info?token=T&keep=yes", "/api/system/info?keep=yes"),
])
async def test_token_redirect_stays_on_this_service(aiohttp_server, target, location):
    """The `?token=` exchange redirects to a path of this service, never to a scheme-relative `//host` URL."""
    server = await aiohttp_server(create_app(ServiceConfig(node_id="r", interval=3600.0, history=5, token="T")))
    reader, writer = await asyncio.open_connection(server.host, server.port)  # raw: no client rewrites the target
    writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    status, headers, _ = parse_response(await asyncio.wait_for(reader.read(), DEADLINE))
    writer.close()
    assert status == 303
    assert headers["location"] == location


# --- Defect 8: a shared portfile ----------------------------------------------------------------------------

def test_a_service_leaves_a_portfile_another_service_wrote_over(tmp_path):
    """Two services, one portfile: the first to stop leaves the second's file; the second removes it on exit."""
    first = Service(tmp_path, "--node-id", "first")
    portfile = first.portfile
    with open(tmp_path / "second.log", "wb") as second_log:
        second = subprocess.Popen(
            [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--portfile", str(portfile)],
            stdout=subprocess.DEVNULL, stderr=second_log,
        )
        try:
            wait_until(lambda: json.loads(portfile.read_text())["pid"] == second.pid, "the second service's portfile")
            assert first.stop() == 0
            assert json.loads(portfile.read_text())["pid"] == second.pid
            second.send_signal(signal.SIGTERM)
            assert second.wait(DEADLINE) == 0
            assert not portfile.exists()
        finally:
            if second.poll() is None:
                second.kill()
                second.wait(DEADLINE)
        first.kill()


def test_remove_portfile_checks_the_pid(tmp_path):
    """remove_portfile deletes only a file naming this pid; another pid's or unreadable content stays."""
    path = tmp_path / "port.json"
    path.write_text(json.dumps({"pid": 1}))
    remove_portfile(str(path), 2)
    assert path.exists()
    path.write_text("not json")
    remove_portfile(str(path), 2)
    assert path.exists()
    path.write_text(json.dumps({"pid": 2}))
    remove_portfile(str(path), 2)
    assert not path.exists()


# --- Defect 11 (runner): SIGTERM during start-up ------------------------------------------------------------

def _catches_sigterm(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except FileNotFoundError:
        pass
    return False


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_as_soon_as_it_is_caught_stops_start_up_with_exit_0(tmp_path, attempt):
    """SIGTERM sent the moment the process first catches it exits 0 and the service never starts listening."""
    portfile = tmp_path / "port.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--portfile", str(portfile)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        end = time.monotonic() + DEADLINE
        while not _catches_sigterm(proc.pid):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < end, "the process never caught SIGTERM"
            time.sleep(0.001)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 0, stderr.decode()
        assert "serving on" not in stderr.decode()
        assert not portfile.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=DEADLINE)


# --- The new limits are flags with checked values -----------------------------------------------------------

@pytest.mark.parametrize(("field", "value"), [
    ("max_connections", 0), ("keepalive_timeout", 0.0), ("header_timeout", float("nan")),
    ("write_timeout", -1.0), ("max_history_streams", 0), ("max_history_streams", 2_000_000),
])
def test_limit_values_are_checked(field, value):
    """Each new limit rejects a value outside its range with a ConfigError naming it."""
    with pytest.raises(ConfigError, match=field.split("_")[1]):
        ServiceConfig(**{field: value})


def test_limit_flags_default_to_the_config_defaults():
    """Each new limit is a `serve` flag whose default is the ServiceConfig default (one definition, two doors)."""
    from tracklab_sysmon.cli import serve

    defaults = {param.name: param.default for param in serve.params}
    config = ServiceConfig()
    for name, expected in (("max_connections", 8192), ("keepalive_timeout", 5.0), ("header_timeout", 5.0),
                           ("write_timeout", 10.0), ("max_history_streams", 32)):
        assert defaults[name] == getattr(config, name) == expected, name
