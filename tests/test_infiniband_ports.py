"""The InfiniBand per-tick reads in C (native/ibports.c) against their Python twin: identical ticks, identical wire."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Callable

import orjson
import pytest
from conftest import FIXTURES, native_module, open_under
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon import wire
from tracklab_sysmon._sysfs import KeptAttribute
from tracklab_sysmon.collectors import infiniband_files as ib
from tracklab_sysmon.collectors.base import Partial
from tracklab_sysmon.collectors.infiniband import InfinibandCollector, discover
from tracklab_sysmon.collectors.infiniband_backend import select_ports_backend
from tracklab_sysmon.collectors.infiniband_ports import PortsBackend, PortSpec
from tracklab_sysmon.collectors.infiniband_ports_py import PyCounterFiles, PyPortsMeter
from tracklab_sysmon.errors import BackendUnavailable, ParseError
from tracklab_sysmon.model import FabricSample

HCA = FIXTURES / "infiniband-hca" / "sys"
EFA = FIXTURES / "efa-p5" / "sys"
TREES = {"hca": (HCA,), "efa": (EFA,), "both": (HCA, EFA)}
SPACES = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()]


@pytest.fixture(scope="module")
def cffi():
    native_module()  # skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, when the helper is not built
    from tracklab_sysmon._sysmon_cffi import ffi, lib
    from tracklab_sysmon.collectors.infiniband_ports_cffi import CffiCounterFiles, CffiPortsMeter

    return CffiPortsMeter, ffi, lib, CffiCounterFiles


PYTHON = PortsBackend(PyPortsMeter, PyCounterFiles)


def _copy(root: pathlib.Path, *trees: pathlib.Path) -> pathlib.Path:
    for tree in trees:
        shutil.copytree(tree, root, dirs_exist_ok=True)
    return root


def _specs(root: pathlib.Path) -> list[PortSpec]:
    return [p.spec() for p in discover(str(root)) or ()]


def _put(path: str, text: str) -> None:
    """Written to a new file and renamed over, as a tree rewritten by a tool (the kept descriptor goes stale)."""
    with open(f"{path}.new", "w") as f:
        f.write(text)
    os.replace(f"{path}.new", path)


def _write(path: str, text: str) -> None:
    """Rewritten in place (the same inode), as the kernel updates an attribute."""
    pathlib.Path(path).write_text(text)


def _behind(path: str, text: str) -> None:
    """Renamed over by a new file of `text`, then the old file (the one the kept descriptors read) rewritten: read
    from while it moves, the new one once it repeats (MovingAttribute's rule, the C helper's)."""
    with open(path, "r+") as old:
        _put(path, text)
        old.write("99\n")
        old.truncate()


# ---------------------------------------------------------------- the parser


def _c_parse(cffi, data: bytes) -> int | None:
    _, ffi, lib, _ = cffi
    value = ffi.new("uint64_t *")
    return value[0] if lib.ib_parse_counter(data, len(data), value) else None


def _py_parse(data: bytes) -> int | None:
    try:
        return ib.parse_counter(data.decode("utf-8", "replace"))
    except ParseError:
        return None


def test_parser_reads_what_parse_counter_reads(cffi):
    """Exact cases: every kind of whitespace str.strip() strips, leading zeros, the 64-bit edge, broken UTF-8."""
    cases = {
        b"12\n": 12, "\u00a0\u3000 7\u2029\x1c".encode(): 7, b"0" * 30 + b"5": 5, b"18446744073709551615": 2**64 - 1,
        b"18446744073709551616": None, b"": None, b"\n": None, b"1 2": None, b"+1": None, b"-0": None,
        "\uff11".encode(): None, b"1\x00": None, b"\xff1": None, "1\u200b".encode(): None, b"1\xe2\x80": None,
    }
    assert {text: _c_parse(cffi, text) for text in cases} == cases
    assert {text: _py_parse(text) for text in cases} == cases


@settings(max_examples=1500, deadline=None)
@given(st.one_of(
    st.binary(max_size=48),
    st.builds(lambda left, zeros, number, right: f"{left}{'0' * zeros}{number}{right}".encode(),
              st.text(st.sampled_from(SPACES), max_size=4), st.integers(0, 3),
              st.integers(0, 2**66), st.text(st.sampled_from([*SPACES, "x", "\u200b", "\x00"]), max_size=4)),
    st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")),
))
def test_parser_matches_parse_counter_on_any_bytes(cffi, data):
    assert _c_parse(cffi, data) == _py_parse(data)


# ---------------------------------------------------------------- the meters side by side


def _both(cffi, specs: list[PortSpec]):
    meters = (PyPortsMeter(), cffi[0]())
    for meter in meters:
        meter.set_ports(specs)
    return meters


def _same_tick(meters, now: float):
    python, native = (meter.read(now) for meter in meters)
    assert native == python
    return python


Step = Callable[[list[PortSpec]], None]


def _steps() -> list[tuple[str, Step]]:
    """Changes to the first port's files (and every port's) that cover each rule, applied one per tick."""
    def first(index: int, text: str, put: Callable[[str, str], None] = _write) -> Step:
        return lambda specs: put(specs[0].data[index], text)

    def state(text: str) -> Step:
        return lambda specs: _write(specs[0].state, text)

    def each(add: int) -> Step:
        def rise(specs: list[PortSpec]) -> None:
            for spec in specs:
                for path in spec.data:
                    if os.path.isfile(path):
                        value = _py_parse(pathlib.Path(path).read_bytes())
                        _write(path, f"{(value or 0) + add}\n")
        return rise

    def gone(index: int) -> Step:
        return lambda specs: os.unlink(specs[0].data[index])

    def folder(index: int) -> Step:
        return lambda specs: os.mkdir(specs[0].data[index])

    def slow(name: str, text: str | None, put: Callable[[str, str], None] = _write) -> Step:
        """A slow-tier file of the first port (where it has one): rewritten, or removed when text is None."""
        def change(specs: list[PortSpec]) -> None:
            path = os.path.join(os.path.dirname(specs[0].state), name)
            if os.path.isfile(path):
                put(path, text) if text is not None else os.unlink(path)
        return change

    return [
        ("first reading", lambda specs: None),
        ("every counter rises", each(1000)),
        ("1 over 8 s: a rate of exactly 0.125 rounds to 0.12 as round() does", each(1)),
        ("link down", state("1: DOWN\n")),
        ("link back", state("4: ACTIVE\n")),
        ("a reset", first(0, "10\n")),
        ("flat after the reset", first(0, "10\n")),
        ("a rise after the reset", first(0, "13\n")),
        ("saturated at 2^32-1", first(1, f"{2**32 - 1}\n")),
        ("wrapped", first(1, "5\n")),
        ("over 64 bits in bytes", first(0, f"{2**62 + 1}\n")),
        ("2^64-1 packets", first(2, f"{2**64 - 1}\n")),
        ("not a counter", first(3, "N/A (no PMA)\n")),
        ("a long text that is not one", first(3, " " * 80 + "N/A\n")),
        ("Unicode whitespace around a counter", first(3, "\u00a042\u3000\n")),
        ("renamed over", first(2, "77\n", _put)),
        ("renamed over, then the old file written", first(0, "55\n", _behind)),
        ("a state text longer than the C helper hands back", state("4: ACTIVE" + " " * 100 + "\n")),
        ("a state that is not one", state("weird\n")),
        ("a counter gone", gone(2)),
        ("a folder where a counter was", folder(2)),
        ("the state gone", lambda specs: os.unlink(specs[0].state)),
        ("an error counter that is not one", slow("counters/symbol_error", "N/A\n")),
        ("an error counter renamed over", slow("counters/link_downed", "\u00a09\n", _put)),
        ("an hw counter gone", slow("hw_counters/out_of_buffer", None)),
        ("an hw counter renamed over", slow("hw_counters/rx_pkts", "12\n", _put)),
        ("an hw counter over 64 bits", slow("hw_counters/np_cnp_sent", f"{2**64}\n")),
        ("every counter rises again", each(4000)),
    ]


@pytest.mark.parametrize("tree", sorted(TREES))
def test_meters_agree_tick_by_tick_through_every_rule(cffi, tmp_path, tree):
    """On each fixture tree, both meters read the same ticks through resets, wraps, saturation, bad and odd texts,
    files renamed over, removed and replaced by folders, a link down, and a port that disappears and returns."""
    root = _copy(tmp_path / "sys", *TREES[tree])
    specs = _specs(root)
    meters = _both(cffi, specs)
    now = 100.0
    for name, step in _steps():
        step(specs)
        now += 8.0 if "8 s" in name else 1.0
        _same_tick(meters, now)
    # the first port disappears (its folder removed), then the rescan drops it; it returns and starts afresh
    gone = pathlib.Path(specs[0].state).parent
    shutil.move(gone, tmp_path / "away")
    _same_tick(meters, now + 1)
    for meter in meters:
        meter.set_ports(specs[1:])
    _same_tick(meters, now + 2)
    shutil.move(tmp_path / "away", gone)
    for meter in meters:
        meter.set_ports(specs)
    returned = _same_tick(meters, now + 3)
    assert returned.rates[:4] == [0.0 if v is not None else None for v in returned.values[:4]]


def test_the_scenario_hits_every_status(cffi, tmp_path):
    """The scenario above is only worth its name if the C helper saw every outcome in it."""
    _, ffi, lib, _ = cffi
    root = _copy(tmp_path / "sys", HCA)
    specs = _specs(root)
    meter = cffi[0]()
    meter.set_ports(specs)
    seen: set[int] = set()
    lengths: set[int] = set()
    now = 100.0
    for _, step in _steps():
        step(specs)
        now += 1.0
        meter.read(now)
        seen.update(ffi.unpack(meter._status, len(specs) * 4))
        lengths.update(ffi.unpack(meter._length, len(specs) * 5))
    assert seen == {lib.IB_OK, lib.IB_ABSENT, lib.IB_UNREADABLE, lib.IB_BAD_TEXT, lib.IB_SATURATED, lib.IB_TOO_BIG}
    assert lib.IB_NOT_REGULAR in lengths and max(lengths) > lib.IB_TEXT


def test_the_tick_says_why_in_python_words(cffi, tmp_path):
    """The reasons rebuilt from the C helper's codes are the ones Python's reads give, word for word."""
    root = _copy(tmp_path / "sys", HCA)
    specs = _specs(root)
    meters = _both(cffi, specs)
    _write(specs[0].data[3], "N/A (no PMA)\n")
    os.unlink(specs[1].data[0])
    os.mkdir(specs[1].data[0])
    _write(specs[2].data[1], f"{2**32 - 1}\n")
    _write(specs[2].data[0], f"{2**62}\n")
    tick = _same_tick(meters, 1.0)
    assert tick.unreadable == [
        f"{specs[0].data[3]}: not an unsigned counter: 'N/A (no PMA)'",
        f"{specs[1].data[0]}: [Errno 22] not a regular file: '{specs[1].data[0]}'",
    ]
    assert tick.problems == [
        "mlx5_2/1 port_xmit_data in bytes does not fit 64 bits",
        "mlx5_2/1 port_rcv_data is saturated at 2^32-1 (no 64-bit PortCountersExtended)",
    ]


def _wire(value: object) -> bytes:
    sample = value.value if isinstance(value, Partial) else value
    reason = value.reason if isinstance(value, Partial) else None
    return orjson.dumps([wire.fabric_to_wire(FabricSample(infiniband=sample)), reason])


@pytest.mark.parametrize("tree", sorted(TREES))
def test_the_collector_writes_the_same_bytes_with_either_meter(cffi, tmp_path, tree):
    """Two collectors on one tree, one per backend: the same JSON and degraded reason on every tick."""
    root = _copy(tmp_path / "sys", *TREES[tree])
    native = PortsBackend(cffi[0], cffi[3])
    collectors = (InfinibandCollector(str(root), PYTHON), InfinibandCollector(str(root), native))
    specs = _specs(root)
    now = 100.0
    for name, step in _steps():
        step(specs)
        now += 8.0 if "8 s" in name else 6.0  # past the slow tier's period: every port reads it each step
        python, native = (_wire(c.collect(now)) for c in collectors)
        assert native == python


# ---------------------------------------------------------------- generated counter histories


_READING = st.one_of(
    st.integers(0, 2**64 - 1).map(str), st.sampled_from(["0", "5", str(2**32 - 1), str(2**62), str(2**62 - 1)]),
    st.integers(0, 10**6).map(str), st.sampled_from(["", "junk", " 12 ", "\u00a03"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.lists(_READING, min_size=8, max_size=8),
                          st.sampled_from([0.0, 0.125, 0.5, 1.0, 0.7, 3.0, 8.0])), min_size=1, max_size=12))
def test_meters_agree_on_any_counter_history(cffi, history):
    """A port of words (counters/) and one of bytes (EFA) fed the same readings: the same ticks, whatever comes."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _copy(pathlib.Path(tmp) / "sys", HCA, EFA)
        specs = [s for s in _specs(root) if s.key in ("mlx5_0/1", "rdmap79s0/1")]
        meters = _both(cffi, specs)
        now = 1000.0
        for readings, step in history:
            for path, text in zip([p for s in specs for p in s.data], readings, strict=True):
                _write(path, text)
            now += step
            _same_tick(meters, now)


