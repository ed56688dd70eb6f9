"""One daemon thread per blocking collector: a call stuck in a driver delays neither the others nor exit."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class CollectorThread:
    """Runs submitted calls one at a time on its own daemon thread, started on first use.

    Unlike asyncio's default executor, whose threads interpreter exit waits for, a daemon thread
    stuck in a vendor call (a GPU fallen off the bus) cannot keep the process alive after SIGTERM.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue `func(*args)`; the returned future resolves on the caller's event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=f"sysmon-{self.name}", daemon=True)
            self._thread.start()
        self._jobs.put((loop, future, func, args))
        return future

    def _serve(self) -> None:
        while True:
            loop, future, func, args = self._jobs.get()
            try:
                value = func(*args)
            except BaseException as exc:  # handed to the awaiting side, which decides
                _hand_over(loop, _set_exception, future, exc)
            else:
                _hand_over(loop, _set_result, future, value)


def _hand_over(loop: asyncio.AbstractEventLoop, setter: Callable[[asyncio.Future[Any], Any], None],
               future: asyncio.Future[Any], value: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed while we were stuck: nobody is waiting
        loop.call_soon_threadsafe(setter, future, value)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
