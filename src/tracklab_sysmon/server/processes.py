"""GET /api/system/processes and /api/system/processes/{pid}: the process list, collected only while asked for.

One collection per sampler tick, shared by every request of that tick (`ProcessCache`); the /proc
walk and the per-row reads run in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import cast

from aiohttp import web

from .. import wire
from ..collectors.gpu_procs import GpuProcessReader
from ..collectors.processes import ProcessesCollector, ProcessTable
from ..errors import Unavailable
from ..model import ProcessSort
from . import keys
from .errors import json_error
from .routes import _int_param

DEFAULT_TOP = 20  # rows when `top` is not given
MAX_TOP = 1000
MAX_PID = 1 << 22  # the kernel's largest pid_max (PID_MAX_LIMIT on 64-bit)
_TRUE, _FALSE = ("1", "true"), ("0", "false")


class ProcessCache:
    """At most one collection per tick: requests of the same tick await the same one."""

    def __init__(self, collector: ProcessesCollector, tick: Callable[[], int]) -> None:
        self.collector = collector
        self._tick = tick
        self._tick_of_pending: int | None = None
        self._pending: asyncio.Task[tuple[ProcessTable, int]] | None = None

    async def table(self) -> tuple[ProcessTable, int]:
        """This tick's collection and its wall-clock time (ms since the epoch); `Unavailable` without /proc."""
        tick = self._tick()
        if self._pending is None or self._tick_of_pending != tick:
            self._tick_of_pending = tick
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._collect))
        # Shielded: one impatient client that disconnects must not cancel the others' collection.
        return await asyncio.shield(self._pending)

    def _collect(self) -> tuple[ProcessTable, int]:
        timestamp = round(time.time() * 1000)
        return self.collector.collect(time.monotonic()), timestamp


PROCESSES = web.AppKey("processes", ProcessCache)


def setup_processes(app: web.Application, collector: ProcessesCollector | None = None) -> None:
    """Register the routes; `collector` defaults to one over the configured proc_root."""
    sampler = app[keys.SAMPLER]
    config = app[keys.CONFIG]
    if collector is None:  # GPU use per process: NVML only on the host, DRM fdinfo under the roots
        gpus = GpuProcessReader(config.proc_root, config.sys_root, nvidia=config.on_host,
                                dev_root="/dev" if config.on_host else None)
        collector = ProcessesCollector(config.proc_root, gpu_usage=gpus.gpu_usage_by_pid)
    app[PROCESSES] = ProcessCache(collector, lambda: sampler.ticks)
    app.router.add_get("/api/system/processes", list_processes)
    app.router.add_get("/api/system/processes/{pid}", one_process)


async def list_processes(request: web.Request) -> web.Response:
    query = request.query
    try:
        top = _int_param(query, "top", 1, MAX_TOP) or DEFAULT_TOP
        sort = _sort(query.get("sort", "cpu"))
        user = query.get("user")
        if user is not None and not user:
            raise ValueError("user must be a user name or a numeric uid, got an empty value")
    except ValueError as exc:
        return json_error(400, str(exc))
    table, timestamp = await _collection(request)
    rows = await asyncio.to_thread(table.top, top, sort, user)
    body = wire.processes_body(timestamp, query.get("sort", "cpu"), rows, len(table))
    return web.Response(body=wire.encode(body), content_type="application/json")


async def one_process(request: web.Request) -> web.Response:
    try:
        pid = _int_param(request.match_info, "pid", 1, MAX_PID)
        with_tree = _flag(request.query, "tree")
    except ValueError as exc:
        return json_error(400, str(exc))
    assert pid is not None  # the route's pattern always has one
    table, timestamp = await _collection(request)
    if pid not in table.stats:
        return json_error(404, f"no process {pid} at the last collection")
    if with_tree:
        tree = await asyncio.to_thread(table.tree, pid)
        body = wire.process_body(timestamp, tree, tree.root)
    else:
        body = wire.process_body(timestamp, None, await asyncio.to_thread(table.row, pid))
    return web.Response(body=wire.encode(body), content_type="application/json")


async def _collection(request: web.Request) -> tuple[ProcessTable, int]:
    try:
        return await request.app[PROCESSES].table()
    except Unavailable as exc:  # no /proc (macOS, Windows): the JSON 503 of the error middleware
        raise web.HTTPServiceUnavailable(text=str(exc)) from None


def _sort(value: str) -> ProcessSort:
    if value not in wire.PROCESS_SORTS:
        raise ValueError(f"sort must be one of {', '.join(wire.PROCESS_SORTS)}, got {value[:40]!r}")
    return cast(ProcessSort, wire.PROCESS_SORTS[value])


def _flag(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name, "0")
    if value not in _TRUE + _FALSE:
        raise ValueError(f"{name} must be 1, 0, true or false, got {value[:40]!r}")
    return value in _TRUE
