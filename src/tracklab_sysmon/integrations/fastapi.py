"""FastAPI relay: `/ws/system-metrics` on a FastAPI app, piped to the service's own WebSocket.

Needs the `fastapi` extra (`pip install 'tracklab-sysmon[fastapi]'`). Each browser socket gets
one upstream socket to the service, and frames pass through unchanged in both directions
(the service already encodes each frame once and fans it out cheaply), so the browser sees
the service's protocol exactly: info, metrics, subscribe, ping/pong, errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import aiohttp
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from ..client import default_token, default_url, ws_url
from ..protocol import WS_PATH, auth_headers, error_payload, normalize_origin, origin_allowed

log = logging.getLogger(__name__)
MAX_MESSAGE = 64 * 1024  # a browser's subscribe/ping is tiny; the service applies its own cap
CLOSE_POLICY = 1008
CLOSE_UNAVAILABLE = 1011
CLOSE_TOO_BIG = 1009


def setup_websocket_routes(
    app: FastAPI,
    service_url: str | None = None,
    *,
    path: str = WS_PATH,
    allow_origins: Iterable[str] = (),
    token: str | None = None,
) -> None:
    """Add `path` to `app`, relaying `service_url`'s metrics stream (default `$TRACKLAB_SYSMON_URL`).

    `token` (default `$TRACKLAB_SYSMON_TOKEN`) is sent to a service started with `--token`;
    it stays on the server side, so the browser never sees it.

    Browsers are accepted from the app's own origin (when reached by address or `localhost`) and
    from `allow_origins`; clients that send no Origin (scripts) are accepted too, as on the
    service itself, so a page on another site cannot read metrics through a user's browser.
    """
    upstream = ws_url(service_url or default_url())
    headers = auth_headers(token or default_token())
    allowed = tuple(o if o == "*" else normalize_origin(o) for o in allow_origins)

    @app.websocket(path)
    async def system_metrics_relay(websocket: WebSocket) -> None:
        if not _origin_ok(websocket, allowed):
            await websocket.close(code=CLOSE_POLICY, reason="origin not allowed")
            return
        await websocket.accept()
        await _relay(websocket, upstream, headers)


def _origin_ok(websocket: WebSocket, allowed: tuple[str, ...]) -> bool:
    """The service's own rule: no Origin (a script), this app's origin, or an allowed one."""
    scheme = "https" if websocket.url.scheme == "wss" else "http"
    return origin_allowed(
        websocket.headers.get("origin"), scheme=scheme, host=websocket.headers.get("host", ""), allowed=allowed
    )


async def _relay(websocket: WebSocket, upstream_url: str, headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as session:
        try:
            upstream = await session.ws_connect(upstream_url, headers=headers, heartbeat=10.0, max_msg_size=0)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.warning("system monitor stream %s unavailable: %s", upstream_url, exc)
            message = "system monitor not available"
            if isinstance(exc, aiohttp.WSServerHandshakeError):  # e.g. 401: the relay's token is wrong
                message = f"system monitor refused the stream (HTTP {exc.status})"
            await _send_error(websocket, "unavailable", message)
            await websocket.close(code=CLOSE_UNAVAILABLE)
            return
        async with upstream:
            down = asyncio.create_task(_downstream(upstream, websocket))
            up = asyncio.create_task(_upstream(websocket, upstream))
            try:
                done, _ = await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (down, up):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if down in done:  # the service went away first: tell the browser why
                code = upstream.close_code if upstream.close_code in (1000, 1001, 1009) else CLOSE_UNAVAILABLE
                with contextlib.suppress(Exception):
                    await websocket.close(code=code)


async def _downstream(upstream: aiohttp.ClientWebSocketResponse, websocket: WebSocket) -> None:
    """Service -> browser, frame by frame, text kept as text (no decode, no re-encode)."""
    async for msg in upstream:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await websocket.send_text(msg.data)
        elif msg.type == aiohttp.WSMsgType.BINARY:
            await websocket.send_bytes(msg.data)
        else:
            break


async def _upstream(websocket: WebSocket, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Browser -> service (subscribe, ping); ends when the browser leaves."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text, data = message.get("text"), message.get("bytes")
            size = len(text.encode()) if text is not None else len(data or b"")
            if size > MAX_MESSAGE:
                await websocket.close(code=CLOSE_TOO_BIG)
                return
            if text is not None:
                await upstream.send_str(text)
            elif data is not None:
                await upstream.send_bytes(data)
    except WebSocketDisconnect:
        return


async def _send_error(websocket: WebSocket, code: str, message: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(error_payload(code, message).decode())
