"""The Intel collector's work between fd walks: records reused while nothing they come from changed, and the same
answers as when every client is parsed and every sample built afresh."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest
from conftest import FIXTURES, native_module
from hypothesis import given, settings
from hypothesis import strategies as st
from test_gpu_intel import as_wire, collector, set_value, tree

from tracklab_sysmon.collectors import intel, sysfs_ints
from tracklab_sysmon.collectors.drm_clients import ClientWalk
from tracklab_sysmon.collectors.drm_fdinfo import DrmClient, EngineTime, busy_percent
from tracklab_sysmon.collectors.intel_cards import discover
from tracklab_sysmon.collectors.intel_engines import EngineMeter, _advance


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


# ---------------------------------------------------------------- kept clients: gone, replaced, changed


@pytest.fixture(params=["python", "cffi"])
def kept_texts(request):
    """Each backend of the walk's kept fdinfo texts in turn (C: skip locally where not built, fail under require)."""
    if request.param == "cffi":
        native_module()
    return sysfs_ints.select_kept_texts("off" if request.param == "python" else "require")[0]


def _walk(root: pathlib.Path, kept_texts, **options) -> ClientWalk:
    walk = ClientWalk(str(root / "proc"), 1e9, **options)
    walk._texts = kept_texts()
    return walk


def _every(client: DrmClient) -> bool:
    return True


def _keys(found) -> list[tuple[int, str]]:
    return sorted((pid, fd) for pid, fd, _ in found)


XE_KEYS = [(700, "10"), (700, "9"), (701, "5")]


def test_a_client_whose_process_exits_is_gone_at_once_and_walked_for(tmp_path, kept_texts):
    root = tree(tmp_path, "intel-xe")
    walk = _walk(root, kept_texts)
    walk.read(0.0, _every)  # the walk
    assert _keys(walk.read(1.0, _every)) == XE_KEYS
    shutil.rmtree(root / "proc/701")
    assert _keys(walk.read(2.0, _every)) == XE_KEYS[:2] and walk.walks == 1
    assert (701, "5") not in walk._parsed and (701, "5") not in walk._texts.members()
    assert _keys(walk.read(3.0, _every)) == XE_KEYS[:2] and walk.walks == 2  # it may live on in a child: walked


def test_a_client_whose_fd_now_names_another_file_is_gone_or_is_the_other_client(tmp_path, kept_texts):
    """The fd renamed over by a socket's fdinfo: gone, and a walk follows; by another DRM client's: that client,
    at once and without a walk."""
    root = tree(tmp_path, "intel-xe")
    walk = _walk(root, kept_texts)
    walk.read(0.0, _every)
    before = dict(((pid, fd), client) for pid, fd, client in walk.read(1.0, _every))
    replacement = root / "proc/700/fdinfo/new"
    replacement.write_text((root / "proc/701/fdinfo/5").read_text().replace("drm-client-id:\t12", "drm-client-id:\t99"))
    os.rename(replacement, root / "proc/700/fdinfo/10")
    now = dict(((pid, fd), client) for pid, fd, client in walk.read(2.0, _every))
    assert sorted(now) == XE_KEYS and walk.walks == 1
    assert now[(700, "10")].client_id == 99 and now[(700, "9")] is before[(700, "9")]
    replacement.write_text("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t4242\n")  # a socket's
    os.rename(replacement, root / "proc/701/fdinfo/5")
    assert _keys(walk.read(3.0, _every)) == XE_KEYS[:2] and walk.walks == 1
    assert (701, "5") not in walk._parsed and (701, "5") not in walk._texts.members()
    assert _keys(walk.read(4.0, _every)) == XE_KEYS[:2] and walk.walks == 2  # the walk does not find it either


def test_a_client_whose_text_changes_is_parsed_again_and_its_new_record_kept(tmp_path, kept_texts):
    root = tree(tmp_path, "intel-xe")
    walk = _walk(root, kept_texts)
    walk.read(0.0, _every)
    first = {(pid, fd): client for pid, fd, client in walk.read(1.0, _every)}
    set_value(root / "proc/701/fdinfo/5", "drm-cycles-rcs", "1001000000")
    changed = {(pid, fd): client for pid, fd, client in walk.read(2.0, _every)}
    assert [e.busy for e in changed[(701, "5")].engines if e.name == "rcs"] == [1001000000]
    assert changed[(700, "9")] is first[(700, "9")] and changed[(701, "5")] is not first[(701, "5")]
    again = {(pid, fd): client for pid, fd, client in walk.read(3.0, _every)}
    assert all(again[key] is changed[key] for key in XE_KEYS)  # the same text: the same records
    set_value(root / "proc/701/fdinfo/5", "drm-cycles-rcs", "1000000")  # the fixture's value again
    back = {(pid, fd): client for pid, fd, client in walk.read(4.0, _every)}
    assert back[(701, "5")] == first[(701, "5")] and back[(701, "5")] is not changed[(701, "5")]
    assert walk.walks == 1


