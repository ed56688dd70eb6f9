"""Token access control: which routes need it, header/cookie/one-time query, bind refusal, logs free of tokens."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import aiohttp
import pytest

from tracklab_sysmon.config import ServiceConfig, is_loopback
from tracklab_sysmon.errors import ConfigError
from tracklab_sysmon.server import create_app
from tracklab_sysmon.server.security import COOKIE, token_matches

TOKEN = "s3cret-token-value"
PROTECTED = ("/api/system/info", "/api/system/metrics", "/api/system/metrics/history",
             "/api/system/nodes", "/metrics")


@pytest.fixture
async def client(aiohttp_client):
    return await aiohttp_client(create_app(ServiceConfig(node_id="guarded", interval=3600.0, history=5, token=TOKEN)))


def test_token_comparison():
    """Only the exact token matches; a prefix, a longer string, an empty or missing one do not."""
    assert token_matches(TOKEN, TOKEN)
    for other in (TOKEN[:-1], TOKEN + "x", "", None, TOKEN.upper()):
        assert not token_matches(TOKEN, other)


async def test_every_route_but_health_needs_the_token(client):
    """Without a token each route answers 401 with a JSON error and a Bearer challenge; /api/health stays open."""
    assert (await client.get("/api/health")).status == 200
    for path in PROTECTED:
        response = await client.get(path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json())["error"]["code"] == "unauthorized"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws/system-metrics")
    assert refused.value.status == 401


async def test_bearer_header(client):
    """`Authorization: Bearer <token>` opens every route; a wrong token or another scheme does not."""
    for path in PROTECTED:
        assert (await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})).status == 200, path
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})).status == 401


async def test_one_time_query_token_becomes_a_cookie(client):
    """A `?token=` visit is redirected to the same URL without it, with an HttpOnly SameSite cookie that then works."""
    response = await client.get("/api/system/metrics", params={"token": TOKEN, "node_id": "guarded"},
                                allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/api/system/metrics?node_id=guarded"
    cookie = response.cookies[COOKIE]
    assert cookie.value == TOKEN and cookie["httponly"] and cookie["samesite"] == "Strict"
    assert (await client.get("/api/system/metrics", params={"node_id": "guarded"})).status == 200
    async with client.ws_connect("/ws/system-metrics") as ws:  # the cookie rides on the handshake
        assert (await ws.receive_json(timeout=10))["type"] == "info"


async def test_wrong_query_token_or_cookie(client):
    """A wrong `?token=` or cookie gets 401, with no cookie set."""
    response = await client.get("/api/system/metrics", params={"token": "nope"}, allow_redirects=False)
    assert response.status == 401 and COOKIE not in response.cookies
    client.session.cookie_jar.update_cookies({COOKIE: "nope"})
    assert (await client.get("/api/system/metrics")).status == 401


async def test_websocket_handshake_with_query_token(client):
    """A WebSocket handshake cannot follow a redirect, so `?token=` on it is accepted directly."""
    async with client.ws_connect(f"/ws/system-metrics?token={TOKEN}") as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "info"


def test_non_loopback_bind_needs_a_token_or_insecure():
    """Binding beyond loopback is refused without a token unless --insecure is explicit; loopback never needs one."""
    with pytest.raises(ConfigError, match="--insecure"):
        ServiceConfig(host="0.0.0.0")
    assert ServiceConfig(host="0.0.0.0", token=TOKEN).token == TOKEN
    assert ServiceConfig(host="::", insecure=True).insecure
    with pytest.raises(ConfigError, match="empty"):
        ServiceConfig(token=" ")
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "localhost", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.10", "example.org", ""))


def test_token_is_not_in_the_config_repr():
    """The token never appears in the config's repr (which may be logged)."""
    assert TOKEN not in repr(ServiceConfig(token=TOKEN))


