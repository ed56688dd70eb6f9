"""Intel GPUs (i915, xe) from sysfs, hwmon and DRM fdinfo fixture trees through an injected sys_root/proc_root."""

from __future__ import annotations

import pathlib
import re
import shutil

import pytest
from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.drm_clients import FD_WALK_SECONDS, ClientWalk, discover_cards
from tracklab_sysmon.collectors.intel import RESCAN_SECONDS, IntelCollector
from tracklab_sysmon.collectors.intel_cards import discover, engine_class
from tracklab_sysmon.collectors.pci_ids import device_name, marketing_name
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.sampler import Sampler

PCI_IDS = str(FIXTURES / "intel-i915" / "pci.ids")
KIB, MIB = 1024, 1024 * 1024


def tree(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root, symlinks=True)
    return root


def set_value(path: pathlib.Path, key: str, value: str) -> None:
    """Rewrite one `key:\tvalue` line of an fdinfo file."""
    text, found = re.subn(rf"^{re.escape(key)}:.*$", f"{key}:\t{value}", path.read_text(), flags=re.MULTILINE)
    assert found == 1, key
    path.write_text(text)


def collector(root: pathlib.Path, **options: object) -> IntelCollector:
    """The collector on a copied tree; fd walks never stretched by their cost (a loaded machine must not matter),
    timed alone (opens of the test host's own DRM nodes must not matter either)."""
    return IntelCollector(str(root / "sys"), str(root / "proc"), pci_ids=PCI_IDS,
                          **{"walk_share": None, "dev_root": None, **options})  # type: ignore[arg-type]


def as_wire(samples: tuple) -> list[dict]:
    return [wire.accelerator_to_wire(a) for a in samples]


# ---------------------------------------------------------------- i915


def test_i915_cards_in_pci_order_with_names_clocks_and_hwmon_energy(tmp_path):
    """Both i915 cards, numbered by PCI address; the DG2's energy comes from the `i915` hwmon, not `i915_gt0`."""
    igpu, dg2 = as_wire(collector(tree(tmp_path, "intel-i915")).collect(0.0))
    assert (igpu["id"], igpu["name"], igpu["busId"], igpu["card"], igpu["driver"]) == (
        0, "Intel UHD Graphics 770", "0000:00:02.0", "card1", "i915")
    assert (dg2["id"], dg2["name"], dg2["busId"], dg2["card"]) == (1, "Intel Arc A770", "0000:03:00.0", "card0")
    assert igpu["frequency"] == {"actual": 1450.0, "max": 1550.0}  # gt/gt0/rps_*: no card-level gt_* files
    assert dg2["frequency"] == {"actual": 2100.0, "max": 2400.0}  # gt_act_freq_mhz, gt_max_freq_mhz
    assert dg2["energy"] == 1234.56789 and igpu["energy"] is None  # µJ -> J; the iGPU has no hwmon
    assert dg2["temperature"] is None and dg2["temperatures"] is None  # i915's hwmon has no temperature
    # No interval yet: every engine class is listed, none has a share; the seed's utilisation is null.
    assert dg2["engines"] == dict.fromkeys(("render", "copy", "video", "videoEnhance", "compute"))
    assert igpu["engines"] == dict.fromkeys(("render", "copy", "video", "videoEnhance"))
    assert igpu["utilization"] is None and dg2["power"] is None
    # The DG2's local memory held by client 9, once although pids 501 and 502 both hold it; the iGPU has none.
    assert dg2["memory"] == {"used": 131072 * KIB, "total": None, "percentage": None}
    assert igpu["memory"] == {"used": None, "total": None, "percentage": None}
    assert (dg2["vendor"], dg2["type"], dg2["uuid"], dg2["fanSpeed"]) == ("intel", "gpu", None, None)


