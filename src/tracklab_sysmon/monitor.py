"""SystemMonitor runs the service as a child process (or attaches to one); plus a global instance."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import IO

from .client import SystemMonitorClient
from .config import ServiceConfig
from .errors import MonitorStartError, SysmonError
from .platforms import child_popen_options, child_stop_signal, select
from .protocol import TOKEN_ENV

_PLATFORM = select()  # how to start and stop the child on this OS

START_TIMEOUT = 20.0  # a cold interpreter on a busy 2-core machine needs a few seconds
STOP_TIMEOUT = 5.0  # the service promises to exit within 5 s of SIGTERM
_STDERR_LINES = 200  # kept for error messages; older lines are dropped


class SystemMonitor:
    """The metrics service as a managed child process, or a handle on one already running.

    `SystemMonitor(rest_port=0)` starts `python -m tracklab_sysmon serve` on a free port and
    returns once it answers; `SystemMonitor(url="http://127.0.0.1:8080")` attaches instead.
    The child watches this process (`--parent-pid`), so a crash here never leaves it behind.
    """

    def __init__(
        self,
        rest_port: int = 8080,
        enable_dcgm: bool = False,
        node_id: str | None = None,
        verbose: bool = False,
        *,
        host: str = "127.0.0.1",
        interval: float = 1.0,
        history: int | None = None,
        url: str | None = None,
        start: bool = True,
        start_timeout: float = START_TIMEOUT,
        extra_args: tuple[str, ...] = (),
        token: str | None = None,
    ) -> None:
        self.rest_port = rest_port
        self.enable_dcgm = enable_dcgm
        self.node_id = node_id
        self.verbose = verbose
        self.host = host
        self.interval = interval
        self.history = history
        self.start_timeout = start_timeout
        self.extra_args = tuple(extra_args)
        self._token = token  # handed to the child through its environment, never its argv
        self._url = url.rstrip("/") if url else None
        self._attached = url is not None
        self._process: subprocess.Popen[bytes] | None = None
        self._tmpdir: str | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes], str | None, int], SystemMonitor] | None = None
        self._drainer: threading.Thread | None = None
        if not self._attached:  # bad options fail here, in one line, not in the child
            ServiceConfig(host=host, port=rest_port, node_id=node_id, interval=interval,
                          history=history if history is not None else 3600,
                          token=token or os.environ.get(TOKEN_ENV), insecure="--insecure" in self.extra_args)
        if start and not self._attached:
            self.start()

    @classmethod
    def attach(cls, url: str, *, token: str | None = None) -> SystemMonitor:
        """A handle on a service someone else runs; `stop()` leaves that service alone."""
        return cls(url=url, token=token)

    # -- properties ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the service (`http://host:port`)."""
        if self._url is None:
            raise SysmonError("the monitor is not running; call start() first")
        return self._url

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def pid(self) -> int | None:
        """Process id of the managed service (None when attached or not started)."""
        return self._process.pid if self._process else None

    @property
    def client(self) -> SystemMonitorClient:
        """A new async client for this service: `async with monitor.client as client:`."""
        return SystemMonitorClient(self.url, token=self._token)

    @property
    def running(self) -> bool:
        """True while the managed process lives (always True for an attached monitor)."""
        if self._attached:
            return True
        return self._process is not None and self._process.poll() is None

    @property
    def stderr(self) -> str:
        """The last lines the managed service printed on stderr."""
        return "".join(self._stderr)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> SystemMonitor:
        """Start the service and wait until it listens; raise MonitorStartError on failure."""
        with self._lock:
            if self._attached or self.running:
                return self
            self._tmpdir = tempfile.mkdtemp(prefix="tracklab-sysmon-")
            portfile = os.path.join(self._tmpdir, "port.json")
            self._stderr.clear()
            env = dict(os.environ)
            if self._token is not None:
                env[TOKEN_ENV] = self._token
            self._process = subprocess.Popen(
                self._command(portfile),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                **child_popen_options(_PLATFORM),  # a terminal's Ctrl-C reaches only us; we stop the child in order
            )
            self._drainer = _drain(self._process.stderr, self._stderr, echo=self.verbose)
            self._finalizer = weakref.finalize(
                self, _terminate, self._process, self._tmpdir, child_stop_signal(_PLATFORM)
            )
            try:
                self._url = self._wait_for_portfile(portfile)
            except BaseException:
                self._stop_locked()
                raise
        return self

    def _command(self, portfile: str) -> list[str]:
        command = [
            sys.executable, "-m", "tracklab_sysmon", "serve",
            "--portfile", portfile,
            "--parent-pid", str(os.getpid()),
            "--rest-api-port", str(self.rest_port),
            "--host", self.host,
            "--interval", repr(float(self.interval)),
        ]
        if self.history is not None:
            command += ["--history", str(self.history)]
        if self.node_id is not None:
            command += ["--node-id", self.node_id]
        if self.enable_dcgm:
            command.append("--enable-dcgm-profiling")
        if self.verbose:
            command.append("--verbose")
        return command + list(self.extra_args)

    def _wait_for_portfile(self, portfile: str) -> str:
        assert self._process is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            url = _read_portfile(portfile)
            if url:
                return url
            code = self._process.poll()
            if code is not None:
                self._process.wait()
                if self._drainer is not None:
                    self._drainer.join(2.0)  # the pipe is at EOF: it ends once it holds every line
                raise MonitorStartError(f"the system monitor exited with code {code} before listening", self.stderr)
            time.sleep(0.02)
        raise MonitorStartError(
            f"the system monitor did not start within {self.start_timeout:g} s", self.stderr
        )

    def stop(self) -> None:
        """SIGTERM, wait up to 5 s, then SIGKILL; safe to call twice, from any thread."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._attached:
            return
        if self._finalizer is not None:
            self._finalizer()  # runs _terminate once; later calls are no-ops
            self._finalizer = None
        self._url = None

    def __enter__(self) -> SystemMonitor:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> SystemMonitor:
        import asyncio

        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)

    def __repr__(self) -> str:
        where = self._url or "not started"
        kind = "attached" if self._attached else f"pid={self.pid}"
        return f"<SystemMonitor {where} {kind}>"


def _terminate(process: subprocess.Popen[bytes], tmpdir: str | None, stop_signal: int = signal.SIGTERM) -> None:
    """Stop one child (stop signal, wait, kill) and remove its temp folder; also runs at exit."""
    try:
        if process.poll() is None:
            try:
                process.send_signal(stop_signal)
            except OSError:  # Windows with no console to share: Ctrl+Break cannot reach the child
                process.kill()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _drain(stream: IO[bytes] | None, lines: collections.deque[str], *, echo: bool) -> threading.Thread | None:
    """Read the child's stderr on a daemon thread, so a chatty service never blocks on a full pipe."""
    if stream is None:
        return None

    def pump() -> None:
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace")
                lines.append(line)
                if echo:
                    sys.stderr.write(line)

    thread = threading.Thread(target=pump, name="tracklab-sysmon-stderr", daemon=True)
    thread.start()
    return thread


_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}  # a wildcard bind is reached on loopback


def _read_portfile(path: str) -> str | None:
    try:
        with open(path) as handle:
            data = json.load(handle)
        host, port = str(data["host"]), int(data["port"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None  # not written yet (it is renamed into place whole, but be lenient)
    host = _WILDCARDS.get(host, f"[{host}]" if ":" in host else host)
    return f"http://{host}:{port}"


# -- global instance ---------------------------------------------------------------------------

_global: SystemMonitor | None = None
_global_lock = threading.Lock()


def start_system_monitor(**kwargs: object) -> SystemMonitor:
    """Start the process-wide monitor once (later calls return it); stopped at interpreter exit."""
    global _global
    with _global_lock:
        if _global is None or not _global.running:
            _global = SystemMonitor(**kwargs)  # type: ignore[arg-type]
        return _global


def get_global_monitor() -> SystemMonitor | None:
    """The process-wide monitor, or None when it was not started (or was stopped)."""
    return _global


def stop_system_monitor() -> None:
    """Stop the process-wide monitor; a no-op when none is running."""
    global _global
    with _global_lock:
        monitor, _global = _global, None
    if monitor is not None:
        monitor.stop()
