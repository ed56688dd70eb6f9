"""Runs the app as a process: bind, portfile, signals, parent watch, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import tempfile

from aiohttp import web

from ..config import ServiceConfig
from ..errors import BindError, SysmonError
from ..platforms import PlatformChoice, select
from .app import create_app
from .connections import (
    ACCEPT_BATCH,
    ConnectionLimits,
    GuardedRunner,
    connection_cap,
    deepen_listen_queue,
    raise_open_file_limit,
)
from .early_stop import stop_requested
from .lograte import rate_limited_handlers
from .parent import watch_parent
from .security import PathOnlyAccessLogger
from .signals import install_stop_signals

log = logging.getLogger(__name__)
SHUTDOWN_SECONDS = 4.0  # the process contract allows 5 s from SIGTERM to exit


async def serve(config: ServiceConfig) -> None:
    """Serve until SIGTERM/SIGINT or the parent process exits."""
    stop = asyncio.Event()
    choice = select(collectors=config.collectors)
    install_stop_signals(stop, choice)
    if stop_requested():  # a signal came during start-up (see early_stop): stop before serving anything
        return
    with rate_limited_handlers():  # repeated errors (an accept() EMFILE storm) log one line per window
        await _serve(config, stop, choice)


async def _serve(config: ServiceConfig, stop: asyncio.Event, choice: PlatformChoice) -> None:
    app = create_app(config)
    limits = ConnectionLimits(
        max_connections=connection_cap(config.max_connections, raise_open_file_limit()),
        header_timeout=config.header_timeout,
    )
    runner = GuardedRunner(
        app,
        limits=limits,
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if config.verbose else None,
        access_log_class=PathOnlyAccessLogger,  # no query strings: a ?token= must never be logged
        keepalive_timeout=config.keepalive_timeout,
        shutdown_timeout=1.0,
    )
    await runner.setup()
    wrote_portfile = False
    try:
        if stop.is_set():  # SIGTERM while the first snapshot was taken: never start listening
            return
        site = web.TCPSite(runner, config.host, config.port, backlog=ACCEPT_BATCH)
        try:
            await site.start()
        except OSError as exc:
            raise BindError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
        deepen_listen_queue(site)
        host, port = runner.addresses[0][:2]
        url = f"http://{_url_host(host)}:{port}"
        if config.portfile:
            write_portfile(config.portfile, {"host": host, "port": port, "pid": os.getpid(), "url": url})
            wrote_portfile = True
        gc.freeze()  # what start-up built lives for good: full collections need not walk it again
        print(f"tracklab-sysmon: serving on {url}", file=sys.stderr, flush=True)
        if config.insecure and config.token is None:
            print("tracklab-sysmon: warning: --insecure: no token, anyone who can connect reads the metrics",
                  file=sys.stderr, flush=True)
        watcher = watch_parent(config.parent_pid, stop, choice) if config.parent_pid else None
        await stop.wait()
        if watcher:
            watcher.cancel()
    finally:
        try:
            await asyncio.wait_for(runner.cleanup(), SHUTDOWN_SECONDS)
        except TimeoutError:
            log.warning("shutdown took longer than %.0f s; exiting anyway", SHUTDOWN_SECONDS)
        if wrote_portfile and config.portfile:
            remove_portfile(config.portfile, os.getpid())


def remove_portfile(path: str, pid: int) -> None:
    """Remove the portfile only if it still names `pid`: another instance may have written over it."""
    try:
        with open(path, encoding="utf-8") as handle:
            owner = json.load(handle).get("pid")
    except (OSError, ValueError, AttributeError):  # gone, unreadable or not ours to judge: leave it
        return
    if owner == pid:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def write_portfile(path: str, data: dict[str, object]) -> None:
    """Write JSON atomically: a temp file in the same folder, then rename over the target."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".portfile-", dir=folder)
    except OSError as exc:
        raise SysmonError(f"cannot write portfile {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
