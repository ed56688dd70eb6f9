"""The sysfs files read in C (native/sysints.c) against the Python twins (`PyIntFiles`, `PyTextFiles`, through
`KeptFile`): the same integers and texts on every Intel fixture tree, on files missing, not regular, garbage or
replaced, and on any bytes."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest
from conftest import FIXTURES, native_module
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon.collectors import sysfs_ints
from tracklab_sysmon.collectors.intel_cards import RECHECK, CardPlaces, CardReader, discover, intel_slots
from tracklab_sysmon.collectors.sysfs_ints import PyIntFiles, PyKeptTexts, PyTextFiles

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


def test_moving_files_are_looked_at_only_when_a_read_repeats_and_follow_a_replaced_file(cffi_files, tmp_path):
    """MOVING (RAPL's energy_uj): a counter that moved is read through the kept descriptor; one that repeats has its
    path stat()ed, so a file renamed over (the old one still reads as before), its folder renamed away or the file
    deleted is seen on that very read, as KeptFile sees it; a write through the old file after a rename is read (it
    moved) until it repeats. Both backends alike."""
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    path = zone / "energy_uj"
    path.write_text("100\n")
    readers = both(cffi_files, [str(path)], sysfs_ints.MOVING)
    seen: list[list[int | None]] = [[], []]

    def tick() -> None:
        for reader, log in zip(readers, seen, strict=True):
            log.extend(reader.read([True]))

    tick()
    path.write_text("150\n")  # in place: it moved
    tick()
    (zone / "new").write_text("200\n")
    os.rename(zone / "new", path)  # the old file still reads 150: looked at, the new file read
    tick()
    with open(path, "r+") as old:
        (zone / "new").write_text("300\n")
        os.rename(zone / "new", path)
        old.write("170\n")  # through the file just replaced: it moved, so it is what is read
        old.flush()
        tick()
    tick()  # repeated: looked at, the new file
    zone.rename(tmp_path / "gone")  # the folder renamed away: the old file repeats, its path is gone
    tick()
    (tmp_path / "gone").rename(zone)
    tick()
    path.unlink()
    tick()
    path.write_text("400\n")
    tick()
    assert seen[0] == seen[1] == [100, 150, 200, 170, 300, None, 300, None, 400]


def test_a_moving_file_stats_its_path_only_after_a_read_that_repeats(tmp_path, monkeypatch):
    """The Python twin's MovingFile: no stat() while the counter moves, one for a read that repeats or is longer than
    what is compared, none for a file just opened."""
    from tracklab_sysmon._sysfs import MovingFile

    path = tmp_path / "energy_uj"
    path.write_text("100\n")
    kept = MovingFile(str(path))
    looks: list[str] = []
    real = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: looks.append(p) or real(p, *a, **k))
    assert (kept.read_int(), len(looks)) == (100, 0)
    path.write_text("150\n")
    assert (kept.read_int(), len(looks)) == (150, 0)
    assert (kept.read_int(), len(looks)) == (150, 1)
    path.write_text(" " * MovingFile.COMPARED + "7\n")
    assert (kept.read_int(), len(looks)) == (7, 2)


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


def test_card_reader_gives_each_card_its_files_where_its_places_say(tmp_path):
    """Per card: act and max frequency, energy, temperatures, at the card's places; None for a card asleep."""
    cards = discover(str(FIXTURES / "intel-xe/sys"))
    reader = CardReader(cards)
    assert reader.places == [CardPlaces(0, 5, 0, 1, 2, 3), CardPlaces(5, 10, 5, 6, 7, 8)]
    assert reader.values([True, True]) == [2850, 2850, 52000000, 58000, 64000] * 2
    assert reader.values([True, False]) == [2850, 2850, 52000000, 58000, 64000] + [None] * 5
    assert reader.values([False, True]) == [None] * 5 + [2850, 2850, 52000000, 58000, 64000]


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


# ---------------------------------------------------------------- kept texts (a DRM client's fdinfo, ClientWalk)


@pytest.fixture(scope="module")
def cffi_kept():
    native_module()
    from tracklab_sysmon.collectors import sysfs_ints_cffi

    return sysfs_ints_cffi.CffiKeptTexts


def test_the_kept_texts_backend_follows_the_mode():
    assert sysfs_ints.select_kept_texts("off") == (PyKeptTexts, "python")


def _rename_over(path: pathlib.Path, data: bytes) -> None:
    new = path.with_name("new")
    new.write_bytes(data)
    os.rename(new, path)


def test_kept_texts_tell_each_change_once_as_the_twin_does(cffi_kept, tmp_path):
    """Written, the same length rewritten, renamed over, undecodable, longer than a read, deleted, made again; members
    kept on keep their last text across a new set; both backends tell the same changes at every step."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_text("one")
    readers = [cffi_kept(), PyKeptTexts()]
    for reader in readers:
        reader.keep({"a": str(a), "b": str(b)})
    steps = [
        (lambda: None, {"a": "one", "b": None}),  # the first read tells every member; b is missing
        (lambda: None, {"b": None}),  # a unchanged; b still missing, told every read
        (lambda: b.write_text("x"), {"b": "x"}),
        (lambda: None, {}),
        (lambda: a.write_text("two"), {"a": "two"}),  # the same length: the bytes are compared
        (lambda: _rename_over(a, b"three"), {"a": "three"}),
        (lambda: _rename_over(a, b"three"), {}),  # another file, the same bytes
        (lambda: a.write_bytes(b"\xff"), {"a": "\ufffd"}),
        (lambda: a.write_bytes(b"\xfe"), {"a": "\ufffd"}),  # other bytes, the same text: told (the caller compares)
        (lambda: a.write_text("x" * 70000), {"a": "x" * 65536}),  # one read of 64 KiB
        (lambda: a.write_text("x" * 65536 + "y"), {}),  # a change past the read is not seen
        (a.unlink, {"a": None}),
        (lambda: a.write_text("three"), {"a": "three"}),  # made again: told although its last text was this
    ]
    for n, (step, expected) in enumerate(steps):
        step()
        assert [reader.read() for reader in readers] == [expected, expected], n
        expected_text = None if n == 11 else a.read_bytes()[:65536].decode("utf-8", "replace")
        assert readers[0].text("a") == readers[1].text("a") == expected_text, n
    for reader in readers:
        assert reader.text("a") == "three" and reader.text("b") == "x" and reader.text("c") is None
        reader.keep({"c": str(c), "b": str(b)})  # a closed; b kept on with its text; c new
        assert list(reader.members()) == ["c", "b"] and reader.text("a") is None and reader.text("b") == "x"
    c.write_text("sea")
    assert [reader.read() for reader in readers] == [{"c": "sea"}] * 2
    for reader in readers:
        reader.drop("b")
        reader.drop("b")  # no member: nothing
        assert list(reader.members()) == ["c"] and reader.text("b") is None
    b.write_text("changed, but no member")
    assert [reader.read() for reader in readers] == [{}, {}]
    for reader in readers:
        reader.keep({})
        assert list(reader.members()) == [] and reader.read() == {}


def test_kept_texts_look_at_a_file_only_when_its_read_repeats(cffi_kept, tmp_path, monkeypatch):
    """MovingText's rule in both backends: a text that moved is read from the kept descriptor without looking at its
    file (a write through a file just renamed over is what is told), one that repeats is looked at and its new file
    read; a deleted file written through still moves, then is told gone once it repeats. Python fstat()s only then."""
    path = tmp_path / "9"
    path.write_text("pos:\t0\n")
    readers = [cffi_kept(), PyKeptTexts()]
    for reader in readers:
        reader.keep({"a": str(path)})
    assert [reader.read() for reader in readers] == [{"a": "pos:\t0\n"}] * 2
    looks: list[int] = []
    real = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: looks.append(fd) or real(fd))
    path.write_text("pos:\t1\n")  # in place: it moved
    assert [reader.read() for reader in readers] == [{"a": "pos:\t1\n"}] * 2 and looks == []
    assert [reader.read() for reader in readers] == [{}, {}] and len(looks) == 1  # repeated: looked at
    with open(path, "r+") as old:
        _rename_over(path, b"pos:\t2\n")
        old.write("pos:\t3\n")  # through the file just replaced: it moved, so it is what is read
        old.flush()
        assert [reader.read() for reader in readers] == [{"a": "pos:\t3\n"}] * 2 and len(looks) == 1
        assert [reader.text("a") for reader in readers] == ["pos:\t3\n"] * 2
    assert [reader.read() for reader in readers] == [{"a": "pos:\t2\n"}] * 2  # repeated: the new file
    with open(path, "r+") as old:
        path.unlink()
        old.write("pos:\t4\n")
        old.flush()
        assert [reader.read() for reader in readers] == [{"a": "pos:\t4\n"}] * 2
    assert [reader.read() for reader in readers] == [{"a": None}] * 2  # repeated, no link left, no path
    assert [reader.text("a") for reader in readers] == [None, None]


def test_kept_texts_of_a_live_process_follow_its_fd_until_it_exits(cffi_kept, tmp_path):
    """On a live /proc: this process's fd as it moves, as another file is put in its place (dup2), until it is
    closed; a child's fd until the child exits."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.write_text("")
    second.write_text("")
    fd = os.open(first, os.O_RDWR)
    child = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        paths = {"mine": f"/proc/{os.getpid()}/fdinfo/{fd}", "child": f"/proc/{child.pid}/fdinfo/0"}
        readers = [cffi_kept(), PyKeptTexts()]
        for reader in readers:
            reader.keep(paths)
        told = [reader.read() for reader in readers]
        assert told[0] == told[1] and sorted(told[0]) == ["child", "mine"]
        assert (told[0]["mine"] or "").startswith("pos:\t0\n") and (told[0]["child"] or "").startswith("pos:\t0\n")
        assert [reader.read() for reader in readers] == [{}, {}]
        os.write(fd, b"abc")
        told = [reader.read() for reader in readers]
        assert told[0] == told[1] and list(told[0]) == ["mine"] and (told[0]["mine"] or "").startswith("pos:\t3\n")
        other = os.open(second, os.O_RDONLY)
        os.dup2(other, fd)  # the fd now names another file: its position and inode
        os.close(other)
        told = [reader.read() for reader in readers]
        assert told[0] == told[1] and list(told[0]) == ["mine"] and (told[0]["mine"] or "").startswith("pos:\t0\n")
        assert f"ino:\t{os.stat(second).st_ino}\n" in (told[0]["mine"] or "")
        child.kill()
        child.wait()
        assert [reader.read() for reader in readers] == [{"child": None}] * 2
    finally:
        os.close(fd)
        child.kill()
        child.wait()
    assert [reader.read() for reader in readers] == [{"mine": None, "child": None}] * 2


def test_kept_texts_refuse_a_fifo_without_waiting(cffi_kept, tmp_path):
    os.mkfifo(tmp_path / "fifo")
    for reader in (cffi_kept(), PyKeptTexts()):
        reader.keep({0: str(tmp_path / "fifo")})
        assert reader.read() == {0: None} and reader.text(0) is None


@settings(max_examples=150)
@given(steps=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["write", "rename", "old"]),
                                st.one_of(st.none(), st.binary(max_size=12)), st.booleans()), min_size=1, max_size=16))