def test_cli_refuses_open_bind_in_one_line():
    """`serve --host 0.0.0.0` without a token exits non-zero with one readable line and binds nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "tracklab_sysmon", "serve", "--host", "0.0.0.0", "--rest-api-port", "0"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "TRACKLAB_SYSMON_TOKEN": ""},
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--insecure" in lines[0] and "Traceback" not in result.stderr


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Hands a redirect back as an HTTPError, so the test sees the 303 itself."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _request(url: str, token: str | None = None, **headers: str) -> int:
    return _response(url, token, **headers)[0]


def _response(url: str, token: str | None = None, **headers: str) -> tuple[int, dict[str, str]]:
    """Status and headers of the first answer to `url` (redirects are not followed)."""
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.build_opener(_NoRedirect).open(urllib.request.Request(url, headers=headers),
                                                           timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_env_token_and_access_log_without_secrets(tmp_path):
    """TRACKLAB_SYSMON_TOKEN protects a real process, and its verbose access log has paths but never a token."""
    portfile = tmp_path / "port"
    process = subprocess.Popen(
        [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--portfile", str(portfile),
         "--verbose", "--interval", "3600"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env={**os.environ, "TRACKLAB_SYSMON_TOKEN": TOKEN},
    )
    try:
        deadline = time.monotonic() + 20
        while not portfile.exists():
            assert process.poll() is None and time.monotonic() < deadline, "service did not start"
            time.sleep(0.05)
        url = json.loads(portfile.read_text())["url"]
        assert _request(f"{url}/api/system/metrics") == 401
        assert _request(f"{url}/api/system/metrics", TOKEN) == 200
        # The token is exchanged for a cookie and a redirect to the same URL without it.
        status, headers = _response(f"{url}/api/system/info?token={TOKEN}&probe=1")
        assert (status, headers["Location"]) == (303, "/api/system/info?probe=1")
        assert headers["Set-Cookie"].startswith(f"{COOKIE}={TOKEN};")
        assert _request(f"{url}/api/system/info?probe=1") == 401
        assert _request(f"{url}/api/system/info?probe=1", Cookie=f"{COOKIE}={TOKEN}") == 200
    finally:
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=10)
    assert '"GET /api/system/metrics" 401' in log and '"GET /api/system/info" 303' in log
    assert TOKEN not in log and "probe" not in log


# --- Host check without a token (DNS rebinding) ----------------------------------------------

READS = ("/api/health", "/api/system/info", "/api/system/metrics")


def _open_app(**options):
    return create_app(ServiceConfig(**{"node_id": "open", "interval": 3600.0, "history": 5, **options}))


async def test_rebound_host_name_is_refused_without_a_token(aiohttp_client):
    """Without a token, a request whose Host is a DNS name (a rebound page) gets a 403 JSON error on every read."""
    client = await aiohttp_client(_open_app())
    port = client.server.port
    for path in READS:
        response = await client.get(path, headers={"Host": f"evil.example:{port}"})
        assert response.status == 403, path
        body = await response.json()
        assert body["error"]["code"] == "host_not_allowed" and "--allow-origin" in body["error"]["message"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.1", f"LOCALHOST:{port}"):
        for path in READS:
            assert (await client.get(path, headers={"Host": host})).status == 200, (host, path)


async def test_malformed_host_is_a_403_not_a_500(aiohttp_client):
    """A Host header that is not host[:port] is refused with the JSON error body, never a traceback."""
    client = await aiohttp_client(_open_app())
    for host in ("[", "[::1", "evil.example:99999x", "evil.example@127.0.0.1", "127.0.0.1/evil"):
        response = await client.get("/api/system/info", headers={"Host": host})
        assert response.status == 403, host
        assert (await response.json())["error"]["code"] == "host_not_allowed"


async def test_allow_origin_and_bound_names_are_accepted_hosts(aiohttp_client):
    """A name given by --allow-origin (any port) is an accepted Host; `*` accepts every Host."""
    named = await aiohttp_client(_open_app(allow_origins=("http://Metrics.Example:3000",)))
    assert (await named.get("/api/system/info", headers={"Host": "metrics.example:8080"})).status == 200
    assert (await named.get("/api/system/info", headers={"Host": "other.example:8080"})).status == 403
    anything = await aiohttp_client(_open_app(allow_origins=("*",)))
    assert (await anything.get("/api/system/info", headers={"Host": "other.example"})).status == 200


async def test_token_makes_the_host_check_unnecessary(client):
    """With a token, a DNS-name Host is served to a client that presents it (a rebound page cannot)."""
    headers = {"Host": "metrics.example:8080", "Authorization": f"Bearer {TOKEN}"}
    assert (await client.get("/api/system/info", headers=headers)).status == 200
    assert (await client.get("/api/system/info", headers={"Host": "metrics.example:8080"})).status == 401
