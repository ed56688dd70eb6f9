"""The DRM fd walk in C (native/drmfds.c) against its Python twin: the same (pid, fd) pairs, in the same order,
on every fixture tree and on generated trees of links, odd names and captured processes."""

from __future__ import annotations

import os
import pathlib

import pytest
from conftest import FIXTURES, native_module
from hypothesis import given
from hypothesis import strategies as st

from tracklab_sysmon._sysfs import KeptAttribute
from tracklab_sysmon.collectors import drm_clients
from tracklab_sysmon.collectors.drm_fdwalk import canonical, drm_fds

PROC_TREES = sorted(FIXTURES.glob("*/proc"))


@pytest.fixture(scope="module")
def walk():
    """A C walker; skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, where it was not built."""
    native_module()
    from tracklab_sysmon.collectors import drm_fdwalk_cffi

    return drm_fdwalk_cffi.CffiFdWalker(capacity=1)  # grown on the first walk that finds more: tested too


@pytest.fixture(scope="module")
def lib():
    native_module()
    from tracklab_sysmon._sysmon_cffi import ffi, lib

    return ffi, lib


def process(proc: pathlib.Path, name: str, links: dict[str, str] | None, fdinfo: tuple[str, ...] = ()) -> None:
    """A process folder: `links` as fd/ (None: no fd/ folder, as in a captured tree), `fdinfo` files by name."""
    base = proc / name
    (base / "fdinfo").mkdir(parents=True)
    for fd in fdinfo:
        (base / "fdinfo" / fd).write_text("pos:\t0\n")
    if links is not None:
        (base / "fd").mkdir()
        for fd, target in links.items():
            os.symlink(target, base / "fd" / fd)


def odd_tree(proc: pathlib.Path) -> None:
    """Every rule of the walk once: DRM and other targets, odd fd and process names, captured processes."""
    process(proc, "100", {"0": "/dev/null", "3": "/dev/dri/renderD128", "12": "/dev/dri/card0", "4": "socket:[9]",
                          "5": "/dev/dri", "6": "/dev/dri/", "7": "/dev/drix/card0", "007": "/dev/dri/card1",
                          "x": "/dev/dri/card1", "10": "/dev/dri/renderD129" + "/a" * 200})
    (proc / "100/fd/9").write_text("a regular file, not a link")
    process(proc, "25", {"2": "/dev/dri/renderD128"})  # sorted as text: after "100"
    process(proc, "30", None, fdinfo=("5", "11", "sock"))  # captured: every fdinfo is a candidate
    process(proc, "31", None)  # captured, no fdinfo files at all
    (proc / "32").mkdir()  # neither fd/ nor fdinfo/
    process(proc, "0040", {"3": "/dev/dri/card0"})  # leading zero: not a process name
    process(proc, "\u0661\u0662", {"3": "/dev/dri/card0"})  # Arabic-Indic digits: isdigit(), but not ASCII
    process(proc, "self", {"3": "/dev/dri/card0"})
    (proc / "33").write_text("a file where a process folder would be")
    os.mkfifo(proc / "34")  # must not hang the walk
    process(proc, "35", {})
    os.mkfifo(proc / "35/fd/3")  # a FIFO in fd/: not a link, skipped without opening it


ODD_TREE_PAIRS = [(100, "3"), (100, "6"), (100, "10"), (100, "12"), (25, "2"),
                  (30, "11"), (30, "5"), (30, "sock")]


def test_the_python_walk_finds_exactly_the_dri_links_of_the_odd_tree(tmp_path):
    """/dev/dri/ links by canonical fd names, processes by canonical pid names, captured fdinfo as candidates."""
    odd_tree(tmp_path)
    assert drm_fds(str(tmp_path)) == ODD_TREE_PAIRS


def test_the_c_walk_finds_what_python_finds_in_the_odd_tree(walk, tmp_path):
    """The same pairs, in the same order, with a pair buffer grown from one pair."""
    odd_tree(tmp_path)
    assert walk(str(tmp_path)) == drm_fds(str(tmp_path)) == ODD_TREE_PAIRS


@pytest.mark.parametrize("root", PROC_TREES, ids=lambda p: p.parent.name)
def test_every_fixture_tree_walks_the_same_in_c_and_python(walk, root):
    """Captured trees (fdinfo without fd/ links) give every fdinfo of every process, in both."""
    assert walk(str(root)) == drm_fds(str(root))


def test_a_generated_host_of_3000_fds_walks_the_same(walk, tmp_path):
    """300 processes x 10 fds, every 37th a DRM device: the C walk grows its buffer and agrees pair by pair."""
    for p in range(300):
        process(tmp_path, str(1000 + p), {str(fd): "/dev/dri/renderD128" if (p * 10 + fd) % 37 == 0
                                          else f"socket:[{p * 10 + fd}]" for fd in range(10)})
    found = drm_fds(str(tmp_path))
    assert len(found) == len([n for n in range(3000) if n % 37 == 0]) == 82
    assert walk(str(tmp_path)) == found


def test_a_missing_root_walks_to_nothing(walk, tmp_path):
    assert walk(str(tmp_path / "absent")) == drm_fds(str(tmp_path / "absent")) == []


@given(st.text(max_size=24) | st.from_regex(r"\A0*[0-9]{1,20}\Z"))
def test_c_and_python_agree_on_which_names_are_canonical(lib, name):
    """ASCII digits, no leading zero, at most 18 of them; the value is the name's."""
    ffi, c = lib
    data = name.encode("utf-8", "surrogatepass")
    value = ffi.new("int64_t *")
    assert bool(c.df_canonical(data, len(data), value)) == canonical(name)
    if canonical(name):
        assert value[0] == int(name)


def test_the_walk_backend_follows_the_native_setting(walk):
    """off: the Python twin; require: the C walk (built here)."""
    assert drm_clients.select_fd_walker("off")[1] == "python"
    assert drm_clients.select_fd_walker("require")[1] == "cffi"


# ---------------------------------------------------------------- fdinfo read through kept descriptors (ClientWalk)


def test_a_kept_fdinfo_of_a_live_process_reads_its_fd_until_it_is_closed(tmp_path):
    """On a live /proc the kept descriptor follows the fd: its position now, then None once the fd is closed."""
    fd = os.open(tmp_path / "file", os.O_RDWR | os.O_CREAT)
    kept = KeptAttribute(f"/proc/{os.getpid()}/fdinfo/{fd}")
    try:
        assert (kept.read() or "").startswith("pos:\t0\n")
        os.write(fd, b"abc")
        assert (kept.read() or "").startswith("pos:\t3\n")
    finally:
        os.close(fd)
    assert kept.read() is None


def test_a_kept_fdinfo_of_a_captured_tree_follows_rewrites_renames_and_deletion(tmp_path):
    """Rewritten in place or renamed over: the new text; deleted: None (the client is gone)."""
    path = tmp_path / "9"
    path.write_text("one")
    kept = KeptAttribute(str(path))
    assert kept.read() == "one"
    path.write_text("two")
    assert kept.read() == "two"
    (tmp_path / "new").write_text("three")
    os.replace(tmp_path / "new", path)
    assert kept.read() == "three"
    path.unlink()
    assert kept.read() is None
