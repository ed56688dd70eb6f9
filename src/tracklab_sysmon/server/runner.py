"""Runs the app as a process: bind, portfile, signals, parent watch, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile

from aiohttp import web

from ..config import ServiceConfig
from ..errors import SysmonError
from ..platforms import select
from .app import create_app
from .parent import watch_parent
from .security import PathOnlyAccessLogger
from .signals import install_stop_signals

log = logging.getLogger(__name__)
SHUTDOWN_SECONDS = 4.0  # the process contract allows 5 s from SIGTERM to exit


class BindError(SysmonError):
    """The listening socket could not be opened (port taken, address not local, ...)."""


async def serve(config: ServiceConfig) -> None:
    """Serve until SIGTERM/SIGINT or the parent process exits."""
    stop = asyncio.Event()
    choice = select(collectors=config.collectors)
    install_stop_signals(stop, choice)
    app = create_app(config)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if config.verbose else None,
        access_log_class=PathOnlyAccessLogger,  # no query strings: a ?token= must never be logged
        shutdown_timeout=1.0,
    )
    await runner.setup()
    wrote_portfile = False
    try:
        site = web.TCPSite(runner, config.host, config.port)
        try:
            await site.start()
        except OSError as exc:
            raise BindError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
        host, port = runner.addresses[0][:2]
        url = f"http://{_url_host(host)}:{port}"
        if config.portfile:
            write_portfile(config.portfile, {"host": host, "port": port, "pid": os.getpid(), "url": url})
            wrote_portfile = True
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
        except asyncio.TimeoutError:
            log.warning("shutdown took longer than %.0f s; exiting anyway", SHUTDOWN_SECONDS)
        if wrote_portfile:  # never remove a portfile that another instance wrote
            with contextlib.suppress(FileNotFoundError):
                os.unlink(config.portfile)


def write_portfile(path: str, data: dict) -> None:
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
