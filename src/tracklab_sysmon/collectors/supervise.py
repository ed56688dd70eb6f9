"""One long-lived vendor tool as a supervised child: lines read on a thread, restarted with back-off, killed with us.

`SupervisedChild` starts `argv` in a session (process group) of its own, hands every stdout line to
`on_line` on its reader thread, and keeps the last lines of stderr to explain a failure. When the
child exits, or prints nothing for `stall_after` seconds (hung: its whole group is killed), it is
started again after a back-off that doubles up to `max_backoff` and resets once a child has run
`healthy_after` seconds. `close` (and interpreter exit, through `atexit`) kills the group. If the
service itself is killed, the child's next write fails on the closed pipe (SIGPIPE) and it exits.
The tick never waits on any of this: collectors read what `on_line` stored.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import selectors
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_LINE = 1 << 20  # a longer line without a newline is cut and handed over (a neuron-monitor report is ~10 KB)
KILL_GRACE_SECONDS = 0.5  # SIGTERM first; SIGKILL the group if it is still there after this


@dataclass(frozen=True, slots=True)
class Backoff:
    """Restart delays: `first` s, doubling up to `most`; reset after a child ran `healthy_after` s."""

    first: float = 1.0
    most: float = 60.0
    healthy_after: float = 60.0

    def delay(self, failures: int) -> float:
        return min(self.most, self.first * 2.0 ** max(0, failures - 1))


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True, slots=True)
class ChildState:
    """What the supervisor knows now; `problem` is None while the child runs and talks."""

    running: bool
    pid: int | None
    starts: int  # children started so far
    problem: str | None  # why there is no fresh output: exited, hung, cannot start


class SupervisedChild:
    """Runs one command for as long as the service runs; see the module docstring."""

    def __init__(
        self,
        argv: Sequence[str],
        on_line: Callable[[str], None],
        *,
        name: str | None = None,
        stall_after: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        env: dict[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.argv = tuple(argv)
        self.name = name or os.path.basename(self.argv[0])
        self._on_line = on_line
        self._stall_after = stall_after
        self._backoff = backoff
        self._env = env
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._starts = 0
        self._problem: str | None = None
        self._stderr: collections.deque[str] = collections.deque(maxlen=3)

    def start(self) -> None:
        """Start supervising (once); the first child is started on the supervisor's thread."""
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._supervise, name=f"sysmon-{self.name}", daemon=True)
            self._thread.start()
        _LIVE.add(self)

    def state(self) -> ChildState:
        with self._lock:
            process = self._process
            running = process is not None and process.poll() is None
            return ChildState(running, process.pid if process else None, self._starts, self._problem)

    def close(self, timeout: float = 2.0) -> None:
        """Stop supervising and kill the child's whole process group; waits for it at most `timeout` s."""
        self._stop.set()
        with self._lock:
            process = self._process
        if process is not None:
            _kill_group(process)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        _LIVE.discard(self)

    # ------------------------------------------------------------ the supervisor's thread

    def _supervise(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = self._clock()
            why = self._run_once()
            if self._stop.is_set():
                return
            failures = 1 if self._clock() - started >= self._backoff.healthy_after else failures + 1
            delay = self._backoff.delay(failures)
            self._set_problem(f"{why}; restarting in {delay:g} s")
            self._stop.wait(delay)

    def _run_once(self) -> str:
        """Start one child and read it until it ends or hangs; returns why it is gone."""
        try:
            process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                start_new_session=True,  # its own process group: killed whole, and away from our terminal
                env=self._env,
            )
        except OSError as exc:
            return f"{self.name} cannot be started: {exc.strerror or exc}"
        with self._lock:
            self._process, self._starts = process, self._starts + 1
            self._stderr.clear()
        if self._stop.is_set():  # closed while starting: close() may have missed this child
            _kill_group(process)
        try:
            hung = self._read(process)
        finally:
            _kill_group(process)  # exited or hung: whatever it left in its group goes too
            _close_pipes(process)
        if hung:
            return f"{self.name} printed nothing for {self._stall_after:g} s (hung; killed)"
        code = process.returncode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with status {code}"
        said = f" (stderr: {' | '.join(self._stderr)})" if self._stderr else ""
        return f"{self.name} {how}{said}"

    def _read(self, process: subprocess.Popen[bytes]) -> bool:
        """Hand over stdout lines until EOF; True when the child went silent for `stall_after` s."""
        assert process.stdout is not None and process.stderr is not None
        buffers = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
        out = process.stdout.fileno()
        last_output = self._clock()
        with selectors.DefaultSelector() as selector:
            for fd in buffers:
                selector.register(fd, selectors.EVENT_READ)
            while out in buffers and not self._stop.is_set():
                ready = selector.select(timeout=min(1.0, self._stall_after))
                for key, _ in ready:
                    fd = int(key.fd)
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        selector.unregister(fd)
                        del buffers[fd]
                        continue
                    self._split(buffers[fd], chunk, stdout=fd == out)
                    if fd == out:
                        last_output = self._clock()
                if out in buffers and self._clock() - last_output >= self._stall_after:
                    return True
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(KILL_GRACE_SECONDS)  # stdout closed: it is exiting
        return False

    def _split(self, buffer: bytearray, chunk: bytes, *, stdout: bool) -> None:
        buffer += chunk
        while (end := buffer.find(b"\n", 0, MAX_LINE + 1)) >= 0 or len(buffer) > MAX_LINE:
            cut = end if end >= 0 else MAX_LINE
            line = buffer[:cut].decode("utf-8", "replace").rstrip("\r")
            del buffer[: cut + 1 if end >= 0 else cut]  # the newline goes with its line; a cut keeps every byte
            if not stdout:
                if line.strip():
                    self._stderr.append(line.strip()[:200])
                continue
            self._set_problem(None)
            self._on_line(line)

    def _set_problem(self, problem: str | None) -> None:
        with self._lock:
            self._problem = problem


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL it if the child has not gone within the grace."""
    if process.poll() is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # the leader is gone; anything it started is not
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(KILL_GRACE_SECONDS)


def _close_pipes(process: subprocess.Popen[bytes]) -> None:
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


# Every supervisor that has started, so that interpreter exit (a one-shot `snapshot`, a test) kills their children.
_LIVE: weakref.WeakSet[SupervisedChild] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for child in list(_LIVE):
        child.close(timeout=0.5)
