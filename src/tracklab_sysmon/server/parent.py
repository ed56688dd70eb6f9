"""--parent-pid: stop the service when the parent exits; pidfd, kqueue, a process-handle wait or a poll."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..platforms import PlatformChoice

log = logging.getLogger(__name__)
POLL_SECONDS = 0.5  # the poll fallback's period, and the handle wait's re-check of cancellation


def watch_parent(pid: int, stop: asyncio.Event, choice: PlatformChoice) -> asyncio.Task[None]:
    """A task that sets `stop` once process `pid` is gone; cancel it to stop watching."""
    return asyncio.create_task(_watch(pid, stop, choice.parent_watch), name="tracklab-sysmon-parent-watch")


async def _watch(pid: int, stop: asyncio.Event, kind: str) -> None:
    try:
        await WAITS.get(kind, wait_by_polling)(pid)
    except ProcessLookupError:
        log.warning("parent process %d is already gone; stopping", pid)
    else:
        log.warning("parent process %d exited; stopping", pid)
    stop.set()


async def wait_by_polling(pid: int) -> None:
    """Ask every POLL_SECONDS whether `pid` exists (psutil: os.kill(pid, 0) would kill on Windows)."""
    import psutil  # only where there is no pidfd or kqueue: the service does not load it otherwise

    while psutil.pid_exists(pid):
        await asyncio.sleep(POLL_SECONDS)


async def wait_by_pidfd(pid: int) -> None:
    """Linux >= 5.3: a pidfd turns readable when the process exits; no polling at all."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except (AttributeError, OSError):  # no pidfd (old kernel, seccomp): poll instead
        return await wait_by_polling(pid)
    try:
        await _readable(fd)
    finally:
        os.close(fd)


async def wait_by_kqueue(pid: int) -> None:
    """macOS/BSD: kqueue's EVFILT_PROC with NOTE_EXIT fires once the process exits."""
    import select

    if not hasattr(select, "kqueue"):
        return await wait_by_polling(pid)
    kq = select.kqueue()
    try:
        event = select.kevent(  # type: ignore[attr-defined]  # kqueue names exist on macOS/BSD only
            pid, filter=select.KQ_FILTER_PROC,  # type: ignore[attr-defined]
            flags=select.KQ_EV_ADD | select.KQ_EV_ONESHOT, fflags=select.KQ_NOTE_EXIT,  # type: ignore[attr-defined]
        )
        try:
            kq.control([event], 0, 0)  # ESRCH (ProcessLookupError) when it is already gone
        except PermissionError:  # a process this user may not watch: it can still be polled
            return await wait_by_polling(pid)
        await _readable(kq.fileno())
    finally:
        kq.close()


async def wait_by_handle(pid: int) -> None:
    """Windows: psutil waits on the process handle (WaitForSingleObject) in a thread, POLL_SECONDS at a time
    so that cancelling the watch ends the thread too (on POSIX psutil polls, which tests use)."""
    import psutil

    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        raise ProcessLookupError(pid) from None
    cancelled = threading.Event()

    def wait() -> None:
        while not cancelled.is_set():
            try:
                process.wait(timeout=POLL_SECONDS)
                return
            except psutil.TimeoutExpired:
                continue

    try:
        await asyncio.to_thread(wait)
    finally:
        cancelled.set()


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        await ready.wait()
    finally:
        loop.remove_reader(fd)


WAITS: dict[str, Callable[[int], Awaitable[Any]]] = {
    "pidfd": wait_by_pidfd,
    "kqueue": wait_by_kqueue,
    "process-handle": wait_by_handle,
    "poll": wait_by_polling,
}
