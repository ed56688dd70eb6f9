"""The snapshot history ring: bounded, oldest dropped first, selection oldest first."""

from __future__ import annotations

import pytest

from tracklab_sysmon.ring import SnapshotRing


def filled(capacity: int, count: int) -> SnapshotRing:
    ring = SnapshotRing(capacity)
    for i in range(1, count + 1):
        ring.append(i * 1000, f"s{i}".encode())
    return ring


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_below_one_is_refused(capacity: int) -> None:
    """A ring that could hold nothing is a configuration error."""
    with pytest.raises(ValueError, match="at least 1"):
        SnapshotRing(capacity)


def test_ring_stays_bounded_and_drops_the_oldest() -> None:
    """After 10 appends to a ring of 3 only the last 3 remain, oldest first."""
    ring = filled(3, 10)
    assert len(ring) == 3
    assert ring.select() == [b"s8", b"s9", b"s10"]


def test_select_without_since_returns_the_latest_limit() -> None:
    """limit alone gives the newest `limit` snapshots, still oldest first."""
    ring = filled(5, 5)
    assert ring.select(limit=2) == [b"s4", b"s5"]
    assert ring.select(limit=99) == [b"s1", b"s2", b"s3", b"s4", b"s5"]


def test_select_since_is_strictly_newer_and_limited_from_the_oldest() -> None:
    """since=t gives snapshots with timestamp > t, the first `limit` of them."""
    ring = filled(5, 5)
    assert ring.select(since=2000) == [b"s3", b"s4", b"s5"]
    assert ring.select(since=2000, limit=2) == [b"s3", b"s4"]
    assert ring.select(since=5000) == []
    assert ring.select(since=0) == [b"s1", b"s2", b"s3", b"s4", b"s5"]


def test_empty_ring_selects_nothing() -> None:
    """A fresh ring is empty whatever is asked."""
    ring = SnapshotRing(4)
    assert (len(ring), ring.select(), ring.select(since=0, limit=1)) == (0, [], [])


def test_entries_are_kept_at_their_own_size() -> None:
    """orjson's output keeps its buffer's spare capacity (this 2.3 KB body holds 16 KiB): the ring stores
    an exact-size copy, so 100 entries cost their bytes plus a fixed overhead each, not the encoder's slack."""
    import tracemalloc

    import orjson

    payload = {"cpu": {"cores": [{"usage": 12.5, "frequency": 2400}] * 60}, "note": "x" * 400}
    size = len(orjson.dumps(payload))
    ring = SnapshotRing(100)
    tracemalloc.start()
    try:
        for i in range(100):
            ring.append(i, orjson.dumps(payload))  # as the sampler does: the encoder's bytes, then dropped
        grown = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert ring.select() == [orjson.dumps(payload)] * 100
    assert grown < 100 * (size + 256)  # bytes header, the (timestamp, bytes) tuple, the int, deque blocks


def test_the_byte_limit_drops_the_oldest_until_the_rest_fit() -> None:
    """Snapshots of 100 bytes under a 350-byte limit: the newest three stay, and the count is the bytes'."""
    ring = SnapshotRing(100, max_bytes=350)
    for i in range(1, 8):
        ring.append(i, bytes([48 + i]) * 100)
    assert [s[:1] for s in ring.select()] == [b"5", b"6", b"7"]
    assert (len(ring), ring.bytes) == (3, 300)


def test_a_snapshot_bigger_than_the_limit_is_still_kept_alone() -> None:
    """The newest snapshot always stays (the latest is what every reader needs), even past the limit."""
    ring = SnapshotRing(10, max_bytes=50)
    ring.append(1, b"a" * 40)
    ring.append(2, b"b" * 80)
    assert ring.select() == [b"b" * 80] and ring.bytes == 80


def test_the_count_limit_still_holds_and_bytes_follow_what_is_kept() -> None:
    ring = SnapshotRing(2, max_bytes=10_000)
    for i in range(5):
        ring.append(i, b"x" * (i + 1))
    assert (len(ring), ring.bytes) == (2, 4 + 5)


async def test_the_service_bounds_its_history_by_the_configured_mib() -> None:
    """--history-mib reaches the sampler's ring."""
    from tracklab_sysmon.config import ServiceConfig
    from tracklab_sysmon.server import keys
    from tracklab_sysmon.server.app import create_app

    app = create_app(ServiceConfig(history=50, history_mib=3), collectors=())
    ring = app[keys.SAMPLER].ring
    assert (ring.capacity, ring.max_bytes) == (50, 3 * 2**20)
