"""Async client for the service's REST and WebSocket API, with errors mapped once at the boundary.

Every failure a caller can see is one of these (defined in `errors`, all `SysmonError`s)::

    ClientError                  base of everything this module raises
    ├── ServiceUnavailable       no connection, connection lost, timed out
    ├── ProtocolError            the service answered something that is not the expected JSON
    └── ResponseError            the service answered with an error (HTTP 4xx/5xx or an
        │                        `{"type": "error"}` WebSocket frame); `.status`, `.code`
        └── NotFound             404: unknown route or node_id

aiohttp's and asyncio's own exceptions never leave this module: `_request` and `_connect_ws`
are the only places that talk to the network, and they translate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Literal, TypeVar, overload

import aiohttp
import orjson

from . import wire
from .errors import ClientError, NotFound, ProtocolError, ResponseError, ServiceUnavailable, WireError
from .model import ProcessSample, ProcessSort, ProcessTree
from .protocol import TOKEN_ENV, WS_PATH, auth_headers, frame_node_id, subscribe_message

J = TypeVar("J", dict[str, Any], list[Any])  # the JSON container a route answers with
DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "TRACKLAB_SYSMON_URL"  # default base URL for clients made without one
DEFAULT_TIMEOUT = 10.0


def default_url() -> str:
    """The base URL used when none is given: `$TRACKLAB_SYSMON_URL`, else 127.0.0.1:8080."""
    return os.environ.get(URL_ENV) or DEFAULT_URL


def default_token() -> str | None:
    """The token used when none is given: `$TRACKLAB_SYSMON_TOKEN`, else none."""
    return os.environ.get(TOKEN_ENV) or None


def ws_url(base_url: str) -> str:
    """The WebSocket URL of the metrics stream for a service's http(s) base URL."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):] + WS_PATH
    if base.startswith("http://"):
        return "ws://" + base[len("http://"):] + WS_PATH
    raise ValueError(f"base URL must start with http:// or https://, got {base_url!r}")


