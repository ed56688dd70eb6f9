"""Walks after opens of DRM nodes: real inotify IN_OPEN watches on plain files standing in for /dev/dri nodes
(tmpfs and ext4 report opens of files as devtmpfs does of device nodes), through an injected dev_root."""

from __future__ import annotations

import os
import pathlib
import shutil
import sys
from collections.abc import Callable

import pytest
from conftest import FIXTURES

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.drm_clients import BURST_SECONDS, FD_WALK_SECONDS, ClientWalk
from tracklab_sysmon.collectors.drm_fdwalk import drm_fds
from tracklab_sysmon.collectors.drm_opens import DrmOpens
from tracklab_sysmon.collectors.energy_sources import energy_collectors
from tracklab_sysmon.collectors.gpu_procs import GpuProcessReader
from tracklab_sysmon.collectors.intel import IntelCollector

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
MIB = 1024 * 1024


def tree(tmp_path: pathlib.Path, name: str = "intel-xe",
         nodes: tuple[str, ...] = ("card0", "renderD128")) -> pathlib.Path:
    """A fixture's sys/ and proc/ with dev/dri/<nodes> beside them."""
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root, symlinks=True)
    (root / "dev/dri/by-path").mkdir(parents=True)
    for node in nodes:
        (root / "dev/dri" / node).write_bytes(b"")
    return root


def open_node(path: pathlib.Path) -> None:
    """What a process does to become a DRM client."""
    os.close(os.open(path, os.O_RDONLY))


def card_memory(root: pathlib.Path) -> Callable[[float], int]:
    """The Intel collector watching the tree's dev/dri, without timed walks: card 0's used memory at a tick."""
    gpus = IntelCollector(str(root / "sys"), str(root / "proc"), walk_share=None, dev_root=str(root / "dev"))
    return lambda now: wire.accelerator_to_wire(gpus.collect(now)[0])["memory"]["used"]


def new_client(root: pathlib.Path) -> None:
    """Process 702: a copy of 701's 256 MiB client under another client id (no open of a node)."""
    shutil.copytree(root / "proc/701", root / "proc/702")
    info = root / "proc/702/fdinfo/5"
    info.write_text(info.read_text().replace("drm-client-id:\t12", "drm-client-id:\t13"))


def pids(found: list) -> set[int]:
    return {pid for pid, _, _ in found}


class Cpu:
    """A thread CPU clock that every walk advances by `cost` seconds (read before and after it)."""

    def __init__(self, cost: float) -> None:
        self.cost, self.now, self._reads = cost, 0.0, 0

    def __call__(self) -> float:
        self._reads += 1
        if self._reads % 2 == 0:
            self.now += self.cost
        return self.now


# ---------------------------------------------------------------- the watches


def test_an_open_is_told_once_and_every_pending_event_drained(tmp_path):
    """One call tells the opens since the last; 300 events (more than one read's 4 KiB) leave nothing behind."""
    dri = tree(tmp_path) / "dev/dri"
    opens = DrmOpens(str(dri.parent))
    assert opens.watch() is True and opens.watching
    assert opens.opened() is False
    open_node(dri / "renderD128")
    assert opens.opened() is True
    assert opens.opened() is False
    for n in range(300):  # alternating nodes: inotify merges only an event like the one queued before it
        open_node(dri / ("card0" if n % 2 else "renderD128"))
    assert opens.opened() is True
    assert opens.opened() is False
    (dri / "by-path/pci-0000:03:00.0-render").write_bytes(b"")
    open_node(dri / "by-path/pci-0000:03:00.0-render")  # not a node name: not watched
    assert opens.opened() is False
    assert opens.watch() is False  # the same nodes again: nothing new to look for


def test_no_dri_folder_or_a_node_that_cannot_be_watched_watches_nothing(tmp_path):
    """All or none: without dev/dri, or with a node whose watch fails (a dangling link), nothing is watched."""
    assert DrmOpens(str(tmp_path / "nodev")).watch() is False
    dri = tree(tmp_path) / "dev/dri"
    (dri / "renderD129").symlink_to(tmp_path / "gone")
    opens = DrmOpens(str(dri.parent))
    assert opens.watch() is False and not opens.watching
    open_node(dri / "renderD128")
    assert opens.opened() is False  # renderD128's watch, added before renderD129 failed, is dropped with it


