"""NVLink counters in C (native/fabric.c) against the Python twin: the same bytes and rates, tick for tick,
whatever the entries answer (types, failures, pruned requests) and however the counters move."""

from __future__ import annotations

import math
import struct

import pytest
from conftest import native_module, outcome
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon import _accel_native, _nvlink
from tracklab_sysmon._fabric_py import MAX_KIB, PyNvlinkCounters
from tracklab_sysmon.rates import CounterColumn

LINKS = 3
SIZE = 2 * LINKS


@pytest.fixture(scope="module")
def cffi():
    """The C twin's module; skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, where it was not built."""
    native_module()
    from tracklab_sysmon import _fabric_cffi

    return _fabric_cffi


def record(value_type: int, nvml_return: int, value: int) -> bytes:
    """One nvmlFieldValue_t: the union's 8 bytes hold `value` as an unsigned 64-bit word."""
    return _nvlink.RECORD.pack(_nvlink.FI_THROUGHPUT_DATA_TX, 0, 0, 0, value_type, nvml_return,
                               struct.pack("=Q", value))


# Values near the 64-bit and KiB-overflow edges, small ones that dip and reset, and any word.
word = st.one_of(st.integers(0, 50), st.sampled_from((MAX_KIB, MAX_KIB + 1, 2**32 - 1, 2**32, 2**64 - 1)),
                 st.integers(0, 2**64 - 1))
entry = st.tuples(st.sampled_from((1, 2, 3, 6, 0, 4, 5, 9)), st.sampled_from((0, 0, 0, 3, 15)), word)
step = st.one_of(st.sampled_from((-1.0, 0.0)), st.floats(min_value=0.001, max_value=5.0))


@settings(max_examples=300, deadline=None)
@given(pruned=st.one_of(st.none(), st.permutations(range(SIZE)).flatmap(lambda p: st.integers(0, SIZE).map(
           lambda k: tuple(p[:k])))),
       ticks=st.lists(st.tuples(step, st.lists(entry, min_size=SIZE, max_size=SIZE)), min_size=1, max_size=25))
def test_c_and_python_counters_agree_tick_for_tick(cffi, pruned, ticks):
    """Bytes (KiB x 1024, None for a failed, signed, floating or too-large entry) and rates (cents) are equal
    in both backends on every tick, with the full request or any pruned subset of its entries."""
    c, py = cffi.CffiNvlinkCounters(LINKS), PyNvlinkCounters(LINKS)
    now = 0.0
    for dt, entries in ticks:
        now += dt
        count = SIZE if pruned is None else len(pruned)
        raw = b"".join(record(*e) for e in entries[:count])
        got, want = c.read(raw, pruned, now), py.read(raw, pruned, now)
        assert got == want
        assert all(r is None or (math.isfinite(r) and r >= 0) for r in got[1])


def test_counters_read_exactly_what_the_entries_say(cffi):
    """ulonglong 10 KiB -> 10240 bytes; uint and ushort masked to their width; a failed entry, a signed one and
    one over MAX_KIB are None; the second tick rates 1 KiB over 2 s as 512.0 bytes/s."""
    for counters in (cffi.CffiNvlinkCounters(LINKS), PyNvlinkCounters(LINKS)):
        entries = [(3, 0, 10), (1, 0, 2**32 + 7), (6, 0, 2**16 + 5), (3, 3, 1), (5, 0, 4), (2, 0, MAX_KIB + 1)]
        raw = b"".join(record(*e) for e in entries)
        assert counters.read(raw, None, 0.0) == ([10240, 7 * 1024, 5 * 1024, None, None, None],
                                                 [0.0, 0.0, 0.0, None, None, None])
        entries[0] = (3, 0, 11)
        raw = b"".join(record(*e) for e in entries)
        assert counters.read(raw, None, 2.0)[1][0] == 512.0


def test_pruned_entries_land_at_their_slots(cffi):
    """Two entries placed at slots 4 and 1: every other slot is None in both backends."""
    raw = record(3, 0, 1) + record(3, 0, 2)
    for counters in (cffi.CffiNvlinkCounters(LINKS), PyNvlinkCounters(LINKS)):
        assert counters.read(raw, (4, 1), 0.0)[0] == [None, 2048, None, None, 1024, None]


def test_bad_lengths_are_value_errors_in_both(cffi):
    """Bytes that are not whole records, or records that do not match the counters, raise ValueError."""
    for raw, positions in ((b"\0" * 41, None), (record(3, 0, 1), None), (record(3, 0, 1), (0, 1))):
        got = outcome(lambda r=raw, p=positions: cffi.CffiNvlinkCounters(LINKS).read(r, p, 0.0))
        want = outcome(lambda r=raw, p=positions: PyNvlinkCounters(LINKS).read(r, p, 0.0))
        assert got[:2] == want[:2] == ("error", ValueError)


def test_the_c_column_keeps_as_many_baselines_as_the_python_one(cffi):
    """FB_BASELINES is CounterRates.max_baselines: a counter that keeps falling is bounded the same way."""
    assert CounterColumn.max_baselines == cffi.lib.FB_BASELINES


def test_backend_follows_the_native_setting(cffi):
    """`off` picks the Python twin, `require` the C helper (which this run has)."""
    assert _accel_native.select_counters("off") == (PyNvlinkCounters, "python")
    assert _accel_native.select_counters("require") == (cffi.CffiNvlinkCounters, "cffi")
