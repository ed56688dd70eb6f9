"""SIGTERM/SIGINT noted from the first moment of `serve`, before the event loop exists, so start-up stops cleanly."""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_requested = False


def catch_stop_signals() -> None:
    """Note SIGTERM/SIGINT instead of dying by them; the runner checks `stop_requested()` once its loop runs."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _note)


def stop_requested() -> bool:
    """True once SIGTERM or SIGINT arrived while `catch_stop_signals` was in force."""
    return _requested


def _note(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
