"""A vendor tool that streams lines (neuron-monitor, hl-smi): found on PATH, run supervised, its latest result kept.

`ToolSource` looks for the command (on PATH and in the vendor's usual folder; again every
`RESCAN_SECONDS` while it is missing), starts it under a `SupervisedChild`, and keeps what
`parse(line)` made of the newest line together with when it came. `latest()` is what a tick
reads: it never waits and never starts a process itself after the first call.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from ..errors import ParseError, SourceError, Unavailable
from ..protocol import TOKEN_ENV
from .supervise import DEFAULT_BACKOFF, Backoff, SupervisedChild

RESCAN_SECONDS = 60.0  # a missing tool is looked for again this often (installed while we run)
T = TypeVar("T")


class ToolSource(Generic[T]):
    """One supervised tool and the newest thing its output said; see the module docstring."""

    def __init__(
        self,
        command: str,
        argv: Callable[[str], Sequence[str]],
        parse: Callable[[str], T],
        *,
        extra_dirs: Sequence[str] = (),
        stale_after: float = 5.0,
        stall_after: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.command = command
        self._argv = argv  # the command line, given where the command was found (may write a configuration file)
        self.stale_after = stale_after
        self._parse = parse
        self._extra_dirs = tuple(extra_dirs)
        self._stall_after = stall_after
        self._backoff = backoff
        self._clock = clock
        self._child: SupervisedChild | None = None
        self._looked_at: float | None = None
        self._lock = threading.Lock()
        self._latest: tuple[T | ParseError, float] | None = None

    def latest(self) -> T:
        """The newest parsed line; Unavailable (no tool, no line yet) or SourceError (exited, hung, stale, garbage)."""
        child = self._child or self._start()
        state = child.state()
        with self._lock:
            latest = self._latest
        if state.problem is not None:
            raise SourceError(state.problem)
        if latest is None:
            started = f"started (pid {state.pid})" if state.pid is not None else "starting"
            raise Unavailable(f"{self.command} {started}; waiting for its first output")
        value, at = latest
        age = self._clock() - at
        if age > self.stale_after:
            raise SourceError(f"no output from {self.command} for {age:.1f} s")
        if isinstance(value, ParseError):
            raise SourceError(str(value))
        return value

    def close(self) -> None:
        """Stop the tool (its whole process group) for good."""
        if self._child is not None:
            self._child.close()

    def _start(self) -> SupervisedChild:
        now = self._clock()
        if self._looked_at is not None and now - self._looked_at < RESCAN_SECONDS:
            raise Unavailable(self._missing())
        self._looked_at = now
        search = os.pathsep.join([os.environ.get("PATH", os.defpath), *self._extra_dirs])
        path = shutil.which(self.command, path=search)
        if path is None:
            raise Unavailable(self._missing())
        self._child = SupervisedChild(
            self._argv(path), self._take, name=self.command, stall_after=self._stall_after, backoff=self._backoff,
            clock=self._clock, env={k: v for k, v in os.environ.items() if k != TOKEN_ENV},  # no secret for the tool
        )
        self._child.start()
        return self._child

    def _take(self, line: str) -> None:
        """Called on the supervisor's thread for each line: parsed there, so a tick only reads the result."""
        try:
            value: T | ParseError = self._parse(line)
        except ParseError as exc:
            value = exc
        with self._lock:
            self._latest = (value, self._clock())

    def _missing(self) -> str:
        where = ", ".join(("PATH", *self._extra_dirs))
        return f"{self.command} not found (looked in {where})"
