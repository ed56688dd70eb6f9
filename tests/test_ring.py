"""The snapshot history ring: bounded, oldest dropped first, selection oldest first."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


# --- Full blocks kept compressed ------------------------------------------------------------------------------

def snapshot(i: int) -> bytes:
    """A small snapshot-like body: the same keys every time, a few numbers changing."""
    return b'{"timestamp":%d,"cpu":{"usage":%d.5,"cores":[1.0,2.0,3.0,4.0]},"memory":{"used":%d}}' % (
        i, i % 97, 1000 + i)


def test_a_full_block_is_held_compressed_and_reads_back_the_same() -> None:
    """64 similar snapshots (the default block) are held as one zlib blob: `bytes` is its size, far under
    their raw size, and every selection returns the original bytes."""
    import zlib

    ring = SnapshotRing(1000)
    raw = [snapshot(i) for i in range(64)]
    for i, body in enumerate(raw):
        ring.append(i, body)
    assert ring.bytes == len(zlib.compress(b"".join(raw), 6))
    assert ring.bytes * 5 < sum(map(len, raw))
    assert ring.select() == raw
    assert ring.select(limit=3) == raw[-3:]
    assert ring.select(since=60) == raw[61:]
    ring.append(64, snapshot(64))  # the next block starts raw
    assert ring.bytes == len(zlib.compress(b"".join(raw), 6)) + len(snapshot(64))
    assert ring.select(limit=2) == [raw[-1], snapshot(64)]


def test_a_block_too_big_to_compress_cheaply_stays_raw() -> None:
    """Blocks over COMPRESS_UP_TO raw bytes (a big machine's snapshots) are not compressed."""
    from tracklab_sysmon import ring as ring_module

    body = b"x" * (ring_module.COMPRESS_UP_TO // 4 + 1)
    ring = SnapshotRing(10, block=4)
    for i in range(4):
        ring.append(i, body)
    assert ring.bytes == 4 * len(body)
    assert ring.select() == [body] * 4


def test_a_compressed_block_frees_its_blob_when_its_last_snapshot_is_dropped() -> None:
    """With blocks of 4 and room for 6: the first block is dropped one snapshot at a time from reads, and
    its blob leaves `bytes` with the last of them."""
    import zlib

    ring = SnapshotRing(6, block=4)
    for i in range(8):
        ring.append(i, snapshot(i))
    blocks = [len(zlib.compress(b"".join(snapshot(i) for i in range(k, k + 4)), 6)) for k in (0, 4)]
    assert (len(ring), ring.select()) == (6, [snapshot(i) for i in range(2, 8)])
    assert ring.bytes == blocks[0] + blocks[1]
    ring.append(8, snapshot(8))
    ring.append(9, snapshot(9))
    assert (len(ring), ring.select()) == (6, [snapshot(i) for i in range(4, 10)])
    assert ring.bytes == blocks[1] + len(snapshot(8)) + len(snapshot(9))


def test_since_finds_newer_snapshots_in_any_block_after_the_clock_stepped_back() -> None:
    """Timestamps need not grow (the wall clock can be set back): since= looks into every block."""
    ring = SnapshotRing(100, block=4)
    stamps = [100, 200, 400, 50, 60, 70, 80, 90, 500]  # the first block's newest snapshot is in its middle
    for ts in stamps:
        ring.append(ts, snapshot(ts))
    assert ring.select(since=250) == [snapshot(400), snapshot(500)]
    assert ring.select(since=55, limit=4) == [snapshot(100), snapshot(200), snapshot(400), snapshot(60)]


@settings(max_examples=300, deadline=None)
@given(
    capacity=st.integers(1, 40),
    block=st.integers(1, 9),
    max_bytes=st.none() | st.integers(1, 3000),
    stamps=st.lists(st.integers(0, 60), max_size=120),
    since=st.none() | st.integers(-1, 61),
    limit=st.none() | st.integers(0, 50),
)
def test_the_blocked_ring_keeps_a_suffix_and_selects_as_a_plain_list_would(
    capacity: int, block: int, max_bytes: int | None, stamps: list[int], since: int | None, limit: int | None
) -> None:
    """Whatever the block size and limits: what is kept is the newest snapshots (never none once one came),
    at most `capacity`, all of them when no byte limit applies; `bytes` is what the units hold; and
    `select` answers exactly as a plain list of the kept pairs would."""
    ring = SnapshotRing(capacity, max_bytes, block=block)
    appended = [(ts, snapshot(i)) for i, ts in enumerate(stamps)]
    for ts, body in appended:
        ring.append(ts, body)
    kept = appended[len(appended) - len(ring):]
    assert len(ring) <= capacity and (len(ring) >= 1 or not appended)
    if max_bytes is None:
        assert len(ring) == min(capacity, len(appended))
    assert ring.select(limit=len(ring) or None) == [body for _, body in kept]
    held = sum(len(u.blob) if u.blob is not None else sum(map(len, u.entries or [])) for u in ring._units)
    assert ring.bytes == held
    effective = capacity if limit is None else limit
    if since is None:
        expected = [body for _, body in kept][max(0, len(kept) - effective):]
    else:
        expected = [body for ts, body in kept if ts > since][:effective]
    assert ring.select(since, limit) == expected
