"""Command line: `tracklab-sysmon serve|snapshot|info` and the seed's `system_monitor` command."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

import click

from . import __version__
from .config import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_HISTORY_MIB,
    DEFAULT_HISTORY_STREAMS,
    DEFAULT_KEEPALIVE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WRITE_TIMEOUT,
    DEFAULT_WS_CLIENTS,
    MAX_CONNECTIONS,
    MAX_TIMEOUT,
    MAX_WS_CLIENTS,
    ServiceConfig,
    parse_peer,
)
from .errors import BackendUnavailable, SysmonError

if TYPE_CHECKING:  # loaded only by the commands that sample, to keep `--help` quick
    from .model import Snapshot
    from .sampler import Sampler

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]  # a click option, applied to a command

_ROOT_OPTIONS: list[Decorator] = [
    click.option("--proc-root", default="/proc", show_default=True, type=click.Path(file_okay=False),
                 help="Read procfs from this tree (a captured /proc) instead of /proc."),
    click.option("--sys-root", default="/sys", show_default=True, type=click.Path(file_okay=False),
                 help="Read sysfs from this tree (a captured /sys) instead of /sys."),
    click.option("--collectors", default="auto", show_default=True, type=click.Choice(["auto", "procfs", "psutil"]),
                 help="Collector backend: procfs (Linux /proc + C helper), psutil (any OS); auto: procfs on Linux."),
]

_SERVE_OPTIONS: list[Decorator] = [
    click.option("--portfile", type=click.Path(dir_okay=False),
                 help="Write {host, port, pid, url} as JSON here once listening; removed on exit."),
    click.option("--rest-api-port", "port", default=8080, show_default=True, type=click.IntRange(0, 65535),
                 help="Port for REST and WebSocket; 0 picks a free one."),
    click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind."),
    click.option("--enable-dcgm-profiling", "enable_dcgm", is_flag=True,
                 help="Add DCGM profiling fields for NVIDIA GPUs when DCGM is available."),
    click.option("--verbose", is_flag=True, help="Log collector changes and every request."),
    click.option("--node-id", help="Name of this node in snapshots [default: the hostname]."),
    click.option("--interval", default=1.0, show_default=True, type=float, help="Seconds between samples."),
    click.option("--history", default=3600, show_default=True, type=int, help="Snapshots kept in memory."),
    click.option("--history-mib", default=DEFAULT_HISTORY_MIB, show_default=True, type=int,
                 help="Most MiB of snapshots kept in memory; the oldest go first when either limit is reached."),
    click.option("--parent-pid", type=int, help="Exit when this process exits."),
    click.option("--peer", "peers", multiple=True, metavar="URL[,token=T|,token-env=VAR]",
                 help="Aggregate this node's snapshots too (repeatable), with its own token if it needs one."),
    click.option("--token", envvar="TRACKLAB_SYSMON_TOKEN", show_envvar=True,
                 help="Require this token on every route but /api/health (Bearer header or cookie)."),
    click.option("--insecure", is_flag=True,
                 help="Allow a non-loopback --host without a token: anyone who can connect reads the metrics."),
    click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
                 help="Let web pages from ORIGIN (scheme://host[:port], or *) open the WebSocket (repeatable)."),
    click.option("--max-ws-clients", default=DEFAULT_WS_CLIENTS, show_default=True,
                 type=click.IntRange(1, MAX_WS_CLIENTS),
                 help="Most WebSocket clients at once; one more is closed with code 1013."),
    click.option("--max-connections", default=DEFAULT_MAX_CONNECTIONS, show_default=True,
                 type=click.IntRange(1, MAX_CONNECTIONS),
                 help="Most HTTP connections at once (WebSockets included); one more gets 503 and is closed."),
    click.option("--keepalive-timeout", default=DEFAULT_KEEPALIVE_TIMEOUT, show_default=True,
                 type=click.FloatRange(0, MAX_TIMEOUT, min_open=True),
                 help="Seconds an idle kept-alive connection stays open."),
    click.option("--header-timeout", default=DEFAULT_HEADER_TIMEOUT, show_default=True,
                 type=click.FloatRange(0, MAX_TIMEOUT, min_open=True),
                 help="Seconds a new connection has to send its complete request line and headers."),
    click.option("--write-timeout", default=DEFAULT_WRITE_TIMEOUT, show_default=True,
                 type=click.FloatRange(0, MAX_TIMEOUT, min_open=True),
                 help="Seconds a response write may stall (client not reading) before the connection is reset."),
    click.option("--max-history-streams", default=DEFAULT_HISTORY_STREAMS, show_default=True,
                 type=click.IntRange(1, MAX_CONNECTIONS),
                 help="Most /api/system/metrics/history responses written at once; one more gets 503."),
    *_ROOT_OPTIONS,
    click.option("--cgroup", default="auto", show_default=True, metavar="auto|self|PATH",
                 help="Cgroup the container section describes: auto (the service's own unless it is the root), "
                      "self, or a path relative to each hierarchy's root (docs/containers.md)."),
    click.option("--tpu-metrics-addr", envvar="TRACKLAB_SYSMON_TPU_METRICS_ADDR", show_envvar=True, metavar="HOST:PORT",
                 help="libtpu's runtime metrics service (docs/gpu.md) [default: localhost:8431 when a TPU is on "
                      "the PCI bus]; given, it is asked even without one."),
]


def _apply(options: list[Decorator]) -> Decorator:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


_hand_over = False  # set by `launch`: this process was started for the command line alone


def allow_hand_over() -> None:
    """Let `serve` re-execute this command line once its flags are valid, so the service runs without click.

    Only the entry points in `launch` allow it: a test or program that calls `main` in its own process keeps
    serving from that process.
    """
    global _hand_over
    _hand_over = True


def _run_service(**options: Any) -> None:
    from .server.early_stop import catch_stop_signals

    catch_stop_signals()  # first, before the slow imports: SIGTERM during start-up must still exit 0
    from . import service_main

    try:
        options["peers"] = tuple(parse_peer(peer) for peer in options["peers"])
        config = ServiceConfig(**options)
    except SysmonError as exc:
        _fail(str(exc))
        return
    if _hand_over:
        service_main.hand_over(config, _prog())  # returns only where the exec cannot be done
    service_main.run_service(config, _prog())


def _fail(message: str) -> None:
    click.echo(f"{_prog()}: error: {message}", err=True)
    sys.exit(2)


def _prog() -> str:
    ctx = click.get_current_context(silent=True)
    return (ctx.find_root().info_name if ctx else None) or "tracklab-sysmon"


class _OneLineError(click.ClickException):
    """A usage error shown as one line (`prog: error: ...`), without click's usage block."""

    exit_code = 2

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"{self.prog}: error: {self.format_message()}", err=True)