def test_a_deleted_node_drops_the_watches_until_watched_again(tmp_path):
    """A node deleted (its watch IGNORED) is told as an open and stops the watching; watch() picks up the node
    made again at its path (another inode) and says it is new."""
    dri = tree(tmp_path) / "dev/dri"
    opens = DrmOpens(str(dri.parent))
    opens.watch()
    (dri / "renderD128").unlink()
    assert opens.opened() is True and not opens.watching
    (dri / "renderD128").write_bytes(b"")
    assert opens.watch() is True and opens.watching
    open_node(dri / "renderD128")
    assert opens.opened() is True


def test_sees_tells_fds_on_watched_nodes_from_others(tmp_path):
    """A link followed to a watched node is seen; to another file (a container's own node) not; a link that
    cannot be followed cannot be told and counts as seen."""
    root = tree(tmp_path)
    opens = DrmOpens(str(root / "dev"))
    opens.watch()
    (root / "other").write_bytes(b"")
    for name, target in (("on", root / "dev/dri/renderD128"), ("off", root / "other"), ("dead", root / "gone")):
        (root / name).symlink_to(target)
    assert [opens.sees(str(root / name)) for name in ("on", "off", "dead")] == [True, False, True]


# ---------------------------------------------------------------- when the walk comes


def test_the_tick_after_an_open_walks_and_no_walk_comes_without_one(tmp_path):
    """Watched: a client made without an open (inherited) waits for the timed walk; an open walks on the next
    tick, and only that tick."""
    root = tree(tmp_path)
    walk = ClientWalk(str(root / "proc"), FD_WALK_SECONDS, dev_root=str(root / "dev"))
    assert pids(walk.read(0.0, lambda c: True)) == {700, 701} and walk.walks == 1 and walk.watching
    new_client(root)
    assert pids(walk.read(1.0, lambda c: True)) == {700, 701} and walk.walks == 1
    open_node(root / "dev/dri/renderD128")
    assert pids(walk.read(2.0, lambda c: True)) == {700, 701, 702} and walk.walks == 2
    assert [len(walk.read(float(t), lambda c: True)) for t in range(3, 12)] == [4] * 9
    assert walk.walks == 2  # 3..11: no open, and the timed walk is 10 s after the last
    walk.read(12.0, lambda c: True)
    assert walk.walks == 3


def inherit_client(root: pathlib.Path) -> None:
    """Process 702: a forked child of 701 holding the same client (same drm-client-id), made without an open."""
    shutil.copytree(root / "proc/701", root / "proc/702")


def test_a_client_that_lives_on_in_an_inherited_fd_is_found_the_tick_after_its_holder_exits(tmp_path):
    """701 forks 702 (no open: no event) and exits: its kept fd fails, and the next tick walks and finds the
    client in 702, instead of waiting for the timed walk 10 s later."""
    root = tree(tmp_path)
    walk = ClientWalk(str(root / "proc"), FD_WALK_SECONDS, dev_root=str(root / "dev"))
    assert pids(walk.read(0.0, lambda c: True)) == {700, 701} and walk.walks == 1
    inherit_client(root)
    assert pids(walk.read(1.0, lambda c: True)) == {700, 701} and walk.walks == 1  # 701 still holds it
    shutil.rmtree(root / "proc/701")
    assert pids(walk.read(2.0, lambda c: True)) == {700} and walk.walks == 1  # lost this tick
    assert pids(walk.read(3.0, lambda c: True)) == {700, 702} and walk.walks == 2
    assert [pids(walk.read(float(t), lambda c: True)) for t in (4.0, 5.0)] == [{700, 702}] * 2
    assert walk.walks == 2  # nothing lost since: no walk


def test_the_intel_collector_keeps_a_client_whose_first_holder_exited(tmp_path):
    """The card's 768 MiB: one tick without 701's 256 MiB client, then the same client counted through 702."""
    root = tree(tmp_path)
    used = card_memory(root)
    assert used(0.0) == 768 * MIB
    inherit_client(root)
    shutil.rmtree(root / "proc/701")
    assert [used(now) for now in (1.0, 2.0, 3.0)] == [512 * MIB, 768 * MIB, 768 * MIB]


