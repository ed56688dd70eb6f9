"""The service process after its command line: run a `ServiceConfig`, handed over across exec so click stays out.

`tracklab-sysmon serve` parses its flags with click (about 1.3 MiB that the service never needs again). Once
the flags are valid, `hand_over` writes the config to a pipe and re-executes the same command line (same
pid, same `ps` line, same interpreter flags); the new image finds the pipe in `HANDOFF_VAR` before it
imports anything of the command line (`launch.main`) and runs the service from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys

import orjson

from .config import HANDOFF_VAR, PeerSpec, ServiceConfig
from .errors import SysmonError
from .server.early_stop import STOP_SIGNALS, catch_stop_signals, stop_requested


def run_service(config: ServiceConfig, prog: str) -> None:
    """Serve `config` until stopped; a start-up error is one line on stderr and exit status 2."""
    try:
        from . import hotpath  # the backend's choice: TRACKLAB_SYSMON_NATIVE=require may refuse here
        from .server.runner import serve

        logging.basicConfig(
            level=logging.DEBUG if config.verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        hotpath.warn_if_fallback()  # once, at start-up, now that logging writes to stderr
        asyncio.run(serve(config))
    except SysmonError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def hand_over(config: ServiceConfig, prog: str) -> None:
    """Re-execute this command line with `config` in a pipe; returns only where that cannot be done.

    SIGTERM/SIGINT are blocked across the exec (the mask and pending signals survive it) and unblocked by the
    new image once it catches them, so a stop sent at any moment of start-up still ends in exit status 0.
    """
    if os.name != "posix" or not sys.executable or not getattr(sys, "orig_argv", None):
        return
    payload = orjson.dumps({"prog": prog, "config": config_to_dict(config)})
    read_end = _filled_pipe(payload)
    if read_end is None:
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    if stop_requested():  # a stop came before the block: start-up ends here, as it would after the exec
        sys.exit(0)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, {**os.environ, HANDOFF_VAR: str(read_end)})
    except OSError:  # the interpreter cannot be run again (deleted, no exec rights): serve from this image
        os.close(read_end)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def run_handed_over(fd_text: str) -> None:
    """The new image's side: catch the stop signals, unblock them, read the config and serve."""
    catch_stop_signals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    prog = "tracklab-sysmon"
    try:
        message = orjson.loads(_read_all(int(fd_text)))
        prog = str(message["prog"])
        config = config_from_dict(message["config"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"{prog}: error: the command line's hand-over failed: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    run_service(config, prog)


def config_to_dict(config: ServiceConfig) -> dict[str, object]:
    """Every field of the config, as JSON types (peers as [url, token] pairs)."""
    data = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    data["peers"] = [[peer.url, peer.token] for peer in config.peers]
    return data


def config_from_dict(data: dict[str, object]) -> ServiceConfig:
    """The inverse of `config_to_dict`; the config checks its values again."""
    peers = data["peers"]
    origins = data["allow_origins"]
    if not isinstance(peers, list) or not isinstance(origins, list):
        raise TypeError("peers and allow_origins must be lists")
    fields = {**data, "peers": tuple(PeerSpec(url, token) for url, token in peers), "allow_origins": tuple(origins)}
    return ServiceConfig(**fields)  # type: ignore[arg-type]


def _filled_pipe(payload: bytes) -> int | None:
    """A pipe's read end (inheritable) holding `payload`; None if the pipe cannot hold it all at once."""
    read_end, write_end = os.pipe()
    try:
        os.set_blocking(write_end, False)  # never block on a pipe nobody reads yet
        written = os.write(write_end, payload)
    except OSError:
        written = -1
    finally:
        os.close(write_end)
    if written != len(payload):
        os.close(read_end)
        return None
    os.set_inheritable(read_end, True)
    return read_end


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