def test_a_client_no_longer_wanted_is_dropped_though_its_text_is_the_same(tmp_path, kept_texts):
    """A predicate that passed a record is not asked again of it; another predicate is."""
    root = tree(tmp_path, "intel-xe")
    walk = _walk(root, kept_texts)
    calls: list[int] = []

    def counted(client: DrmClient) -> bool:
        calls.append(client.client_id)
        return True

    walk.read(0.0, counted)
    walk.read(1.0, counted)
    calls.clear()
    assert _keys(walk.read(2.0, counted)) == XE_KEYS and calls == []
    assert _keys(walk.read(3.0, lambda client: client.client_id == 11)) == XE_KEYS[:2] and walk.walks == 1


def test_a_live_client_is_gone_when_its_process_exits(kept_texts):
    """On this host's /proc: a child's fd (its stdin, taken for a DRM client) is read until the child exits."""
    child = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        walk = ClientWalk("/proc", 1e9, fd_walker=lambda _: [(child.pid, "0")] if child.poll() is None else [])
        walk._texts = kept_texts()
        walk._parse = lambda text: DrmClient("xe", "0000:03:00.0", 1, (), ()) if text.startswith("pos:") else None
        assert _keys(walk.read(0.0, _every)) == [(child.pid, "0")]
        assert _keys(walk.read(1.0, _every)) == [(child.pid, "0")] and walk.walks == 1
        child.kill()
        child.wait()
        assert walk.read(2.0, _every) == [] and walk.walks == 1
        assert walk.read(3.0, _every) == [] and walk.walks == 2
    finally:
        child.kill()
        child.wait()


# ---------------------------------------------------------------- a settled meter


def test_uses_after_settled_ticks_follow_the_next_change(tmp_path):
    """Ticks where no client moved give last tick's very list once the one before had moved nothing either; the
    next change is measured, and the tick after it (the same text again) is 0 % again."""
    root = tree(tmp_path, "intel-xe")
    cards = {card.bus_id: card for card in discover(str(root / "sys"))}
    meter = EngineMeter(str(root / "proc"), 1e9, None)
    client = root / "proc/700/fdinfo/9"
    ticks = [(0, 10**10)] * 4 + [(5 * 10**8, 2 * 10**10)] * 3 + [(10**9, 3 * 10**10)]
    renders, uses = [], []
    for n, (rcs, clock) in enumerate(ticks):
        set_value(client, "drm-cycles-rcs", str(rcs))
        set_value(client, "drm-total-cycles-rcs", str(clock))
        shutil.copy(client, root / "proc/700/fdinfo/10")  # the same client through another fd
        uses.append(meter.read(float(n), cards))
        renders.append(dict(uses[-1][0].engines)["render"])
    assert renders == [None, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 5.0]
    assert uses[3] is uses[2] and uses[6] is uses[5]  # settled: the very list
    assert uses[2] is not uses[1] and uses[5] is not uses[4]
    assert uses[1][1] is uses[2][1]  # the sleeping card's use is built once


def test_a_status_that_changes_alone_rebuilds_its_cards_sample(tmp_path):
    """Files, clients and power as last tick, the runtime status not: the card's sample says the new status."""
    root = tree(tmp_path, "intel-xe")
    gpus = collector(root)
    gpus.collect(0.0)
    first = gpus.collect(1.0)
    assert gpus.collect(2.0) is first  # nothing moved: last tick's samples
    (root / "sys/class/drm/card0/device/power/runtime_status").write_text("resuming\n")
    moved = gpus.collect(3.0)
    assert moved[0].details.runtime_status == "resuming" and first[0].details.runtime_status == "active"
    assert moved[0].details.readings == first[0].details.readings and moved[1] == first[1]


# Per step: card0's energy (µJ), GPU clock (MHz), first temperature (m°C; "x" cannot be read) and status, card1's
# status, what client 11's rcs cycles and GPU clock add (the cycles may also go back to 0), the seconds to its first
# tick (0: no interval), and the ticks it lasts (1 s apart, the files as they are: settled ticks).
CARD_TICKS = st.lists(st.tuples(st.sampled_from([52000000, 53000000]), st.sampled_from([2850, 1200]),
                                st.sampled_from(["58000", "61500", "x"]), st.sampled_from(["active", "resuming"]),
                                st.sampled_from(["suspended", "active"]),
                                st.sampled_from([0, 5 * 10**8, 5 * 10**8, -1]), st.sampled_from([0, 10**10, 10**10]),
                                st.sampled_from([0.0, 1.0, 1.0]), st.integers(1, 3)),
                      min_size=2, max_size=8)