# ---------------------------------------------------------------- descriptors and backend choice


def test_c_descriptors_close_with_their_port_and_meter(cffi, tmp_path):
    """Five kept descriptors a port; a port dropped by a rescan closes its own, a meter dropped closes the rest."""
    root = _copy(tmp_path / "sys", HCA)
    specs = _specs(root)
    meter = cffi[0]()
    meter.set_ports(specs)
    meter.read(1.0)
    assert len(open_under(root)) == 5 * len(specs) == 15
    meter.set_ports(specs[1:])
    assert len(open_under(root)) == 10
    del meter
    assert open_under(root) == []
    counters = cffi[3]([str(p) for p in sorted(root.glob("class/infiniband/*/ports/1/hw_counters/*"))])
    counters.read_tier()
    assert len(open_under(root)) == 8 + 7  # mlx5_0's and mlx5_2's hw_counters, lifespan too (mlx5_1 has none)
    del counters
    assert open_under(root) == []


def _counter_files(root: pathlib.Path) -> list[str]:
    return [str(p) for p in sorted(root.glob("class/infiniband/*/ports/*/*counters/*"))]


_CHANGE = st.one_of(_READING, st.sampled_from(["<gone>", "<folder>", "<renamed>"]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**6), _CHANGE), max_size=30))
def test_counter_files_read_alike_on_every_fixture_counter(cffi, changes):
    """Every counters/ and hw_counters/ file of both fixture trees through either reader, read, changed (rewritten,
    removed, a folder in its place, renamed over) and read again: the same values, None in the same places."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _copy(pathlib.Path(tmp) / "sys", HCA, EFA)
        paths = _counter_files(root)
        readers = (PyCounterFiles(paths), cffi[3](paths))
        first = [r.read_tier()[1] for r in readers]
        assert first[0] == first[1] and None not in first[0] and len(paths) == 3 * 18 + 15 + 18
        for pick, change in changes:
            _change(paths[pick % len(paths)], change)
        python, native = (r.read_tier()[1] for r in readers)
        assert native == python


def _change(path: str, change: str) -> None:
    """The file at `path` removed (a folder in its place: removed too), then made a folder, renamed over by a new
    file, left gone, or written with the text `change`."""
    if os.path.isdir(path):
        os.rmdir(path)
    elif os.path.exists(path):
        os.unlink(path)
    if change == "<folder>":
        os.mkdir(path)
    elif change == "<renamed>":
        _put(path, "31\n")
    elif change != "<gone>":
        _write(path, change)


def _tier_files(root: pathlib.Path) -> tuple[list[str], list[str]]:
    """Every port's slow-tier texts and its counters/ files (errors and data alike), as the slow tier reads them."""
    ports = sorted(root.glob("class/infiniband/*/ports/*"))
    texts = [str(port / name) for port in ports for name in ("link_layer", "phys_state", "rate")]
    return texts, _counter_files(root)