def test_i915_engine_shares_power_and_busiest_class_after_two_seconds(tmp_path):
    """Engine ns over the wall interval per class (video over its 2 engines); power is the hwmon energy's rate."""
    root = tree(tmp_path, "intel-i915")
    gpus = collector(root)
    gpus.collect(10.0)
    set_value(root / "proc/500/fdinfo/8", "drm-engine-render", "10788864723 ns")  # +1.5 s of 2 s: 75 %
    set_value(root / "proc/500/fdinfo/8", "drm-engine-video", "3600000000 ns")  # 3.6 s / (2 x 2 s): 90 %
    set_value(root / "proc/501/fdinfo/4", "drm-engine-render", "300000000 ns")  # +0.2 s: 10 % (fd in 502 too)
    (root / "sys/class/drm/card0/device/hwmon/hwmon9/energy1_input").write_text("1334567890\n")  # +100 J
    igpu, dg2 = as_wire(gpus.collect(12.0))
    assert igpu["engines"] == {"render": 75.0, "copy": 0.0, "video": 90.0, "videoEnhance": 0.0}
    assert igpu["utilization"] == 90.0
    assert dg2["engines"] == {"render": 10.0, "copy": 0.0, "video": 0.0, "videoEnhance": 0.0, "compute": 0.0}
    assert dg2["utilization"] == 10.0 and dg2["power"] == 50.0 and dg2["energy"] == 1334.56789


def test_an_engine_counter_that_goes_back_is_held_until_it_catches_up(tmp_path):
    """drm-usage-stats: a value below the last one is ignored (0 %, never negative) and the next share is
    counted from the larger value."""
    root = tree(tmp_path, "intel-i915")
    gpus, fdinfo = collector(root), root / "proc/500/fdinfo/8"
    gpus.collect(0.0)
    set_value(fdinfo, "drm-engine-render", "9000000000 ns")  # 288864723 ns below the first reading
    assert as_wire(gpus.collect(1.0))[0]["engines"]["render"] == 0.0
    set_value(fdinfo, "drm-engine-render", "9788864723 ns")  # +0.5 s over the larger first value
    assert as_wire(gpus.collect(2.0))[0]["engines"]["render"] == 50.0


# ---------------------------------------------------------------- xe


def test_xe_card_vram_temperatures_and_cycle_shares(tmp_path):
    """xe: freq0 clocks, VRAM size and clients' VRAM, pkg/vram sensors, and cycles over each client's GPU clock."""
    root = tree(tmp_path, "intel-xe")
    gpus = collector(root)
    first = as_wire(gpus.collect(0.0))[0]
    assert first["frequency"] == {"actual": 2850.0, "max": 2850.0}
    assert first["temperatures"] == {"pkg": 58.0, "vram": 64.0} and first["temperature"] == 58.0
    assert first["energy"] == 52.0  # energy1 (card), not energy2 (package)
    # 512 MiB (client 11, behind fds 9 and 10) + 256 MiB (client 12) of 12 GiB.
    assert first["memory"] == {"used": 768 * MIB, "total": 12 * 1024 * MIB, "percentage": 6.25}
    c11, c12 = root / "proc/700/fdinfo/9", root / "proc/701/fdinfo/5"
    for path, rcs, ccs in ((c11, "1028257900", "8000000000"), (c12, "1001000000", "5000000")):
        set_value(path, "drm-cycles-rcs", rcs)
        set_value(path, "drm-total-cycles-rcs", "11655183225")  # +4e9 cycles of the GPU clock
        set_value(path, "drm-cycles-ccs", ccs)
        set_value(path, "drm-total-cycles-ccs", "11655183225")
    shutil.copy(c11, root / "proc/700/fdinfo/10")  # the dup shows the same client: still counted once
    (root / "sys/class/drm/card0/device/hwmon/hwmon2/energy1_input").write_text("62000000\n")  # +10 J
    awake = as_wire(gpus.collect(7.0))[0]  # 7 s of wall time play no part in cycle shares
    # rcs: 1e9 + 1e9 cycles of 4e9 = 50 %; ccs: client 11 8e9 over 4 engines x 4e9 = 50 %, client 12 +0.
    assert awake["engines"] == {"render": 50.0, "copy": 0.0, "video": 0.0, "videoEnhance": 0.0, "compute": 50.0}
    assert awake["utilization"] == 50.0 and awake["power"] == round(10 / 7, 3)