class SystemMonitorClient:
    """One service's REST + WebSocket API; use as `async with SystemMonitorClient(url) as c:`."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        token: str | None = None,
    ) -> None:
        self.base_url = (base_url or default_url()).rstrip("/")
        self._headers = auth_headers(token or default_token())  # the token itself is kept nowhere else
        self.ws_url = ws_url(self.base_url)  # validates the scheme up front
        self.timeout = timeout
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> SystemMonitorClient:
        self._ensure_session()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session this client made itself (an injected one stays open)."""
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise ClientError("the injected session is closed")
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    # -- REST ------------------------------------------------------------------------------

    async def health_check(self) -> bool:
        """True when the service answers its health route; never raises (except cancellation)."""
        try:
            body = await self.get_health()
        except ClientError:
            return False
        return isinstance(body, dict) and body.get("status") in ("healthy", "degraded")

    async def get_health(self) -> dict[str, Any]:
        """`GET /api/health`: status, collectors' health, the service's own cost."""
        return _expect(await self._request("/api/health"), dict, "/api/health")

    async def get_system_info(self) -> dict[str, Any]:
        """`GET /api/system/info`: static facts (platform, cpu_cores, memory_total, ...)."""
        return _expect(await self._request("/api/system/info"), dict, "/api/system/info")

    async def get_metrics(self, node_id: str | None = None) -> list[dict[str, Any]]:
        """`GET /api/system/metrics`: the latest snapshot of every node (or of one)."""
        params = {"node_id": node_id} if node_id is not None else None
        return _expect(await self._request("/api/system/metrics", params), list, "/api/system/metrics")

    async def get_formatted_metrics(self, node_id: str | None = None) -> dict[str, Any]:
        """One node's latest snapshot (the local node by default), e.g. `m['cpu']['overall']`."""
        nodes = await self.get_metrics(node_id)
        if not nodes or not isinstance(nodes[0], dict):
            raise ProtocolError("the service returned no snapshot yet")
        return nodes[0]

    async def get_history(
        self, node_id: str | None = None, *, since: int | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """`GET /api/system/metrics/history`: kept snapshots, oldest first (`since` in ms)."""
        params = {
            key: str(value)
            for key, value in (("node_id", node_id), ("since", since), ("limit", limit))
            if value is not None
        }
        path = "/api/system/metrics/history"
        return _expect(await self._request(path, params or None), list, path)

    async def get_processes(
        self, *, top: int | None = None, sort: ProcessSort = "cpu", user: str | None = None
    ) -> tuple[ProcessSample, ...]:
        """`GET /api/system/processes`: the `top` processes by `sort` (cpu, memory or gpu_memory), of `user`."""
        wire_sort = {name: key for key, name in wire.PROCESS_SORTS.items()}.get(sort)
        if wire_sort is None:
            raise ValueError(f"sort must be one of {', '.join(wire.PROCESS_SORTS.values())}, got {sort!r}")
        params = {"sort": wire_sort} | {k: str(v) for k, v in (("top", top), ("user", user)) if v is not None}
        path = "/api/system/processes"
        return _decoded(wire.processes_from_wire, _expect(await self._request(path, params), dict, path), path)

    @overload
    async def get_process(self, pid: int, tree: Literal[True]) -> ProcessTree: ...
    @overload
    async def get_process(self, pid: int, tree: Literal[False] = False) -> ProcessSample: ...

    async def get_process(self, pid: int, tree: bool = False) -> ProcessSample | ProcessTree:
        """`GET /api/system/processes/{pid}`: one process, or with `tree` it and its descendants summed."""
        path = f"/api/system/processes/{pid}"
        body = _expect(await self._request(path, {"tree": "1" if tree else "0"}), dict, path)
        proc, summed = _decoded(wire.process_from_wire, body, path)
        if tree and summed is None:
            raise ProtocolError(f"{path}: the answer has no tree")
        return summed if tree and summed is not None else proc

    async def _request(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET `path` and decode JSON: the one place REST errors are translated."""
        session = self._ensure_session()
        url = self.base_url + path
        try:
            async with session.get(
                url, params=params, headers=self._headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise ServiceUnavailable(f"{url}: no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise ServiceUnavailable(f"{url}: {exc or type(exc).__name__}") from None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            if status >= 400:
                raise _response_error(status, None, f"{url}: HTTP {status}") from None
            raise ProtocolError(f"{url}: answer is not JSON ({body[:80]!r})") from None
        if status >= 400:
            code, message = _error_fields(data)
            raise _response_error(status, code, f"{url}: HTTP {status}: {message}")
        return data

    # -- WebSocket -------------------------------------------------------------------------

    async def stream(
        self,
        node_id: str | None = None,
        *,
        every: int = 1,
        reconnect: bool = True,
        retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield each new snapshot pushed over `/ws/system-metrics`, reconnecting when dropped.

        `node_id`/`every` are sent as a subscribe message (every n-th tick of that node). With
        `reconnect=False` a lost connection raises `ServiceUnavailable` instead; an error frame
        from the service raises `ResponseError` either way, except `unknown_node` for a node this
        stream has already seen: a restarted aggregator knows a peer only once it publishes again,
        so that is retried like an outage.
        """
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        delay = retry_delay
        seen = False  # the service has known node_id during this stream
        while True:
            try:
                async with contextlib.aclosing(self.frames(node_id, every=every)) as frames:
                    async for frame in frames:
                        kind = frame.get("type")
                        if node_id is not None and kind in ("subscribed", "metrics"):
                            seen = seen or frame_node_id(frame) == node_id
                        if kind != "metrics" or not isinstance(frame.get("data"), dict):
                            continue
                        # Frames sent before the service read our subscribe may be for other nodes.
                        if node_id is None or frame_node_id(frame) == node_id:
                            delay = retry_delay  # data flows again: the next outage starts over
                            yield frame["data"]
            except ServiceUnavailable:
                if not reconnect:
                    raise
            except NotFound as exc:
                if not (reconnect and seen and exc.code == "unknown_node"):
                    raise
            else:
                if not reconnect:
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_retry_delay)

    async def frames(self, node_id: str | None = None, *, every: int = 1) -> AsyncGenerator[dict[str, Any]]:
        """Every frame of one WebSocket connection (info, metrics, pong) until the server closes it."""
        session = self._ensure_session()
        ws = await self._connect_ws(session)
        try:
            if node_id is not None or every != 1:
                await _ws_send(ws, subscribe_message(node_id, every), self.ws_url)
            while True:
                frame = await _ws_receive(ws, self.ws_url)
                if frame is None:
                    return
                if frame.get("type") == "error":
                    code, message_text = _error_fields(frame)
                    raise _response_error(None, code, f"{self.ws_url}: {message_text}")
                yield frame
        finally:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _connect_ws(self, session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        """Open the stream socket: the one place WebSocket handshake errors are translated."""
        try:
            # The heartbeat notices a dead service even when no frame is due for a long time.
            return await session.ws_connect(
                self.ws_url, headers=self._headers, heartbeat=max(self.timeout / 2, 1.0)
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 404:
                raise NotFound(f"{self.ws_url}: no WebSocket endpoint (HTTP 404)", status=404) from None
            raise _response_error(exc.status, None, f"{self.ws_url}: handshake refused ({exc.status})") from None
        except TimeoutError:
            raise ServiceUnavailable(f"{self.ws_url}: no answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise ServiceUnavailable(f"{self.ws_url}: {exc or type(exc).__name__}") from None


async def _ws_send(ws: aiohttp.ClientWebSocketResponse, message: str, url: str) -> None:
    try:
        await ws.send_str(message)
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise ServiceUnavailable(f"{url}: {exc or type(exc).__name__}") from None


async def _ws_receive(ws: aiohttp.ClientWebSocketResponse, url: str) -> dict[str, Any] | None:
    """The next JSON frame; None on a clean close; ServiceUnavailable on a lost connection."""
    try:
        msg = await ws.receive()
    except (TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
        raise ServiceUnavailable(f"{url}: {exc or type(exc).__name__}") from None
    if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
        try:
            frame = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            raise ProtocolError(f"{url}: frame is not JSON ({str(msg.data)[:80]!r})") from None
        if not isinstance(frame, dict):
            raise ProtocolError(f"{url}: frame is not a JSON object")
        return frame
    if msg.type == aiohttp.WSMsgType.ERROR:
        raise ServiceUnavailable(f"{url}: {ws.exception() or 'connection error'}")
    # CLOSE / CLOSING / CLOSED: a going-away close (1001, service stopping) is still an outage.
    code = ws.close_code
    if code in (None, 1000):
        return None
    raise ServiceUnavailable(f"{url}: closed by the service (code {code})")


def _error_fields(data: Any) -> tuple[str | None, str]:
    """(code, message) from `{"error": {...}}`, `{"type": "error", ...}` or anything else."""
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict):
            return inner.get("code"), str(inner.get("message", inner))
        if isinstance(inner, str):
            return data.get("code"), inner
        if "message" in data:
            return data.get("code"), str(data["message"])
    return None, str(data)[:200]


def _response_error(status: int | None, code: str | None, message: str) -> ResponseError:
    if status == 404 or code in ("not_found", "unknown_node"):
        return NotFound(message, status=status, code=code)
    return ResponseError(message, status=status, code=code)


D = TypeVar("D")


def _decoded(decode: Callable[[Any], D], data: Any, path: str) -> D:
    try:
        return decode(data)
    except WireError as exc:
        raise ProtocolError(f"{path}: {exc}") from None


def _expect(data: Any, kind: type[J], path: str) -> J:
    if not isinstance(data, kind):
        raise ProtocolError(f"{path}: expected a JSON {kind.__name__}, got {type(data).__name__}")
    return data
