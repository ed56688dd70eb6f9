"""The sysfs files read in C (native/sysints.c) against the Python twins (`PyIntFiles`, `PyTextFiles`, through
`KeptFile`): the same integers and texts on every Intel fixture tree, on files missing, not regular, garbage or
replaced, and on any bytes."""

from __future__ import annotations

import os
import pathlib

import pytest
from conftest import FIXTURES, native_module
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon.collectors import sysfs_ints
from tracklab_sysmon.collectors.intel_cards import RECHECK, CardFiles, CardReader, discover, intel_slots
from tracklab_sysmon.collectors.sysfs_ints import PyIntFiles, PyTextFiles

INTEL_TREES = sorted(path for path in FIXTURES.glob("*/sys") if intel_slots(str(path)))


@pytest.fixture(scope="module")
def cffi_files():
    """The C reader's class; skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, where it was not built."""
    native_module()
    from tracklab_sysmon.collectors import sysfs_ints_cffi

    return sysfs_ints_cffi.CffiIntFiles


@pytest.fixture(scope="module")
def cffi_texts():
    native_module()
    from tracklab_sysmon.collectors import sysfs_ints_cffi

    return sysfs_ints_cffi.CffiTextFiles


def both(cffi_files, paths, recheck=1):
    return cffi_files(paths, recheck), PyIntFiles(paths, recheck)


@pytest.mark.parametrize("tree", INTEL_TREES, ids=lambda p: p.parent.name)
def test_every_file_of_every_intel_tree_reads_as_in_python(cffi_files, tree):
    """Every file and folder under a captured Intel tree: the same integers (and Nones), read twice, some skipped."""
    paths = sorted(str(p) for p in tree.rglob("*"))
    c, py = both(cffi_files, paths, RECHECK)
    everything, every_other = [True] * len(paths), [i % 2 == 0 for i in range(len(paths))]
    for want in (everything, everything, every_other, everything):
        assert c.read(want) == py.read(want)


def test_the_xe_fixture_reads_exactly(cffi_files):
    """The values the fixture's files hold: frequency in MHz, energy in µJ, temperatures in m°C."""
    hwmon = FIXTURES / "intel-xe/sys/class/drm/card0/device/hwmon/hwmon2"
    freq = FIXTURES / "intel-xe/sys/class/drm/card0/device/tile0/gt0/freq0"
    paths = [str(freq / "act_freq"), str(freq / "max_freq"), str(hwmon / "energy1_input"), str(hwmon / "temp2_input"),
             str(hwmon / "name")]
    expected = [int((pathlib.Path(p)).read_text()) for p in paths[:4]] + [None]
    for reader in both(cffi_files, paths):
        assert reader.read([True] * 5) == expected
        assert reader.read([False, True, False, True, True]) == [None, expected[1], None, expected[3], None]


def test_missing_folder_fifo_garbage_and_huge_files(cffi_files, tmp_path):
    """None for a missing path, a folder, a FIFO (never opened blocking), text int() of bytes refuses (an Arabic
    digit too); int() for the rest."""
    texts = {"ok": "42\n", "signed": " -7 \n", "plus": "+3", "under": "1_000\n", "big": "123456789012345678901\n",
             "garbage": "12a\n", "empty": "", "blank": " \n", "nul": "5\x00", "hex": "0x10", "utf8": "٣\n",
             "crlf": "9\r\n", "vtab": "\x0b8\x0c"}
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    names = [*texts, "fifo", "folder", "missing"]
    expected = [42, -7, 3, 1000, 123456789012345678901, None, None, None, None, None, None, 9, 8, None, None, None]
    for reader in both(cffi_files, [str(tmp_path / n) for n in names]):
        assert reader.read([True] * len(names)) == expected


def test_replaced_and_deleted_files_are_seen_on_the_recheck(cffi_files, tmp_path):
    """A file renamed over is read through the old descriptor until the identity check, every `recheck` reads; a
    deleted one likewise; a file created where none was is opened on the next read."""
    path, absent = tmp_path / "energy", tmp_path / "later"
    path.write_text("100\n")
    readers = both(cffi_files, [str(path), str(absent)], recheck=3)
    seen: list[list[list[int | None]]] = [[], []]
    for tick in range(8):
        if tick == 1:
            (tmp_path / "new").write_text("200\n")
            os.rename(tmp_path / "new", path)
            absent.write_text("7\n")
        if tick == 5:
            path.unlink()
        for reader, log in zip(readers, seen, strict=True):
            log.append(reader.read([True, True]))
    assert seen[0] == seen[1]
    assert [values[0] for values in seen[0]] == [100, 100, 100, 200, 200, 200, None, None]
    assert [values[1] for values in seen[0]] == [None, 7, 7, 7, 7, 7, 7, 7]


