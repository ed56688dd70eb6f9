"""Runs the app as a process: bind, portfile, signals, parent watch, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import tempfile

from aiohttp import web

from ..config import ServiceConfig
from ..errors import BindError, SysmonError
from .app import create_app
from .security import PathOnlyAccessLogger

log = logging.getLogger(__name__)
SHUTDOWN_SECONDS = 4.0  # the process contract allows 5 s from SIGTERM to exit
PARENT_POLL_SECONDS = 0.5


async def serve(config: ServiceConfig) -> None:
    """Serve until SIGTERM/SIGINT or the parent process exits."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
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
        watcher = _watch_parent(config.parent_pid, stop) if config.parent_pid else None
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


def _watch_parent(pid: int, stop: asyncio.Event) -> asyncio.Task:
    return asyncio.create_task(_wait_for_exit(pid, stop), name="tracklab-sysmon-parent-watch")


async def _wait_for_exit(pid: int, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        log.warning("parent process %d is already gone; stopping", pid)
        stop.set()
        return
    except (AttributeError, OSError):  # no pidfd (old kernel, seccomp): poll instead
        while _alive(pid):
            await asyncio.sleep(PARENT_POLL_SECONDS)
        stop.set()
        return
    gone = asyncio.Event()
    loop.add_reader(fd, gone.set)
    try:
        await gone.wait()
        log.warning("parent process %d exited; stopping", pid)
        stop.set()
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
