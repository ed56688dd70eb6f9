"""One daemon thread per blocking collector: a call stuck in a driver delays neither the others nor exit."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any


class CollectorThread:
    """Runs submitted calls one at a time on its own daemon thread, started on first use.

    Unlike asyncio's default executor, whose threads interpreter exit waits for, a daemon thread
    stuck in a vendor call (a GPU fallen off the bus) cannot keep the process alive after SIGTERM.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, func: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Queue `func(*args)`; the returned future resolves on the caller's event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=f"sysmon-{self.name}", daemon=True)
            self._thread.start()
        self._jobs.put((loop, future, func, args))
        return future

    def _serve(self) -> None:
        while True:
            loop, future, func, args = self._jobs.get()
            try:
                outcome, value = _set_result, func(*args)
            except BaseException as exc:  # handed to the awaiting side, which decides
                outcome, value = _set_exception, exc
            try:
                loop.call_soon_threadsafe(outcome, future, value)
            except RuntimeError:  # the loop closed while we were stuck: nobody is waiting
                pass


def _set_result(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
