"""The DRM fdinfo parser in C (native/fdinfo.c) against the Python parser: the same records, or the same None,
on every fixture file and on any text; text C does not decide goes to the Python parser."""

from __future__ import annotations

import pytest
from conftest import FIXTURES, native_module
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon.collectors import drm_clients
from tracklab_sysmon.collectors.drm_fdinfo import DrmClient, EngineTime, RegionMemory, parse_fdinfo

KIB = 1024


@pytest.fixture(scope="module")
def parse():
    """A C parser; skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, where it was not built."""
    native_module()
    from tracklab_sysmon.collectors import drm_fdinfo_cffi

    return drm_fdinfo_cffi.CffiFdinfoParser()


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*/proc/*/fdinfo/*")), ids=str)
def test_every_fixture_parses_as_in_python(parse, path):
    """Each captured fdinfo file (amdgpu, i915, xe, sockets) gives what the Python parser gives."""
    text = path.read_text()
    assert parse(text) == parse_fdinfo(text)


def test_an_xe_client_reads_exactly(parse):
    """Cycles with their clock and capacity, regions by their preferred kind (resident over total), the pdev."""
    text = ("pos:\t0\ndrm-driver:\txe\ndrm-client-id:\t11\ndrm-pdev:\t0000:03:00.0\ndrm-total-vram0:\t8 MiB\n"
            "drm-resident-vram0:\t4096 KiB\ndrm-cycles-rcs:\t25\ndrm-total-cycles-rcs:\t100\n"
            "drm-engine-capacity-ccs:\t4\ndrm-cycles-ccs:\t7\ndrm-total-cycles-ccs:\t200\ndrm-cycles-bcs:\t3\n")
    assert parse(text) == DrmClient("xe", "0000:03:00.0", 11,
                                    (EngineTime("rcs", 25, 100, 1), EngineTime("ccs", 7, 200, 4)),
                                    (RegionMemory("vram0", 4096 * KIB),))


KINDS = ["engine-capacity", "total-cycles", "engine", "cycles", "resident", "memory", "total", "shared"]
# Few names, so the lines of one engine or region (cycles with their clock, capacity, several memory kinds) meet.
KEYS = st.one_of(st.sampled_from(["drm-driver", "drm-client-id", "drm-pdev", "drm-drivers", "pos", "flags"]),
                 st.builds(lambda kind, name: f"drm-{kind}-{name}", st.sampled_from(KINDS),
                           st.sampled_from(["rcs", "rcs", "vram", "vram", "", "a:b"])),
                 st.sampled_from(["drm-engine-capacity", "drm-engine", "drm-total-cycles"]))
SEPARATORS = st.sampled_from([":\t", ": ", ":", " :", "\t:\t", "::", " "])
VALUES = st.one_of(st.integers(0, 3).map(str), st.integers(0, 2**20).map(str),
                   st.integers(0, 2**20).map(lambda n: f"{n} KiB"), st.integers(0, 9).map(lambda n: f"{n}ns"),
                   st.integers(0, 2**70).map(lambda n: f"{n} GiB"),
                   st.sampled_from(["", "xe", "+5", "-1", "-0", "1_0", "0x10", "5 ns ", "5 KiBx", "7\t", " 3 MiB",
                                    "0000:03:00.0", "a b", "00000000000000000000012", "²", "5\r", "\x1c"]),
                   st.text(max_size=8))


@pytest.mark.parametrize("value", ["+5", "-0", "-3", "1_0", "0x1", "", "00012", "1" * 19, "²", "5 6"])
def test_client_ids_read_as_python_reads_them(parse, value):
    """A client id with a sign, an underscore, a hex prefix, 19 digits or a non-ASCII digit: as in Python."""
    text = f"drm-driver:\txe\ndrm-client-id:\t{value}\ndrm-engine-rcs:\t5 ns\n"
    assert parse(text) == parse_fdinfo(text)


@pytest.mark.parametrize("kinds", [("memory", "total"), ("total", "memory"), ("total", "resident", "memory"),
                                   ("memory",), ("total",)])
def test_a_region_takes_its_preferred_kind_as_in_python(parse, kinds):
    """Resident over memory over total, whatever order the lines come in; each kind a different size."""
    lines = "".join(f"drm-{kind}-vram0:\t{i + 1} KiB\n" for i, kind in enumerate(kinds))
    text = f"drm-driver:\tamdgpu\ndrm-client-id:\t1\n{lines}"
    assert parse(text) == parse_fdinfo(text)


@pytest.mark.parametrize("clock", ["100", "100 ns", "100 KiB", None])
def test_cycles_count_only_with_a_plain_clock_as_in_python(parse, clock):
    """xe cycles need drm-total-cycles without a unit; with one, or without the line, the engine is left out."""
    line = f"drm-total-cycles-rcs:\t{clock}\n" if clock is not None else ""
    text = f"drm-driver:\txe\ndrm-client-id:\t1\ndrm-cycles-rcs:\t5\n{line}"
    assert parse(text) == parse_fdinfo(text)


def test_a_line_written_twice_counts_with_its_last_value_at_its_first_place(parse):
    """gfx twice (5 then 9 ns) comes first with 9; the driver written twice is the last one, as in Python."""
    text = ("drm-driver:\tamdgpu\ndrm-client-id:\t1\ndrm-engine-gfx:\t5 ns\ndrm-engine-dma:\t1 ns\n"
            "drm-engine-gfx:\t9 ns\ndrm-driver:\tradeon\n")
    assert parse(text) == parse_fdinfo(text) == DrmClient("radeon", None, 1, (EngineTime("gfx", 9),
                                                                             EngineTime("dma", 1)), ())


@pytest.mark.parametrize("capacity", ["0", "1", "3", "2 ns"])
def test_engine_capacity_reads_as_python_reads_it(parse, capacity):
    """A capacity of 0 counts as 1, one with a unit is ignored, as in Python."""
    text = f"drm-driver:\txe\ndrm-client-id:\t1\ndrm-engine-rcs:\t5 ns\ndrm-engine-capacity-rcs:\t{capacity}\n"
    assert parse(text) == parse_fdinfo(text)


@settings(max_examples=600, deadline=None)
@given(header=st.booleans(), lines=st.lists(st.tuples(KEYS, SEPARATORS, VALUES), max_size=24),
       end=st.sampled_from(["", "\n"]))
def test_any_mix_of_lines_parses_as_in_python(parse, header, lines, end):
    """Any mix of keys, separators and values (signs, underscores, units glued or trailing, huge numbers,
    non-ASCII, control characters) gives exactly the Python parser's record or None."""
    text = ("drm-driver:\ti915\ndrm-client-id:\t7\n" if header else "") + \
        "\n".join(f"{k}{s}{v}" for k, s, v in lines) + end
    assert parse(text) == parse_fdinfo(text)


@given(st.text(max_size=300))
def test_arbitrary_text_parses_as_in_python(parse, text):
    """Text of any shape gives what the Python parser gives (None for almost all of it)."""
    assert parse(text) == parse_fdinfo(text)


def test_backend_follows_the_native_setting(parse):
    """`off` picks the Python parser, `require` the C one (which this run has)."""
    factory, name = drm_clients.select_fdinfo_parser("off")
    assert (factory(), name) == (parse_fdinfo, "python")
    factory, name = drm_clients.select_fdinfo_parser("require")
    assert (type(factory()), name) == (type(parse), "cffi")