def test_any_writes_to_kept_texts_are_told_alike(cffi_kept, tmp_path_factory, steps):
    """Three files written with any bytes in place, renamed over or written through the file last renamed over (or
    deleted), read after some of these steps: both backends tell the same changes."""
    folder = tmp_path_factory.mktemp("kept")
    paths = {n: folder / str(n) for n in range(3)}
    olds: dict[int, int] = {}  # a descriptor of the file each path named before its last rename
    readers = [cffi_kept(), PyKeptTexts()]
    for reader in readers:
        reader.keep({n: str(path) for n, path in paths.items()})
    try:
        for n, how, data, read in steps:
            if data is None:
                paths[n].unlink(missing_ok=True)
            elif how == "write":
                paths[n].write_bytes(data)
            elif how == "rename":
                if n in olds:
                    os.close(olds.pop(n))
                if paths[n].exists():
                    olds[n] = os.open(paths[n], os.O_RDWR)
                _rename_over(paths[n], data)
            elif n in olds:
                os.ftruncate(olds[n], 0)
                os.pwrite(olds[n], data, 0)
            if not read:
                continue
            told = [reader.read() for reader in readers]
            assert told[0] == told[1]
            assert [readers[0].text(k) for k in paths] == [readers[1].text(k) for k in paths]
    finally:
        for fd in olds.values():
            os.close(fd)


