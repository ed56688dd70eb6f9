"""The aiohttp application factory: config in, wired app out (sampler started in cleanup_ctx)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from .. import wire
from ..collectors import close_collectors, default_collectors
from ..collectors.backend import portable_choice
from ..collectors.base import Collector
from ..collectors.processes import ProcessesCollector
from ..collectors.system import host_name, system_info_for
from ..config import ServiceConfig
from ..ring import SnapshotRing
from ..sampler import Sampler
from . import keys
from .bus import SnapshotBus
from .dashboard import setup_dashboard
from .errors import error_middleware
from .peers import setup_peers
from .processes import setup_processes
from .prometheus_route import setup_prometheus
from .routes import ROUTES
from .security import host_middleware, token_middleware
from .writes import HISTORY_STREAMS, StreamSlots, write_deadline_middleware
from .ws import setup as setup_websocket


def create_app(
    config: ServiceConfig, *, collectors: Sequence[Collector] | None = None,
    processes: ProcessesCollector | None = None,
) -> web.Application:
    """Build the app; the sampler primes and publishes its first snapshot before serving."""
    # Outermost: writes every response under the stall deadline, errors included.
    app = web.Application(middlewares=[write_deadline_middleware(config.write_timeout), error_middleware])
    if config.token is not None:  # inside the error middleware, so refusals are JSON too
        app.middlewares.append(token_middleware(config.token))
    else:  # no secret to ask for: refuse DNS-rebound names instead (see security.host_middleware)
        app.middlewares.append(host_middleware(config))
    if collectors is None:
        collectors = default_collectors(
            # A captured tree holds no file systems to stat, so its disk usage is unknown.
            config.proc_root, config.sys_root, statvfs=getattr(os, "statvfs", None) if config.on_host else None,
            enable_dcgm=config.enable_dcgm, host_gpus=config.on_host, backend=config.collectors, cgroup=config.cgroup,
            interval=config.interval, tpu_address=config.tpu_metrics_addr,
        )
    app[keys.CONFIG] = config
    app[HISTORY_STREAMS] = StreamSlots(config.max_history_streams)
    app[keys.SAMPLER] = Sampler(
        collectors,
        node_id=config.node_id or host_name(config.proc_root, config.sys_root),
        interval=config.interval,
        ring=SnapshotRing(config.history, config.history_mib * 2**20),
    )
    bus = app[keys.BUS] = SnapshotBus()
    app[keys.SAMPLER].add_listener(lambda snapshot, encoded: bus.publish(snapshot.node_id, encoded))
    app[keys.STARTED_AT] = time.monotonic()
    app.router.add_routes(ROUTES)
    setup_websocket(app)  # /ws/system-metrics, subscribed to the bus; closes sockets on shutdown
    setup_peers(app)
    setup_processes(app, processes)  # /api/system/processes: collected only while asked for
    setup_prometheus(app)
    setup_dashboard(app)  # GET / and /static/: the live page, no build step
    app.cleanup_ctx.append(_sampling)
    return app


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    sampler = app[keys.SAMPLER]
    first = await sampler.start()
    # Read once the first snapshot exists: GPUs and the disk total come from it.
    info = system_info_for(first, proc_root=app[keys.CONFIG].proc_root, sys_root=app[keys.CONFIG].sys_root)
    if portable_choice(sampler.collectors) is not None:  # macOS/Windows: no /proc to read it from
        from ..collectors.portable.system import fill_from_psutil

        info = fill_from_psutil(sampler.collectors, info)
    app[keys.SYSTEM_INFO_BYTES] = wire.encode(wire.system_info_to_wire(info))
    task = asyncio.create_task(sampler.run(), name="tracklab-sysmon-sampler")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # Child processes (neuron-monitor, hl-smi) and channels go with the service; closing may wait ~1 s.
    await asyncio.to_thread(close_collectors, sampler.collectors)