def test_clocks_temperatures_and_memory_follow_their_files_from_tick_to_tick(tmp_path):
    """Records reused while their files say the same are rebuilt as soon as one value changes."""
    root = tree(tmp_path, "intel-xe")
    gpus = collector(root, fd_walk_seconds=FD_WALK_SECONDS)
    hwmon, freq = root / "sys/class/drm/card0/device/hwmon/hwmon2", root / "sys/class/drm/card0/device/tile0/gt0/freq0"
    assert as_wire(gpus.collect(0.0))[0]["temperature"] == 58.0
    (hwmon / "temp2_input").write_text("61500\n")  # pkg
    (freq / "act_freq").write_text("1200\n")
    set_value(root / "proc/701/fdinfo/5", "drm-resident-vram0", "524288 KiB")  # client 12: 256 -> 512 MiB
    second = as_wire(gpus.collect(1.0))[0]
    assert second["temperatures"] == {"pkg": 61.5, "vram": 64.0} and second["temperature"] == 61.5
    assert second["frequency"] == {"actual": 1200.0, "max": 2850.0}
    assert second["memory"] == {"used": 1024 * MIB, "total": 12 * 1024 * MIB, "percentage": 8.33}
    (hwmon / "temp3_input").write_text("70000\n")  # vram only
    (freq / "max_freq").write_text("2400\n")
    third = as_wire(gpus.collect(2.0))[0]
    assert third["temperatures"] == {"pkg": 61.5, "vram": 70.0} and third["temperature"] == 61.5
    assert third["frequency"] == {"actual": 1200.0, "max": 2400.0}
    assert third["memory"]["used"] == 1024 * MIB


def test_a_suspended_card_keeps_its_place_with_null_readings(tmp_path):
    """A runtime-suspended xe card is listed (id, name, VRAM size) with null readings, and read once awake."""
    root = tree(tmp_path, "intel-xe")
    gpus = collector(root)
    asleep = as_wire(gpus.collect(0.0))[1]
    assert (asleep["id"], asleep["busId"], asleep["runtimeStatus"]) == (1, "0000:08:00.0", "suspended")
    assert "frequency" not in asleep and "engines" not in asleep
    assert asleep["utilization"] is None and asleep["power"] is None and asleep["temperature"] is None
    assert asleep["memory"] == {"used": None, "total": 12 * 1024 * MIB, "percentage": None}
    (root / "sys/class/drm/card1/device/power/runtime_status").write_text("active\n")
    awake = as_wire(gpus.collect(1.0))[1]
    assert awake["runtimeStatus"] == "active" and awake["energy"] == 52.0 and awake["memory"]["used"] == 0


def test_no_intel_card_is_unavailable_and_looked_for_again_after_a_minute(tmp_path):
    """A machine without i915/xe cards: unavailable with where it looked; a card bound later is found at the rescan."""
    root = tmp_path / "node"
    shutil.copytree(FIXTURES / "amd-connector-only", root)
    gpus = IntelCollector(str(root / "sys"), str(tmp_path / "no-proc"))
    with pytest.raises(Unavailable, match=r"no i915 or xe device under .*node/sys/class/drm"):
        gpus.collect(0.0)
    assert gpus.blocking is False
    shutil.copytree(FIXTURES / "intel-xe/sys/class/drm/card0", root / "sys/class/drm/card5")
    with pytest.raises(Unavailable):
        gpus.collect(1.0)
    assert [a.details.card for a in gpus.collect(RESCAN_SECONDS)] == ["card5"]
    assert gpus.blocking is True


async def test_a_card_that_goes_away_fails_only_its_collector_and_recovers(tmp_path):
    """An unbound card makes the intel collector `error` (the others stay ok); rebound, it is found and ok again."""
    from tracklab_sysmon.collectors.rapl import RaplCollector

    root = tree(tmp_path, "intel-xe")
    shutil.copytree(FIXTURES / "rapl/sys", root / "sys", dirs_exist_ok=True)
    sampler = Sampler([collector(root), RaplCollector(str(root / "sys"))], node_id="n")
    await sampler.tick()
    card = root / "sys/class/drm/card0"
    card.rename(root / "unbound")
    snapshot = await sampler.tick()
    assert sampler.status["intel"].state == "error"
    assert "card0 (0000:03:00.0) is gone" in (sampler.status["intel"].last_error or "")
    assert sampler.status["rapl"].state == "ok" and snapshot.accelerators == ()
    (root / "unbound").rename(card)
    snapshot = await sampler.tick()
    assert sampler.status["intel"].state == "ok" and [a.id for a in snapshot.accelerators] == [0, 1]