def _shape(last: tuple | None, read: tuple) -> tuple[bool, bool, bool]:
    """Which of a tier read's tuples are the very ones the last read returned: the pair, the texts, the counters."""
    if last is None:
        return False, False, False
    return read is last, read[0] is last[0], read[1] is last[1]


_TIER_CHANGE = st.one_of(_CHANGE, st.sampled_from(["<same>", "Ethernet\n", "7: Phy Test\n", "400 Gb/sec (4X NDR)\n",
                                                   " " * 100 + "5\n", ""]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 10**6), _TIER_CHANGE), max_size=3), max_size=12))
def test_tiers_read_alike_and_keep_what_did_not_change(cffi, rounds):
    """Texts and counters read as one tier by either reader, round after round of changes (rewritten, rewritten with
    the same text, removed, a folder in its place, renamed over): the same values, and the same tuples handed back
    again exactly where nothing they hold changed."""
    with tempfile.TemporaryDirectory() as tmp:
        root = _copy(pathlib.Path(tmp) / "sys", HCA, EFA)
        texts, counters = _tier_files(root)
        paths = texts + counters
        readers = (PyCounterFiles(counters, texts), cffi[3](counters, texts))
        last: list[tuple | None] = [None, None]
        for changes in [[], *rounds]:
            for pick, change in changes:
                path = paths[pick % len(paths)]
                if change == "<same>":
                    if os.path.isfile(path):
                        _write(path, pathlib.Path(path).read_text())
                    continue
                _change(path, change)
            reads = [r.read_tier() for r in readers]
            assert reads[1] == reads[0] and len(reads[0][0]) == len(texts) and len(reads[0][1]) == len(counters)
            expected = (tuple(KeptAttribute(t).read_page() for t in texts),
                        tuple(_py_parse(pathlib.Path(c).read_bytes()) if os.path.isfile(c) else None
                              for c in counters))
            assert reads[0] == expected
            shapes = [_shape(before, read) for before, read in zip(last, reads, strict=True)]
            assert shapes[1] == shapes[0]
            if last[0] is not None:  # a tuple is kept exactly when what it holds reads the same
                assert shapes[0] == (reads[0] == last[0], reads[0][0] == last[0][0], reads[0][1] == last[0][1])
            last = reads


