"""History of encoded snapshots bounded by count and by bytes, oldest dropped first; full blocks kept compressed."""

from __future__ import annotations

import zlib
from array import array
from collections import deque
from itertools import islice

# Consecutive snapshots differ in a few numbers: zlib packs a block of 64 2.4 KB snapshots 12-18x, so an
# hour of a small host's history is ~0.6 MiB instead of ~9 (docs/performance.md, "Memory"). Compressing
# costs ~1.3 ms per block (0.02 ms a second) and reading a block back ~0.2 ms, paid by history requests.
BLOCK = 64
# A block of more raw bytes stays as it is: a big machine's 300 KB snapshots would cost a few ms a tick to
# compress; `--history-mib` bounds their memory instead.
COMPRESS_UP_TO = 1 << 20
LEVEL = 6


class _Unit:
    """Up to `BLOCK` consecutive snapshots: raw while the block fills, then one zlib blob with their ends.

    `start` counts the snapshots already dropped from its front (a raw unit frees them at once; a compressed
    one frees its blob when the last goes).
    """

    __slots__ = ("blob", "ends", "entries", "start", "timestamps")

    def __init__(self) -> None:
        self.timestamps = array("q")
        self.entries: list[bytes] | None = []
        self.blob: bytes | None = None
        self.ends: array[int] | None = None
        self.start = 0

    def __len__(self) -> int:
        return len(self.timestamps) - self.start

    def compress(self) -> int:
        """Pack the entries into one blob if they are small enough; returns the change in bytes held."""
        assert self.entries is not None
        raw = b"".join(self.entries)
        if len(raw) > COMPRESS_UP_TO:
            return 0
        ends, total = array("I"), 0
        for entry in self.entries:
            total += len(entry)
            ends.append(total)
        self.blob, self.ends, self.entries = zlib.compress(raw, LEVEL), ends, None
        return len(self.blob) - len(raw)

    def drop_first(self) -> int:
        """Drop the oldest snapshot; returns the bytes freed."""
        self.start += 1
        if self.entries is not None:
            freed = len(self.entries[0])
            del self.entries[0], self.timestamps[0]
            self.start = 0
            return freed
        return len(self.blob or b"") if len(self) == 0 else 0

    def items(self) -> list[tuple[int, bytes]]:
        """The kept (timestamp, snapshot) pairs, oldest first."""
        timestamps = self.timestamps[self.start:]
        if self.entries is not None:
            return list(zip(timestamps, self.entries, strict=True))
        assert self.blob is not None and self.ends is not None
        data = zlib.decompress(self.blob)
        begins = [0, *self.ends[:-1]]
        return [(ts, data[begins[i]:self.ends[i]]) for i, ts in enumerate(timestamps, self.start)]


class SnapshotRing:
    """Keeps the last `capacity` (timestamp ms, encoded JSON bytes) pairs, fewer when together they would
    pass `max_bytes` (None: no byte limit; compressed blocks count at their compressed size); the newest is
    always kept."""

    def __init__(self, capacity: int, max_bytes: int | None = None, *, block: int = BLOCK) -> None:
        if capacity < 1:
            raise ValueError("history capacity must be at least 1")
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.block = block
        self.bytes = 0  # the kept snapshots' JSON, together, compressed blocks at their packed size
        self._count = 0
        self._units: deque[_Unit] = deque()

    def __len__(self) -> int:
        return self._count

    def append(self, timestamp_ms: int, encoded: bytes) -> None:
        unit = self._units[-1] if self._units and self._units[-1].entries is not None else None
        if unit is None or len(unit.timestamps) >= self.block:
            unit = _Unit()
            self._units.append(unit)
        # Kept as an exact-size copy: orjson's bytes keep the spare capacity of its output buffer
        # (a 2.4 KB snapshot holds 8 KiB), which would outweigh the block's packed size many times.
        assert unit.entries is not None
        unit.entries.append(memoryview(encoded).tobytes())
        unit.timestamps.append(timestamp_ms)
        self.bytes += len(encoded)
        self._count += 1
        if len(unit.timestamps) == self.block:
            self.bytes += unit.compress()
        # A snapshot grows with cores and disks (~300 KB at 1,024 of each): the byte limit, not the
        # count, is what bounds a big machine's history.
        while self._count > self.capacity or (
            self.max_bytes is not None and self.bytes > self.max_bytes and self._count > 1
        ):
            oldest = self._units[0]
            self.bytes -= oldest.drop_first()
            self._count -= 1
            if len(oldest) == 0:
                self._units.popleft()

    def select(self, since: int | None = None, limit: int | None = None) -> list[bytes]:
        """Snapshots oldest first: after `since` the first `limit` of them, else the latest `limit`."""
        limit = self.capacity if limit is None else limit
        if since is None:
            chunks: list[list[bytes]] = []
            wanted = limit
            for unit in reversed(self._units):  # newest blocks first: only those the limit reaches are unpacked
                if wanted <= 0:
                    break
                kept = [encoded for _, encoded in unit.items()[-wanted:]]
                chunks.append(kept)
                wanted -= len(kept)
            return [encoded for chunk in reversed(chunks) for encoded in chunk]
        # The wall clock may step back, so timestamps are not sorted: a block is unpacked if any is newer.
        newer = (encoded for unit in self._units if max(unit.timestamps[unit.start:]) > since
                 for ts, encoded in unit.items() if ts > since)
        return list(islice(newer, limit))