_SHOWS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


@contextlib.contextmanager
def _one_line_usage_errors() -> Iterator[None]:
    try:
        yield
    except click.UsageError as exc:
        if isinstance(exc, _SHOWS_HELP):  # a bare `tracklab-sysmon` prints its help instead
            raise
        prog = exc.ctx.find_root().info_name if exc.ctx else None
        raise _OneLineError(exc.format_message(), prog or _prog()) from None


class _Command(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _one_line_usage_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BackendUnavailable as exc:  # raised when the hot path is first imported
            raise _OneLineError(str(exc), _prog()) from None


class _Group(click.Group):
    command_class = _Command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        with _one_line_usage_errors():
            return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        with _one_line_usage_errors():
            return super().resolve_command(ctx, args)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracklab-sysmon")
def main() -> None:
    """A small, cheap system-metrics service (REST, WebSocket, Prometheus)."""


@main.command()
@_apply(_SERVE_OPTIONS)
def serve(**options: Any) -> None:
    """Sample this machine and serve the metrics until SIGTERM/SIGINT."""
    _run_service(**options)


@main.command()
@_apply(_ROOT_OPTIONS)
def snapshot(proc_root: str, sys_root: str, collectors: str) -> None:
    """Print one snapshot as JSON (with real rates over a short interval) and exit."""
    try:
        click.echo(_sample_once(proc_root, sys_root, collectors)[1].latest_bytes.decode())
    except (OSError, SysmonError) as exc:
        _fail(str(exc))


@main.command()
@_apply(_ROOT_OPTIONS)
def info(proc_root: str, sys_root: str, collectors: str) -> None:
    """Print the static system information as JSON, with the hot-path backend in use."""
    from . import hotpath, wire
    from .collectors.portable.system import fill_from_psutil
    from .collectors.system import system_info_for

    try:
        # From the collectors' first snapshot, as the service builds /api/system/info: same GPUs, same disk.
        first, sampler = _sample_once(proc_root, sys_root, collectors)
        info = system_info_for(first, proc_root=proc_root, sys_root=sys_root)
        body = wire.system_info_to_wire(fill_from_psutil(sampler.collectors, info))
    except (OSError, SysmonError) as exc:
        _fail(str(exc))
        return
    body["backend"] = hotpath.BACKEND
    click.echo(wire.encode(body).decode())


@main.command()
@click.option("--url", help="Base URL of the service [default: http://127.0.0.1:8080].")
@click.option("--portfile", type=click.Path(dir_okay=False), help="Read the URL from a service's --portfile.")
@click.option("--token", envvar="TRACKLAB_SYSMON_TOKEN", show_envvar=True, help="The service's --token, if any.")
def top(url: str | None, portfile: str | None, token: str | None) -> None:
    """Watch a running service in the terminal, refreshed each second (q quits)."""
    from .tui import run_top, service_url  # rich loads only for `top`

    try:
        base = service_url(url, portfile)
    except ValueError as exc:
        _fail(str(exc))
    try:
        sys.exit(run_top(base, token))
    except KeyboardInterrupt:
        sys.exit(0)


def _sample_once(proc_root: str, sys_root: str, backend: str) -> tuple[Snapshot, Sampler]:
    """The first snapshot of the tree's default collectors (real rates: primed first), and its sampler."""
    import asyncio

    from .collectors import default_collectors
    from .collectors.base import reading_host
    from .collectors.disk import HOST_STATVFS
    from .collectors.system import host_name
    from .sampler import Sampler

    on_host = reading_host(proc_root, sys_root)  # a captured tree has no file systems to stat
    chosen = default_collectors(proc_root, sys_root, statvfs=HOST_STATVFS if on_host else None, backend=backend)
    sampler = Sampler(chosen, node_id=host_name(proc_root, sys_root))
    return asyncio.run(sampler.start()), sampler


@click.command(cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="system_monitor")
@_apply(_SERVE_OPTIONS)
def system_monitor(**options: Any) -> None:
    """The seed's `system_monitor` command line: same as `tracklab-sysmon serve`."""
    _run_service(**options)
