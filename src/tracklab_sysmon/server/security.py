"""Access control: a token (Bearer header or cookie), else a Host check against DNS rebinding; query-free logs."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlsplit

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from ..config import ServiceConfig
from ..protocol import is_address
from .errors import json_error

COOKIE = "tracklab_sysmon_token"
QUERY = "token"
OPEN_PATHS = frozenset({"/api/health"})  # liveness probes need no secret and reveal nothing
# The dashboard's page, files and login form hold no data (the page itself asks for the cookie).
OPEN_PAGES, OPEN_PREFIX = frozenset({"/", "/login"}), "/static/"


def token_matches(expected: str, presented: str | None) -> bool:
    """Constant-time comparison; hashing first also hides the token's length."""
    if presented is None:
        return False
    want = hashlib.sha256(expected.encode()).digest()
    got = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(want, got)


def bearer(request: web.BaseRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if any."""
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def token_middleware(token: str) -> Middleware:
    """Require `token` on every route but the open ones (and CORS preflights, which carry no data)."""

    @web.middleware
    async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or request.method == hdrs.METH_OPTIONS:
            return await handler(request)
        if request.path in OPEN_PAGES or request.path.startswith(OPEN_PREFIX):
            return await handler(request)
        if token_matches(token, bearer(request)) or token_matches(token, request.cookies.get(COOKIE)):
            return await handler(request)
        if token_matches(token, request.query.get(QUERY)):
            return _exchange_for_cookie(request, token) or await handler(request)
        return json_error(
            401, "a valid token is required (Authorization: Bearer, or visit once with ?token=)",
            **{"WWW-Authenticate": 'Bearer realm="tracklab-sysmon"'},
        )

    return require_token


def host_names(config: ServiceConfig) -> frozenset[str] | None:
    """DNS names a tokenless service answers to: its --host and the --allow-origin hosts; None: any (`*`)."""
    if "*" in config.allow_origins:  # any page may already read the stream; a rebound one gains nothing
        return None
    names = {urlsplit(origin).hostname for origin in config.allow_origins}  # validated by ServiceConfig
    if not is_address(config.host.strip("[]")):
        names.add(config.host.lower())
    return frozenset(name for name in names if name)


def host_hostname(host: str) -> str | None:
    """The lower-case name or address in a Host header (brackets stripped); None when it is malformed."""
    if any(c in host for c in "@/?#\\ \t"):  # userinfo or a path would make urlsplit read another host
        return None
    try:
        parts = urlsplit(f"//{host}")
        _ = parts.port  # `name:99999` or `name:x` is no host a browser would send
    except ValueError:
        return None
    return parts.hostname or None


def host_middleware(config: ServiceConfig) -> Middleware:
    """Without a token, serve only requests addressed to an IP, `localhost` or a name the user gave.

    A page on evil.example whose name is re-pointed at 127.0.0.1 (DNS rebinding) is same-origin with
    the service to the browser, so CORS does not stop it reading any route; but its requests carry
    `Host: evil.example`. A missing Host is no browser's request (HTTP/1.0 tools), so it passes.
    """
    names = host_names(config)

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get(hdrs.HOST)
        if names is None or host is None:
            return await handler(request)
        name = host_hostname(host)
        if name is not None and (is_address(name) or name in names):
            return await handler(request)
        shown = name or host
        return json_error(
            403, f"Host {shown!r} is not an address of this service; connect by IP address or localhost, "
                 f"or start it with --allow-origin http://{shown}:PORT (or --token)", "host_not_allowed",
        )

    return check_host


def _exchange_for_cookie(request: web.Request, token: str) -> web.StreamResponse | None:
    """Answer a browser's `?token=` visit with a cookie and a redirect to the same URL without it.

    A WebSocket handshake cannot follow a redirect, so it is served directly (None).
    """
    if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
        return None
    query = request.url.query.copy()
    query.popall(QUERY)
    rest = request.rel_url.with_query(query).raw_query_string
    return signed_in_redirect(request, token, local_path(request.rel_url.raw_path) + (f"?{rest}" if rest else ""))


def signed_in_redirect(request: web.Request, token: str, location: str) -> web.Response:
    """A 303 to `location` (a path on this service) that sets the token's HttpOnly cookie."""
    response = web.Response(status=303, headers={hdrs.LOCATION: location})
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", secure=request.secure)
    return response


def local_path(raw_path: str) -> str:
    """`raw_path` as a path on this service that no browser can read as another host.

    `//evil.example/` (and `/\\evil.example/`, which browsers treat alike) would be a scheme-relative URL
    in a Location header: an open redirect. Leading slashes and backslashes collapse to one slash, and
    anything outside the URL path characters is percent-encoded.
    """
    return "/" + quote(raw_path.lstrip("/\\"), safe=_PATH_SAFE)


_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log lines without query strings or headers, so a `?token=` never reaches a log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fms',
            request.remote, request.method, request.path,
            response.status, response.body_length, time * 1000,
        )