def _forget(gpus) -> None:
    """Every record the collector keeps to reuse, forgotten (its power rates stay: they are state, not reuse)."""
    for kept in gpus._kept:
        kept.last = kept.temp_values = kept.memory = kept.engines = kept.sleeping = None
    meter = gpus._meter
    if hasattr(meter, "_inputs"):  # the Python meter's last tick
        meter._inputs = None
    else:  # the C meter's last use of each card
        meter._last = [None] * len(meter._last)
    gpus._samples, meter.walk._parsed = (), _NeverSeen()
    intel._FREQUENCIES.clear()


@settings(max_examples=40, deadline=None)
@given(ticks=CARD_TICKS)
def test_samples_are_those_built_afresh_every_tick(tmp_path_factory, ticks):
    """Whatever moves from tick to tick (energy, clock, temperature, statuses, a client's cycles, the interval), the
    samples equal those of a collector that reuses no record: no walk text, no card's last records, no last tick's
    uses or samples, no kept clock record."""
    root = pathlib.Path(tmp_path_factory.mktemp("xe"))
    shutil.copytree(XE, root, dirs_exist_ok=True)
    reused, fresh = collector(root), collector(root)
    device = root / "sys/class/drm"
    client = root / "proc/700/fdinfo/9"
    now, rcs, clock = 0.0, 0, 10**10
    for energy, mhz, temp, status0, status1, busy, elapsed, step, lasting in ticks:
        rcs, clock = (rcs + busy if busy >= 0 else 0), clock + elapsed
        (device / "card0/device/hwmon/hwmon2/energy1_input").write_text(f"{energy}\n")
        (device / "card0/device/tile0/gt0/freq0/act_freq").write_text(f"{mhz}\n")
        (device / "card0/device/hwmon/hwmon2/temp2_input").write_text(f"{temp}\n")
        (device / "card0/device/power/runtime_status").write_text(f"{status0}\n")
        (device / "card1/device/power/runtime_status").write_text(f"{status1}\n")
        set_value(client, "drm-cycles-rcs", str(rcs))
        set_value(client, "drm-total-cycles-rcs", str(clock))
        shutil.copy(client, root / "proc/700/fdinfo/10")
        for n in range(lasting):
            now += step if n == 0 else 1.0
            got = reused.collect(now)
            if fresh._cards:
                _forget(fresh)
            assert got == fresh.collect(now)


def test_advance_adds_the_shares_busy_percent_gives_and_keeps_the_larger_times():
    """One loop for shares and kept times: the values busy_percent and the kept-larger rule give, pair by pair."""
    before = {"render": EngineTime("rcs", 100, 1000), "copy": EngineTime("bcs", 50, 1000),
              "video": EngineTime("vcs", 10, None, 2), "compute": EngineTime("ccs", 5, 1000, 4),
              "video-enhance": EngineTime("vecs", 7, 500)}
    now = {"render": EngineTime("rcs", 600, 2000),  # 500 cycles of 1,000: 50 %
           "copy": EngineTime("bcs", 40, 2000),  # went back: last tick's kept, no share
           "video": EngineTime("vcs", 10 + 10**9, None, 2),  # 1 s of ns over 2 s x 2 engines: 25 %
           "compute": EngineTime("ccs", 105, 1000, 4),  # the clock did not move: no share
           "video-enhance": EngineTime("vecs", 7, 900)}  # idle: nothing added
    shares = {"render": 10.0}
    kept = _advance(shares, before, now, 2.0)
    assert shares == {"render": 60.0, "video": 25.0}
    assert kept == {"render": now["render"], "copy": before["copy"], "video": now["video"],
                    "compute": now["compute"], "video-enhance": now["video-enhance"]}
    assert list(kept) == list(now)
    assert busy_percent(before["render"], now["render"], 2.0) == 50.0  # the rule it stands for
    assert busy_percent(before["video"], now["video"], 2.0) == 25.0
    unmeasured: dict[str, float] = {}
    assert _advance(unmeasured, before, now, None) == kept and unmeasured == {}  # no interval: times only
    new = {"render": EngineTime("rcs", 1), "compute": EngineTime("ccs", 3, 10)}
    assert _advance(unmeasured, {}, new, 1.0) == new and unmeasured == {}  # no earlier value: no share