def test_a_tier_hands_back_its_tuples_until_a_file_changes(cffi, tmp_path):
    """A port's slow tier through either reader: read again unchanged, the very same pair; an error counter changed,
    new counters beside the same texts; a text changed, new texts beside the same counters; read() the counters."""
    root = _copy(tmp_path / "sys", HCA)
    port = root / "class/infiniband/mlx5_0/ports/1"
    texts = [str(port / name) for name in ("link_layer", "phys_state", "rate")]
    errors = [str(port / "counters" / name) for name in ("symbol_error", "link_downed")]
    for make in (PyCounterFiles, cffi[3]):
        _write(str(port / "counters/symbol_error"), "2\n")
        _write(str(port / "rate"), "200 Gb/sec (4X HDR)\n")
        reader = make(errors, texts)
        first = reader.read_tier()
        assert first == ((b"InfiniBand\n", b"5: LinkUp\n", b"200 Gb/sec (4X HDR)\n"), (2, 0))
        assert reader.read_tier() is first
        _write(str(port / "counters/symbol_error"), "9\n")
        second = reader.read_tier()
        assert second == (first[0], (9, 0)) and second[0] is first[0] and second[1] is not first[1]
        _put(str(port / "rate"), "400 Gb/sec (4X NDR)\n")
        third = reader.read_tier()
        assert third[0][2] == b"400 Gb/sec (4X NDR)\n" and third[1] is second[1] and third[0] is not second[0]
        assert reader.read_tier() is third
        del reader


def test_backend_follows_the_native_setting(cffi, monkeypatch):
    """off: the twin; require: the C reads, or BackendUnavailable when the piece is missing; auto falls back."""
    assert select_ports_backend("off") == (PYTHON, "python")
    assert select_ports_backend("require") == ((cffi[0], cffi[3]), "cffi") == select_ports_backend("auto")
    monkeypatch.setitem(sys.modules, "tracklab_sysmon.collectors.infiniband_ports_cffi", None)
    assert select_ports_backend("auto") == (PYTHON, "python")
    with pytest.raises(BackendUnavailable, match="InfiniBand port reader is not built"):
        select_ports_backend("require")
