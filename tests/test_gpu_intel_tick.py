"""The Intel collector's work between fd walks: records reused while nothing they come from changed, and the same
answers as when every client is parsed and every sample built afresh."""

from __future__ import annotations

import pathlib
import shutil

from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gpu_intel import as_wire, collector, set_value, tree

from tracklab_sysmon.collectors.drm_clients import ClientWalk
from tracklab_sysmon.collectors.intel_cards import discover
from tracklab_sysmon.collectors.intel_engines import EngineMeter


def test_a_tick_where_nothing_moved_returns_last_ticks_samples(tmp_path):
    """Same files, same clients, same power: the very same records; one card's energy moving rebuilds that card's."""
    root = tree(tmp_path, "intel-xe")
    gpus = collector(root)
    gpus.collect(0.0)
    first = gpus.collect(1.0)
    again = gpus.collect(2.0)
    assert again[0] is first[0] and again[1] == first[1]  # card1 sleeps: its record is built again, the same
    (root / "sys/class/drm/card0/device/hwmon/hwmon2/energy1_input").write_text("62000000\n")  # +10 J in 1 s
    moved = gpus.collect(3.0)
    assert moved[0] is not first[0] and as_wire(moved)[0]["power"] == 10.0 and as_wire(moved)[0]["energy"] == 62.0
    assert gpus.collect(4.0)[0] is not moved[0]  # the power fell to 0 W: built again
    assert as_wire(gpus.collect(4.0))[0]["power"] is None  # no interval (4 s again): the rate is unknown


def test_a_client_whose_text_repeats_keeps_its_record_and_a_changed_one_is_parsed(tmp_path):
    root = tree(tmp_path, "intel-xe")
    walk = ClientWalk(str(root / "proc"), 1e9)
    walk.read(0.0, lambda client: True)  # the walk
    first = {(pid, fd): client for pid, fd, client in walk.read(1.0, lambda client: True)}
    second = {(pid, fd): client for pid, fd, client in walk.read(2.0, lambda client: True)}
    assert sorted(first) == [(700, "10"), (700, "9"), (701, "5")]
    assert all(second[key] is first[key] for key in first)
    set_value(root / "proc/701/fdinfo/5", "drm-cycles-rcs", "1001000000")
    third = {(pid, fd): client for pid, fd, client in walk.read(3.0, lambda client: True)}
    assert third[(700, "9")] is first[(700, "9")] and third[(701, "5")] is not first[(701, "5")]
    assert [e.busy for e in third[(701, "5")].engines if e.name == "rcs"] == [1001000000]
    (root / "proc/701/fdinfo/5").unlink()  # closed: gone, and its last text with it
    assert sorted((pid, fd) for pid, fd, _ in walk.read(4.0, lambda client: True)) == [(700, "10"), (700, "9")]
    assert (701, "5") not in walk._parsed


class _NeverSeen(dict):
    """A ClientWalk's last texts that never match: every client parsed afresh, as before records were reused."""

    def get(self, key, default=None):
        return None


XE = FIXTURES / "intel-xe"
# Per tick, per client: its rcs and ccs cycles and the GPU clock (repeats and counters going back included).
TICKS = st.lists(st.lists(st.tuples(st.sampled_from([0, 10**9, 2 * 10**9, 5 * 10**8]),
                                    st.sampled_from([0, 10**9, 4 * 10**9]),
                                    st.sampled_from([10**10, 2 * 10**10, 3 * 10**10])), min_size=2, max_size=2),
                 min_size=2, max_size=8)


@settings(max_examples=40, deadline=None)
@given(ticks=TICKS)
def test_engine_shares_are_those_of_parsing_every_client_every_tick(tmp_path_factory, ticks):
    """Clients whose text repeats take the short way; the use per card is what the long way gives, tick by tick."""
    root = pathlib.Path(tmp_path_factory.mktemp("xe"))
    shutil.copytree(XE, root, dirs_exist_ok=True)
    cards = {card.bus_id: card for card in discover(str(root / "sys"))}
    reused, fresh = EngineMeter(str(root / "proc"), 1e9, None), EngineMeter(str(root / "proc"), 1e9, None)
    clients = (root / "proc/700/fdinfo/9", root / "proc/701/fdinfo/5")
    for n, tick in enumerate(ticks):
        for path, (rcs, ccs, clock) in zip(clients, tick, strict=True):
            set_value(path, "drm-cycles-rcs", str(rcs))
            set_value(path, "drm-cycles-ccs", str(ccs))
            set_value(path, "drm-total-cycles-rcs", str(clock))
            set_value(path, "drm-total-cycles-ccs", str(clock))
        shutil.copy(clients[0], root / "proc/700/fdinfo/10")
        fresh.walk._parsed = _NeverSeen()
        assert reused.read(float(n), cards) == fresh.read(float(n), cards)