def test_without_a_dri_folder_walks_are_timed_as_before(tmp_path):
    """No node to watch: an open of anything changes nothing, the new client waits for the 10 s walk."""
    root = tree(tmp_path, nodes=())
    walk = ClientWalk(str(root / "proc"), FD_WALK_SECONDS, dev_root=str(root / "dev"))
    walk.read(0.0, lambda c: True)
    assert not walk.watching
    new_client(root)
    (root / "dev/dri/renderD128").write_bytes(b"")
    open_node(root / "dev/dri/renderD128")  # made after the walk: not watched until a rescan
    assert pids(walk.read(9.0, lambda c: True)) == {700, 701} and walk.walks == 1
    assert pids(walk.read(10.0, lambda c: True)) == {700, 701, 702} and walk.walks == 2
    assert walk.watching  # the timed walk watched the node made since


def test_a_rescan_watches_again_and_walks_for_a_node_new_to_the_watches(tmp_path):
    """A deleted node falls back to timed walks; the card rescan's watch() finds the node made again, walks on
    the next tick (opens before the watch were not told), and opens are told again."""
    root = tree(tmp_path)
    walk = ClientWalk(str(root / "proc"), FD_WALK_SECONDS, dev_root=str(root / "dev"))
    walk.read(0.0, lambda c: True)
    (root / "dev/dri/renderD128").unlink()
    walk.read(1.0, lambda c: True)  # told as an open: walks, and stops watching
    assert walk.walks == 2 and not walk.watching
    (root / "dev/dri/renderD128").write_bytes(b"")
    walk.read(2.0, lambda c: True)
    assert walk.walks == 2  # timed alone now: 10 s after the last walk
    walk.watch()
    assert walk.watching
    walk.read(3.0, lambda c: True)
    walk.read(4.0, lambda c: True)
    assert walk.walks == 3
    open_node(root / "dev/dri/renderD128")
    walk.read(5.0, lambda c: True)
    assert walk.walks == 4


def test_timed_walks_take_the_safety_share_while_watched(tmp_path):
    """A 2 ms walk: 20 s to the next timed walk at the 0.01 % safety share while watched; 10 s (2 ms / 0.04 % =
    5 s, the floor) without watches."""
    watched, bare = tree(tmp_path / "a"), tree(tmp_path / "b", nodes=())
    periods = []
    for root in (watched, bare):
        walk = ClientWalk(str(root / "proc"), FD_WALK_SECONDS, walk_share=0.0004, safety_share=0.0001,
                          dev_root=str(root / "dev"), cpu_clock=Cpu(0.002))
        walk.read(0.0, lambda c: True)
        periods.append(walk.period)
    assert periods == [20.0, FD_WALK_SECONDS]


def test_walks_after_opens_spend_a_budget_earned_at_the_walk_share(tmp_path):
    """0.25 s walks at a 0.1 % share: the 0.6 s saved (600 s x 0.1 %) pays the start and two walks after opens;
    the third open waits until the budget is back above zero (148 s later), then walks without another open."""
    assert BURST_SECONDS == 600.0
    root = tree(tmp_path)
    walk = ClientWalk(str(root / "proc"), FD_WALK_SECONDS, walk_share=0.001, dev_root=str(root / "dev"),
                      cpu_clock=Cpu(0.25))
    walk.read(0.0, lambda c: True)  # 0.6 - 0.25 = 0.35
    assert walk.period == 250.0  # timed walks: 0.25 s at the 0.1 % share (no safety share given)
    for now in (1.0, 2.0, 3.0):  # 0.351 - 0.25 = 0.101; 0.102 - 0.25 = -0.148; no walk
        open_node(root / "dev/dri/renderD128")
        walk.read(now, lambda c: True)
    assert walk.walks == 3
    walk.read(149.0, lambda c: True)  # -0.148 + 0.147 < 0
    assert walk.walks == 3
    walk.read(151.0, lambda c: True)  # -0.148 + 0.149 > 0: the open at 3 s is walked for
    assert walk.walks == 4


