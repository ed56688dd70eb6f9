"""Token access control: Bearer header or cookie (set from a one-time `?token=` visit), query-free access log."""

from __future__ import annotations

import hashlib
import hmac
from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware

from .errors import json_error

COOKIE = "tracklab_sysmon_token"
QUERY = "token"
OPEN_PATHS = frozenset({"/api/health"})  # liveness probes need no secret and reveal nothing


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
        if token_matches(token, bearer(request)) or token_matches(token, request.cookies.get(COOKIE)):
            return await handler(request)
        if token_matches(token, request.query.get(QUERY)):
            return _exchange_for_cookie(request, token) or await handler(request)
        return json_error(
            401, "a valid token is required (Authorization: Bearer, or visit once with ?token=)",
            **{"WWW-Authenticate": 'Bearer realm="tracklab-sysmon"'},
        )

    return require_token


def _exchange_for_cookie(request: web.Request, token: str) -> web.StreamResponse | None:
    """Answer a browser's `?token=` visit with a cookie and a redirect to the same URL without it.

    A WebSocket handshake cannot follow a redirect, so it is served directly (None).
    """
    if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
        return None
    query = request.url.query.copy()
    query.popall(QUERY)
    response = web.Response(status=303, headers={hdrs.LOCATION: str(request.rel_url.with_query(query))})
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="Strict", path="/", secure=request.secure
    )
    return response


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log lines without query strings or headers, so a `?token=` never reaches a log."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %d %.3fms',
            request.remote, request.method, request.path,
            response.status, response.body_length, time * 1000,
        )