def test_a_new_client_waits_for_the_next_fd_walk(tmp_path):
    """Between walks only known DRM fds are read: a client opened since is counted from the walk after it."""
    root = tree(tmp_path, "intel-xe")
    gpus = collector(root, fd_walk_seconds=FD_WALK_SECONDS)
    assert as_wire(gpus.collect(0.0))[0]["memory"]["used"] == 768 * MIB
    shutil.copytree(root / "proc/701", root / "proc/702")
    set_value(root / "proc/702/fdinfo/5", "drm-client-id", "13")  # another 256 MiB client
    assert as_wire(gpus.collect(FD_WALK_SECONDS - 1))[0]["memory"]["used"] == 768 * MIB
    assert as_wire(gpus.collect(FD_WALK_SECONDS))[0]["memory"]["used"] == 1024 * MIB


def test_process_list_and_collector_number_intel_cards_alike():
    """The process list's Intel device ids are the collector's ids (both in PCI address order)."""
    sys_root = str(FIXTURES / "intel-i915" / "sys")
    by_pdev = {pdev: card.device for pdev, card in discover_cards(sys_root).items() if card.vendor == "intel"}
    assert by_pdev == {card.bus_id: card.index for card in discover(sys_root)} == {"0000:00:02.0": 0, "0000:03:00.0": 1}


def test_engine_classes_from_i915_and_xe_names():
    """i915 class names, xe class names and i915 engine instances map onto the same five classes."""
    names = ("render", "rcs", "rcs0", "copy", "bcs0", "video", "vcs1", "video-enhance", "vecs", "compute", "ccs3")
    assert [engine_class(n) for n in names] == ["render", "render", "render", "copy", "copy", "video", "video",
                                                "video-enhance", "video-enhance", "compute", "compute"]
    assert engine_class("gsccs") is None and engine_class("") is None


# ---------------------------------------------------------------- pci.ids


def test_pci_ids_names_intel_devices_only_under_intel():
    """The device is looked up under vendor 8086 only (another vendor's 56a0 is not it); brackets give the product."""
    text = (FIXTURES / "intel-i915" / "pci.ids").read_text()
    assert device_name(text, "8086", "56A0") == "DG2 [Arc A770]"
    assert device_name(text, "8086", "e20b") is None  # not in the 2023 database: the PCI id is the name
    assert marketing_name("Intel", "DG2 [Arc A770]") == "Intel Arc A770"
    assert marketing_name("Intel", "Alder Lake-P Integrated Graphics Controller") == (
        "Intel Alder Lake-P Integrated Graphics Controller")


@given(st.text(max_size=400), st.text(max_size=6), st.text(max_size=6))
def test_pci_ids_parser_never_raises(text, vendor, device):
    """Any text and ids give a name or None, never an exception."""
    name = device_name(text, vendor, device)
    assert name is None or isinstance(name, str)


@given(st.lists(st.tuples(st.from_regex(r"[0-9a-f]{4}", fullmatch=True),
                          st.from_regex(r"[A-Za-z][A-Za-z0-9 \[\]-]{0,20}[A-Za-z0-9\]]", fullmatch=True)),
                min_size=1, max_size=8, unique_by=lambda e: e[0]))
def test_pci_ids_written_entries_read_back(devices):
    """Every device line written under vendor 8086 is found again with its name."""
    text = "8086  Intel Corporation\n" + "".join(f"\t{d}  {n}\n" for d, n in devices) + "8087  Other\n"
    for device, name in devices:
        assert device_name(text, "8086", device) == name.strip()


def test_a_costly_fd_walk_stretches_the_period_to_its_cpu_share(tmp_path):
    """A walk that costs 20 ms of CPU with a 0.05 % share puts the next walk 40 s later (not 10 s); a cheap one
    keeps the 10 s period."""
    root = tree(tmp_path, "intel-xe")
    cpu = iter([0.0, 0.020, 1.0, 1.001])  # thread CPU seconds read before and after each walk
    walk = ClientWalk(str(root / "proc"), FD_WALK_SECONDS, walk_share=0.0005, cpu_clock=lambda: next(cpu))
    assert len(walk.read(0.0, lambda c: True)) == 3  # 700 fds 9 and 10, 701 fd 5
    assert walk.period == 40.0
    shutil.copytree(root / "proc/701", root / "proc/702")
    assert {pid for pid, _, _ in walk.read(39.0, lambda c: True)} == {700, 701}  # between walks: known fds only
    assert {pid for pid, _, _ in walk.read(40.0, lambda c: True)} == {700, 701, 702}
    assert walk.period == FD_WALK_SECONDS  # 1 ms of CPU: the 10 s floor