def test_the_flags_must_match_the_files(cffi_files):
    for reader in both(cffi_files, ["/nonexistent"]):
        for flags in ([True, False], []):  # too many, too few
            with pytest.raises(ValueError):
                reader.read(flags)
        assert reader.read([True]) == [None]  # a refused call leaves the reader as it was


TEXTS = st.one_of(st.text(alphabet=" \t\n\r\x0b\x0c+-_0123456789x٣\x00", max_size=24),
                  st.integers(-2**70, 2**70).map(str), st.binary(max_size=12).map(lambda b: b.decode("latin-1")))


@settings(max_examples=300)
@given(texts=st.lists(TEXTS, min_size=1, max_size=6))
def test_any_text_reads_as_int_reads_it(cffi_files, tmp_path_factory, texts):
    """Whatever the files hold, C gives what int() of their bytes gives (None where it raises)."""
    folder = tmp_path_factory.mktemp("ints")
    paths = []
    for n, text in enumerate(texts):
        (folder / str(n)).write_bytes(text.encode("utf-8"))
        paths.append(str(folder / str(n)))
    c, py = both(cffi_files, paths)
    assert c.read([True] * len(paths)) == py.read([True] * len(paths))


def test_card_reader_gives_each_card_its_files_and_reuses_them_while_nothing_moved(tmp_path):
    """Per card: act and max frequency, energy, temperatures; None for a card asleep; the same list while the
    values and the awake flags are the same (the collector then reuses its records)."""
    cards = discover(str(FIXTURES / "intel-xe/sys"))
    reader = CardReader(cards)
    first = reader.read([True, True])
    assert first == [CardFiles(2850, 2850, 52000000, (58000, 64000))] * 2
    assert reader.read([True, True]) is first
    assert reader.read([True, False])[1] is None


def test_the_backend_follows_the_mode():
    assert sysfs_ints.select_files("off") == ((PyIntFiles, PyTextFiles), "python")


# ---------------------------------------------------------------- texts (runtime_status)


@pytest.mark.parametrize("tree", INTEL_TREES, ids=lambda p: p.parent.name)
def test_every_file_of_every_intel_tree_reads_as_the_same_text(cffi_texts, tree):
    paths = sorted(str(p) for p in tree.rglob("*"))
    c, py = cffi_texts(paths, 1), PyTextFiles(paths, 1)
    for _ in range(2):
        assert c.read() == py.read()


def test_the_xe_fixture_statuses_read_exactly(cffi_texts):
    paths = [str(FIXTURES / f"intel-xe/sys/class/drm/card{n}/device/power/runtime_status") for n in (0, 1)]
    for reader in (cffi_texts(paths, 1), PyTextFiles(paths, 1)):
        assert reader.read() == ["active\n", "suspended\n"]


def test_texts_follow_their_files_and_stay_one_list_while_none_changed(cffi_texts, tmp_path):
    """A changed, replaced, deleted, undecodable or long file: the same text from both; the C reader hands back
    the very list of the last call while no file changed."""
    status, other = tmp_path / "runtime_status", tmp_path / "other"
    status.write_text("active\n")
    c, py = cffi_texts([str(status), str(other)], 1), PyTextFiles([str(status), str(other)], 1)
    first = c.read()
    assert first == py.read() == ["active\n", None]
    assert c.read() is first
    def replace() -> None:
        (tmp_path / "new").write_text("resuming\n")
        os.rename(tmp_path / "new", status)

    steps = [lambda: status.write_text("suspended\n"), lambda: other.write_bytes(b"\xff\xfeok"), replace,
             lambda: status.write_text("resumed!\n"),  # as long as before: the bytes are compared
             lambda: other.write_text("x" * 5000), status.unlink, lambda: status.write_text("active\n")]
    seen = []
    for step in steps:
        step()
        texts = c.read()
        assert texts == py.read() and texts is not first
        seen.append(texts)
        first = texts
    assert seen[0] == ["suspended\n", None] and seen[1][1] == "\ufffd\ufffdok" and seen[2][0] == "resuming\n"
    assert seen[3][0] == "resumed!\n" and seen[4][1] == "x" * 4096 and seen[5][0] is None
    assert seen[6][0] == "active\n"


@settings(max_examples=200)
@given(data=st.lists(st.binary(max_size=20), min_size=1, max_size=4))
def test_any_bytes_read_as_the_same_text(cffi_texts, tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("texts")
    paths = []
    for n, raw in enumerate(data):
        (folder / str(n)).write_bytes(raw)
        paths.append(str(folder / str(n)))
    assert cffi_texts(paths, 1).read() == PyTextFiles(paths, 1).read()
