"""Fan-in of encoded snapshots from every node (local sampler, peers), fan-out to subscribers."""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

Subscriber = Callable[[str, bytes], None]


class SnapshotBus:
    """Synchronous publish: subscribers must only enqueue (never await or do I/O)."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def publish(self, node_id: str, encoded: bytes) -> None:
        """Hand one node's encoded snapshot (wire JSON bytes) to every subscriber."""
        for subscriber in tuple(self._subscribers):
            try:
                subscriber(node_id, encoded)
            except Exception:  # one broken subscriber must not starve the others
                log.exception("snapshot subscriber %r failed", subscriber)