def test_kept_texts_close_the_descriptors_of_members_gone(cffi_kept, tmp_path):
    """A member dropped, or left out of a new set, has its descriptor closed at once (not when collected)."""
    (tmp_path / "f").write_text("x")
    for reader in (cffi_kept(), PyKeptTexts()):
        before = len(os.listdir("/proc/self/fd"))
        reader.keep({n: str(tmp_path / "f") for n in range(4)})
        reader.read()
        assert len(os.listdir("/proc/self/fd")) == before + 4
        reader.drop(0)
        assert len(os.listdir("/proc/self/fd")) == before + 3
        reader.keep({3: str(tmp_path / "f"), 9: str(tmp_path / "f")})  # 3 kept on, 9 not read yet
        assert len(os.listdir("/proc/self/fd")) == before + 1
        reader.keep({})
        assert len(os.listdir("/proc/self/fd")) == before


def test_an_extension_built_before_the_kept_texts_serves_the_rest(cffi_kept, monkeypatch):
    """Without si_attr_read in the extension: auto takes the Python kept texts, require refuses, and the integer
    and text readers stay in C."""
    from tracklab_sysmon import hotpath
    from tracklab_sysmon.collectors import sysfs_ints_cffi

    monkeypatch.setattr(sysfs_ints_cffi, "_UNREADABLE", None)
    assert sysfs_ints.select_kept_texts("auto") == (PyKeptTexts, "python")
    with pytest.raises(hotpath.BackendUnavailable):
        sysfs_ints.select_kept_texts("require")
    assert sysfs_ints.select_files("auto")[1] == "cffi"
    monkeypatch.undo()
    assert sysfs_ints.select_kept_texts("require") == (cffi_kept, "cffi")
