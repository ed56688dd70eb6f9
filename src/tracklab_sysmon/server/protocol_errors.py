"""Requests aiohttp cannot parse (bad request line, oversized URL or header, NUL, ...) answered as JSON, logged once."""

from __future__ import annotations

import logging

from aiohttp import web

from .errors import json_error
from .lograte import RateLimitFilter

log = logging.getLogger(__name__)
log.addFilter(RateLimitFilter())  # a flood of bad requests is one line per window, never one per request

MALFORMED = "malformed HTTP request"


class JsonErrorRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, with parse errors answered as the service's JSON error body.

    aiohttp answers them in text/plain, echoing the reason (which may quote the request line, and so a
    `?token=`), and logs a traceback per request. Here the log line names only the peer and the kind of
    error, never the request target.
    """

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # part of a response is out: too late for another (as aiohttp does)
            raise ConnectionError("response already started; cannot send an error response")
        kind = type(exc).__name__ if exc is not None else "error"
        if status >= 500:
            log.error("request from %s failed: %s", request.remote, kind, exc_info=exc)  # a bug: keep the traceback
            response = json_error(status, "internal error; see the service log", "internal_error")
        else:
            log.warning("rejected a malformed HTTP request from %s: %s", request.remote, kind)
            response = json_error(status, f"{MALFORMED} ({kind})")
        response.force_close()
        return response
