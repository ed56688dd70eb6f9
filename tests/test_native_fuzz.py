"""Hypothesis fuzzing: on random, kernel-like and truncated text the C parsers never crash and
agree with the Python parsers (same value or same error), deferring only what they say they do."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import native_module, outcome
from tracklab_sysmon import hotpath
from tracklab_sysmon.collectors import procfs

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
TICKS = 100.0
PYTHON = {
    "stat": lambda text: procfs.parse_stat(text, TICKS),
    "diskstats": procfs.parse_diskstats,
    "net_dev": procfs.parse_net_dev,
    "meminfo": procfs.parse_meminfo,
    "loadavg": procfs.parse_loadavg,
    "tcp_established": procfs.parse_tcp_established,
}
FILES = {"stat": "stat", "diskstats": "diskstats", "net_dev": "net/dev", "meminfo": "meminfo",
         "loadavg": "loadavg", "tcp_established": "net/snmp"}
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def native():
    return native_module()


def check(native, kind: str, data: bytes) -> bool:
    """Assert C and Python agree on `data`; True when C parsed it itself (not deferred)."""
    c_result = outcome(lambda: native.parse_native(kind, data, TICKS))
    if c_result == ("value", native.DEFERRED):
        return False
    assert c_result == outcome(lambda: PYTHON[kind](data.decode("utf-8", "replace"))), data
    return True


WORDS = ["cpu", "cpu0", "cpu12", "cpu ", "Tcp:", "CurrEstab", "MemTotal:", "MemFree:", "MemAvailable:",
         "Cached:", "Buffers:", "SReclaimable:", "SwapTotal:", "SwapFree:", "kB", "eth0", "lo:", "sda",
         "|", ":", "/", ".", "+", "-", "_", "0", "7", "18446744073709551615", "99999999999999999999",
         "1.5", "0.28", "1e5", "nan", "inf", "x", "é", "\x00", "\r", "\x0b", "\x1c", " ", "  ", "\t", "\n"]
kernelish = st.lists(st.one_of(st.sampled_from(WORDS), st.integers(0, 10**6).map(str)), max_size=120).map(
    lambda parts: "".join(parts).encode("utf-8"))
digits_and_spaces = st.lists(
    st.one_of(st.integers(0, 2**64).map(str), st.sampled_from([" ", "\n", "\t", "cpu", "Tcp: CurrEstab",
                                                               "sda", ":", "/", "kB"])),
    max_size=80,
).map(lambda parts: " ".join(parts).encode())
REAL = sorted(p for p in FIXTURES.glob("*/proc/**/*") if p.is_file() and p.stat().st_size < 200_000)


@st.composite
def mutated_real_files(draw) -> bytes:
    """A real fixture file, cut short and with a few bytes overwritten."""
    data = bytearray(draw(st.sampled_from(REAL)).read_bytes() if REAL else b"cpu 1 2 3 4\n")
    data = data[: draw(st.integers(0, len(data)))]
    for _ in range(draw(st.integers(0, 3))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.parametrize("kind", sorted(PYTHON))
@FUZZ
@given(data=st.binary(max_size=400))
def test_random_bytes(native, kind, data):
    """Arbitrary bytes never crash the C parser, and its answer matches Python's."""
    check(native, kind, data)


@pytest.mark.parametrize("kind", sorted(PYTHON))
@FUZZ
@given(data=kernelish)
def test_kernel_like_text(native, kind, data):
    """Kernel words, huge numbers, signs and control bytes in any order: the backends agree."""
    check(native, kind, data)


@pytest.mark.parametrize("kind", sorted(PYTHON))
@FUZZ
@given(data=st.one_of(mutated_real_files(), digits_and_spaces))
def test_truncated_and_mutated_real_files(native, kind, data):
    """Real files cut at any byte and lightly corrupted parse the same in both backends."""
    check(native, kind, data)


@pytest.mark.parametrize("kind", sorted(PYTHON))
def test_every_cut_of_every_real_file(native, kind):
    """Every prefix of the real file for this parser agrees, and C parses canonical ones itself."""
    paths = [root / FILES[kind] for root in FIXTURES.glob("*/proc") if (root / FILES[kind]).is_file()]
    assert paths
    parsed_by_c = 0
    for path in paths:
        data = path.read_bytes()
        step = max(1, len(data) // 400)
        for cut in range(0, len(data) + 1, step):
            parsed_by_c += check(native, kind, data[:cut])
    assert parsed_by_c > 0


@settings(max_examples=40, deadline=None)
@given(data=st.one_of(mutated_real_files(), kernelish))
def test_readers_agree_on_fuzzed_files(native, tmp_path_factory, data):
    """Through real files and kept fds, both readers give the same records or the same error."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "net").mkdir()
    for name in FILES.values():
        (root / name).write_bytes(data)
    c_reader = native.CffiHotReader(str(root))
    py_reader = hotpath.select_backend("off")[0](str(root))
    for method in PYTHON:
        assert outcome(getattr(c_reader, method)) == outcome(getattr(py_reader, method))