def test_a_client_on_a_node_not_watched_returns_timed_walks_to_the_walk_share(tmp_path):
    """A walk that finds a client whose fd is on another node than those watched (a container's /dev) cannot
    count on opens: timed walks go back to the walk share (2 ms / 0.04 %: the 10 s floor, not 20 s)."""
    root = tree(tmp_path)
    (root / "other").write_bytes(b"")
    (root / "proc/701/fd").mkdir()
    (root / "proc/701/fd/5").symlink_to(root / "other")
    walker = lambda proc_root: [(700, "9"), (701, "5")]  # noqa: E731 - the fd links lead elsewhere than /dev/dri
    walk = ClientWalk(str(root / "proc"), FD_WALK_SECONDS, walk_share=0.0004, safety_share=0.0001,
                      dev_root=str(root / "dev"), cpu_clock=Cpu(0.002), fd_walker=walker)
    assert pids(walk.read(0.0, lambda c: True)) == {700, 701}
    assert not walk.watching and walk.period == FD_WALK_SECONDS
    (root / "proc/701/fd/5").unlink()
    (root / "proc/701/fd/5").symlink_to(root / "dev/dri/renderD128")
    open_node(root / "dev/dri/card0")  # opens still walk
    walk.read(1.0, lambda c: True)
    assert walk.watching and walk.period == 20.0


def test_a_counted_walker_is_called_once_per_walk(tmp_path):
    """The injected walker sees exactly the walks: start, the open, nothing else for 9 ticks."""
    root = tree(tmp_path)
    calls = []

    def walker(proc_root: str) -> list[tuple[int, str]]:
        calls.append(proc_root)
        return drm_fds(proc_root)

    walk = ClientWalk(str(root / "proc"), FD_WALK_SECONDS, dev_root=str(root / "dev"), fd_walker=walker)
    for now in range(10):
        if now == 4:
            open_node(root / "dev/dri/card0")
        walk.read(float(now), lambda c: True)
    assert len(calls) == 2 == walk.walks


# ---------------------------------------------------------------- through the collectors


def test_the_intel_collector_counts_a_new_client_the_tick_after_its_open(tmp_path):
    """768 MiB on the card; 702's 256 MiB client shows up the tick after a node is opened, not before."""
    root = tree(tmp_path)
    used = card_memory(root)
    assert used(0.0) == 768 * MIB
    new_client(root)
    assert used(1.0) == 768 * MIB
    open_node(root / "dev/dri/renderD128")
    assert used(2.0) == 1024 * MIB


def test_a_card_found_again_watches_its_node_made_again_at_once(tmp_path):
    """A card unbound (its node deleted) and bound again (a new node): the rescan that finds it watches the node,
    so an open one tick later walks (not the timed walk 10 s after the last)."""
    root = tree(tmp_path)
    gpus = IntelCollector(str(root / "sys"), str(root / "proc"), walk_share=None, dev_root=str(root / "dev"))
    used = lambda now: wire.accelerator_to_wire(gpus.collect(now)[0])["memory"]["used"]  # noqa: E731
    assert used(0.0) == 768 * MIB
    (root / "sys/class/drm/card0").rename(root / "unbound")
    (root / "dev/dri/renderD128").unlink()
    with pytest.raises(OSError, match=r"card0 .* is gone"):
        gpus.collect(1.0)
    (root / "unbound").rename(root / "sys/class/drm/card0")
    (root / "dev/dri/renderD128").write_bytes(b"")
    assert used(2.0) == 768 * MIB
    new_client(root)
    open_node(root / "dev/dri/renderD128")
    assert used(3.0) == 1024 * MIB


def test_the_process_list_finds_a_new_client_the_call_after_its_open(tmp_path):
    """The DRM reader behind the process list watches the nodes when it scans the cards."""
    root = tree(tmp_path, "drm-fdinfo-xe")
    clock = [0.0]
    reader = GpuProcessReader(str(root / "proc"), str(root / "sys"), nvidia=False, clock=lambda: clock[0],
                              dev_root=str(root / "dev"))
    assert list(reader.gpu_usage_by_pid()) == [700]
    shutil.copytree(root / "proc/700", root / "proc/702")
    clock[0] = 1.0
    assert list(reader.gpu_usage_by_pid()) == [700]
    open_node(root / "dev/dri/renderD128")
    clock[0] = 2.0
    assert list(reader.gpu_usage_by_pid()) == [700, 702]


def test_a_captured_tree_watches_no_node(tmp_path):
    """The service watches the host's /dev only when it reads the host's /proc."""
    root = tree(tmp_path)
    (intel, *_) = energy_collectors(str(root / "proc"), str(root / "sys"), host=False)
    assert isinstance(intel, IntelCollector) and intel._meter.walk._opens is None
