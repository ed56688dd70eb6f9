"""History of encoded snapshots bounded by count and by bytes: oldest dropped first."""

from __future__ import annotations

from collections import deque
from itertools import islice


class SnapshotRing:
    """Keeps the last `capacity` (timestamp ms, encoded JSON bytes) pairs, fewer when together they would
    pass `max_bytes` (None: no byte limit); the newest is always kept."""

    def __init__(self, capacity: int, max_bytes: int | None = None) -> None:
        if capacity < 1:
            raise ValueError("history capacity must be at least 1")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0  # the kept snapshots' JSON, together
        self._items: deque[tuple[int, bytes]] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def append(self, timestamp_ms: int, encoded: bytes) -> None:
        # Kept as an exact-size copy: orjson's bytes keep the spare capacity of its output buffer
        # (a 2.4 KB snapshot holds 8 KiB), which over an hour of history is most of the service's
        # memory. One 2-3 KB copy a tick is the cheaper side of that trade.
        self._items.append((timestamp_ms, memoryview(encoded).tobytes()))
        self.bytes += len(encoded)
        # A snapshot grows with cores and disks (~300 KB at 1,024 of each): the byte limit, not the
        # count, is what bounds a big machine's history.
        while len(self._items) > self.capacity or (
            self.max_bytes is not None and self.bytes > self.max_bytes and len(self._items) > 1
        ):
            self.bytes -= len(self._items.popleft()[1])

    def select(self, since: int | None = None, limit: int | None = None) -> list[bytes]:
        """Snapshots oldest first: after `since` the first `limit` of them, else the latest `limit`."""
        limit = self.capacity if limit is None else limit
        if since is None:
            start = max(0, len(self._items) - limit)
            return [encoded for _, encoded in islice(self._items, start, None)]
        newer = (encoded for ts, encoded in self._items if ts > since)
        return list(islice(newer, limit))
