"""Rate-limited logging: one line per kind of repeated warning or error per window, with a count of the rest."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

WINDOW_SECONDS = 10.0
MAX_KINDS = 1024  # distinct kinds remembered; beyond it the table starts afresh (memory stays bounded)

Kind = tuple[str, int, str, str]


class RateLimitFilter(logging.Filter):
    """Let the first record of each kind through per window; count the rest and say so on the next one.

    A kind is (logger, level, message template, exception type), so an `accept()` EMFILE traceback
    repeated a thousand times a second becomes one line every `window` seconds. Records below
    WARNING (the verbose access log, debug) are never limited.
    """

    def __init__(self, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self._clock = clock
        self._kinds: dict[Kind, tuple[float, int]] = {}  # kind -> (window start, records dropped since)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        kind = _kind(record)
        now = self._clock()
        started, dropped = self._kinds.get(kind, (None, 0))
        if started is not None and now - started < self.window:
            self._kinds[kind] = (started, dropped + 1)
            return False
        if len(self._kinds) >= MAX_KINDS:
            self._kinds.clear()
        self._kinds[kind] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} [{dropped} more like this in the last {self.window:g} s not logged]"
        return True


def _kind(record: logging.LogRecord) -> Kind:
    exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
    return record.name, record.levelno, str(record.msg), exc_type


@contextmanager
def rate_limited_handlers(logger: logging.Logger | None = None) -> Iterator[RateLimitFilter]:
    """Put one RateLimitFilter on every handler of `logger` (the root by default) for the duration."""
    logger = logger or logging.getLogger()
    limiter = RateLimitFilter()
    handlers = list(logger.handlers)
    for handler in handlers:
        handler.addFilter(limiter)
    try:
        yield limiter
    finally:
        for handler in handlers:
            handler.removeFilter(limiter)
