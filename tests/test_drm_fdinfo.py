"""The pure DRM fdinfo parser: exact records for amdgpu, i915 and xe text, None for other fds, never an exception."""

from __future__ import annotations

import pathlib

import drm_fdinfo_reference as reference
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon.collectors.drm_fdinfo import (
    DrmClient,
    EngineTime,
    RegionMemory,
    busy_percent,
    parse_fdinfo,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
KIB, MIB = 1024, 1024 * 1024


def fdinfo(tree: str, pid: int, fd: int) -> str:
    return (FIXTURES / tree / "proc" / str(pid) / "fdinfo" / str(fd)).read_text()


def test_amdgpu_new_format_prefers_resident_memory_per_region():
    """amdgpu 6.8: drm-resident-<region> wins over the legacy drm-memory-* alias and over drm-total-*."""
    client = parse_fdinfo(fdinfo("drm-fdinfo-amdgpu", 100, 5))
    assert client == DrmClient(
        driver="amdgpu", pdev="0000:03:00.0", client_id=42,
        engines=(EngineTime("gfx", 1_000_000_000), EngineTime("compute", 500_000_000)),
        regions=(RegionMemory("cpu", 0), RegionMemory("gtt", 2048 * KIB), RegionMemory("vram", 262144 * KIB)),
    )


def test_amdgpu_legacy_format_reads_drm_memory_keys():
    """amdgpu 5.19: only drm-memory-<region> (with its odd `: \\t` spacing) gives the regions."""
    client = parse_fdinfo(fdinfo("drm-fdinfo-amdgpu", 200, 4))
    assert client is not None and client.client_id == 44
    assert client.regions == (RegionMemory("vram", 65536 * KIB), RegionMemory("gtt", 4096 * KIB),
                              RegionMemory("cpu", 0))
    assert client.engines == (EngineTime("gfx", 2_000_000_000),)


def test_i915_engine_capacity_and_regions():
    """i915: drm-engine-capacity-video belongs to the video engine and is not an engine of its own."""
    client = parse_fdinfo(fdinfo("drm-fdinfo-i915", 500, 8))
    assert client is not None and (client.driver, client.pdev, client.client_id) == ("i915", "0000:00:02.0", 7)
    assert client.engines == (EngineTime("render", 9288864723), EngineTime("copy", 2035071108),
                              EngineTime("video", 0, capacity=2), EngineTime("video-enhance", 0))
    assert client.regions == (RegionMemory("system0", 8192 * KIB), RegionMemory("stolen-system0", 0))


def test_xe_cycles_pair_with_their_total_cycles():
    """xe: drm-cycles-<class> carries drm-total-cycles-<class> as its clock; total-cycles is no memory region."""
    client = parse_fdinfo(fdinfo("drm-fdinfo-xe", 700, 9))
    assert client is not None
    total = 7655183225
    assert client.engines == (EngineTime("rcs", 28257900, total), EngineTime("bcs", 0, total),
                              EngineTime("vcs", 0, total, 2), EngineTime("vecs", 0, total, 2),
                              EngineTime("ccs", 0, total, 4))
    assert client.regions == (RegionMemory("system", 0), RegionMemory("gtt", 4096 * KIB),
                              RegionMemory("vram0", 524288 * KIB), RegionMemory("stolen", 0))


@pytest.mark.parametrize("text", [
    "pos:\t0\nflags:\t0100002\nmnt_id:\t25\nino:\t7\n",                    # a regular file
    "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1\neventfd-count:\t0\n",     # an eventfd
    "drm-driver:\tamdgpu\ndrm-pdev:\t0000:03:00.0\n",                     # no client id: cannot be told apart
    "drm-client-id:\t4\n",                                                 # no driver
    "",
])
def test_other_fds_are_not_clients(text):
    """An fd without both drm-driver and drm-client-id is not a DRM client."""
    assert parse_fdinfo(text) is None


def test_units_and_bad_values():
    """Bytes without a unit, KiB and MiB scale; a negative or unknown-unit value is left out, not zeroed."""
    text = ("drm-driver: x\ndrm-client-id: 1\ndrm-total-a: 5\ndrm-total-b: 2 MiB\ndrm-total-c: 3 TiB\n"
            "drm-total-d: -4\ndrm-engine-e: 12 ns\ndrm-engine-f: lots ns\ndrm-cycles-g: 5\n")
    client = parse_fdinfo(text)
    assert client is not None
    assert client.regions == (RegionMemory("a", 5), RegionMemory("b", 2 * MIB))
    assert client.engines == (EngineTime("e", 12),)  # cycles without total-cycles mean nothing


def test_busy_percent_by_wall_time_by_cycles_and_capacity():
    """ns engines divide by the wall interval, cycle engines by their clock, both by the engine count."""
    assert busy_percent(EngineTime("gfx", 0), EngineTime("gfx", 500_000_000), 2.0) == 25.0
    assert busy_percent(EngineTime("vcs", 0), EngineTime("vcs", 3_000_000_000, capacity=2), 2.0) == 75.0
    assert busy_percent(EngineTime("rcs", 10, 100), EngineTime("rcs", 60, 300), 99.0) == 25.0
    assert busy_percent(EngineTime("gfx", 900), EngineTime("gfx", 100), 1.0) is None  # reused client id
    assert busy_percent(EngineTime("gfx", 0), EngineTime("gfx", 100), 0.0) is None


# ---------------------------------------------------------------- properties

KEYS = st.sampled_from(["drm-driver", "drm-client-id", "drm-pdev", "drm-engine-gfx", "drm-engine-capacity-gfx",
                        "drm-cycles-rcs", "drm-total-cycles-rcs", "drm-memory-vram", "drm-total-vram",
                        "drm-resident-vram", "drm-shared-gtt", "pos", "flags"])
VALUES = st.one_of(st.integers(-5, 2**64).map(str), st.text(max_size=12),
                   st.integers(0, 2**40).map(lambda n: f"{n} KiB"), st.integers(0, 2**40).map(lambda n: f"{n} ns"))


@given(st.lists(st.tuples(KEYS, VALUES), max_size=20))
def test_any_key_value_text_parses_to_a_client_or_none(pairs):
    """Any mix of known keys and junk values gives a DrmClient with non-negative numbers, or None."""
    client = parse_fdinfo("".join(f"{k}:\t{v}\n" for k, v in pairs))
    if client is not None:
        assert client.client_id >= 0 and client.driver
        assert all(e.busy >= 0 and e.capacity >= 1 for e in client.engines)
        assert all(r.bytes >= 0 for r in client.regions)


@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(text):
    """Text of any shape (a truncated read, binary junk) never raises."""
    result = parse_fdinfo(text)
    assert result is None or isinstance(result, DrmClient)


@given(client=st.integers(0, 2**32), busy=st.integers(0, 2**50), kib=st.integers(0, 2**40))
def test_written_values_read_back_exactly(client, busy, kib):
    """A client written in the kernel's format reads back with the same id, engine time and memory."""
    text = f"drm-driver:\tamdgpu\ndrm-client-id:\t{client}\ndrm-engine-gfx:\t{busy} ns\ndrm-memory-vram:\t{kib} KiB\n"
    assert parse_fdinfo(text) == DrmClient("amdgpu", None, client, (EngineTime("gfx", busy),),
                                           (RegionMemory("vram", kib * KIB),))


@given(before=st.integers(0, 2**50), delta=st.integers(0, 2**40), wall=st.floats(1e-3, 1e4), capacity=st.integers(1, 8))
def test_busy_percent_stays_within_0_and_100(before, delta, wall, capacity):
    """Forward-moving counters give a share between 0 and 100 whatever the interval."""
    share = busy_percent(EngineTime("e", before), EngineTime("e", before + delta, capacity=capacity), wall)
    assert share is not None and 0.0 <= share <= 100.0


def _plain(client: object) -> object:
    """A client as nested plain tuples, whichever record types hold it (the reference's are dataclasses)."""
    if client is None:
        return None
    return (client.driver, client.pdev, client.client_id,  # type: ignore[attr-defined]
            tuple((e.name, e.busy, e.total, e.capacity) for e in client.engines),  # type: ignore[attr-defined]
            tuple((r.region, r.bytes) for r in client.regions))  # type: ignore[attr-defined]


# Mostly well-formed numbers, so regions written as several kinds (memory and total without resident) occur.
PARITY_KEYS = st.one_of(KEYS, st.sampled_from(["drm-memory-gtt", "drm-total-gtt", "drm-resident-gtt",
                                               "drm-engine-capacity-rcs", "drm-engine-rcs"]))
PARITY_VALUES = st.one_of(st.integers(0, 2**20).map(str), st.integers(0, 2**20).map(lambda n: f"{n} KiB"), VALUES)


@settings(max_examples=300)
@given(st.booleans(), st.lists(st.tuples(PARITY_KEYS, PARITY_VALUES), max_size=24))
def test_parser_agrees_with_the_reference_parser(header, pairs):
    """The faster parser gives what the one before it gave (drm_fdinfo_reference.py), on any mix of lines
    (half of them after a valid driver and client id, so most of those are clients)."""
    text = ("drm-driver:\txe\ndrm-client-id:\t3\n" if header else "") + "".join(f"{k}:\t{v}\n" for k, v in pairs)
    assert _plain(parse_fdinfo(text)) == _plain(reference.parse_fdinfo(text))


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*/proc/*/fdinfo/*")), ids=str)
def test_parser_agrees_with_the_reference_parser_on_every_fixture(path):
    """Every captured fdinfo file parses as the reference parser parses it."""
    text = path.read_text()
    assert _plain(parse_fdinfo(text)) == _plain(reference.parse_fdinfo(text))
