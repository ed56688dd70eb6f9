"""What ends the service: SIGTERM/SIGINT on POSIX, Ctrl+C/Ctrl+Break on Windows; each sets one event."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from ..platforms import PlatformChoice


def install_stop_signals(stop: asyncio.Event, choice: PlatformChoice) -> Callable[[], None]:
    """Make the platform's stop signals set `stop`; returns a function that puts the old handlers back."""
    loop = asyncio.get_running_loop()
    signals = [getattr(signal, name) for name in choice.stop_signals if hasattr(signal, name)]
    if choice.signal_install == "loop":
        try:
            for sig in signals:
                loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # an event loop without signal support: the plain handler below
            pass
        else:
            def remove() -> None:
                for sig in signals:
                    loop.remove_signal_handler(sig)

            return remove
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def handler(signum: int, frame: object) -> None:
        # Runs between bytecodes on the main thread; the thread-safe call also wakes a waiting loop.
        loop.call_soon_threadsafe(stop.set)

    for sig in signals:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
