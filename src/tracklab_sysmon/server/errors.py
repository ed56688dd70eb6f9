"""Every error leaves the server as JSON `{"error": {"code", "message"}}`; no traceback ever does."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from .. import wire

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    503: "unavailable",
}


def json_error(status: int, message: str, code: str | None = None, **headers: str) -> web.Response:
    body = wire.encode(wire.error_body(code or _CODES.get(status, "error"), message))
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return json_error(exc.status, message, **headers)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal error; see the service log", "internal_error")
