"""AMD GPUs read from amdgpu sysfs fixture trees through an injected sys_root, and served by the real app."""

from __future__ import annotations

import shutil

import pytest
from conftest import FIXTURES

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.amd import RESCAN_SECONDS, AmdCollector, discover
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.server import create_app


def _sys(tree: str) -> str:
    return str(FIXTURES / tree / "sys")


def _wire(tree: str) -> list[dict]:
    return [wire.accelerator_to_wire(a) for a in AmdCollector(_sys(tree)).collect(0.0)]


def test_discrete_card_reports_every_field_in_wire_units():
    """A full amdgpu card gives busy %, VRAM bytes, °C, W, fan % and the extensions, from sysfs units."""
    (gpu,) = _wire("amd-discrete")
    assert (gpu["id"], gpu["vendor"], gpu["name"]) == (0, "amd", "AMD Radeon RX 6800 XT")
    assert gpu["utilization"] == 37.0 and gpu["memoryUtilization"] == 12.0
    assert gpu["memory"] == {"used": 2147483648, "total": 17163091968, "percentage": 12.51}
    assert gpu["temperature"] == 52.0  # temp1 (edge), millidegrees
    assert gpu["temperatures"] == {"edge": 52.0, "junction": 61.0, "mem": 58.0}
    assert gpu["power"] == 87.0 and gpu["powerLimit"] == 203.0  # microwatts
    assert gpu["fanSpeed"] == 40.0  # pwm1 102 of 255
    assert gpu["clocks"] == {"sm": 1825.0, "memory": 1000.0}  # the starred pp_dpm levels
    assert gpu["busId"] == "0000:03:00.0" and gpu["uuid"] == "a1b2c3d4e5f60718"
    assert gpu["gtt"] == {"used": 104857600, "total": 16777216000}


def test_connectors_render_nodes_and_other_drivers_are_not_devices():
    """Only cardN folders bound to amdgpu count: connectors, renderD*, and an i915 card are skipped."""
    assert [c.card for c in discover(_sys("amd-discrete"))] == ["card1"]


def test_missing_files_are_null_and_power_falls_back_to_power1_input():
    """An APU without several files reports nulls for them and its power from power1_input."""
    (gpu,) = _wire("amd-missing-files")
    assert gpu["name"] == "AMD GPU 1002:73BF"  # no product_name: PCI id instead
    assert gpu["memory"] == {"used": None, "total": 536870912, "percentage": None}
    assert gpu["fanSpeed"] is None and gpu["memoryUtilization"] is None and gpu["powerLimit"] is None
    assert gpu["clocks"] == {"sm": None, "memory": None}
    assert gpu["power"] == 9.5 and gpu["temperature"] == 47.0 and gpu["utilization"] == 37.0


def test_suspended_card_is_listed_but_not_read():
    """A runtime-suspended card keeps its place with null readings instead of being woken for them."""
    active, asleep = _wire("amd-suspended")
    assert active["runtimeStatus"] == "active" and active["utilization"] == 37.0
    assert asleep["id"] == 1 and asleep["runtimeStatus"] == "suspended"
    assert asleep["utilization"] is None and asleep["temperature"] is None and asleep["power"] is None
    assert asleep["name"] == "AMD Instinct MI210" and asleep["busId"] == "0000:83:00.0"


def test_connector_only_tree_is_unavailable_with_reason():
    """A machine with a display but no amdgpu device reports the AMD collector unavailable, saying where it looked."""
    with pytest.raises(Unavailable, match=r"no amdgpu device under .*amd-connector-only.*class/drm"):
        AmdCollector(_sys("amd-connector-only")).collect(0.0)


def test_garbage_in_a_file_is_null_not_a_crash(tmp_path):
    """A value file holding junk makes that field null while the card's other fields stay."""
    root = tmp_path / "sys"
    shutil.copytree(_sys("amd-discrete"), root)
    (root / "class/drm/card1/device/gpu_busy_percent").write_text("not a number\n")
    (gpu,) = [wire.accelerator_to_wire(a) for a in AmdCollector(str(root)).collect(0.0)]
    assert gpu["utilization"] is None and gpu["temperature"] == 52.0


def test_cards_are_looked_for_again_only_after_the_rescan_period(tmp_path):
    """With no card, discovery is retried after RESCAN_SECONDS (a late driver), not on every tick."""
    root = tmp_path / "sys"
    shutil.copytree(_sys("amd-connector-only"), root)
    collector = AmdCollector(str(root))
    with pytest.raises(Unavailable):
        collector.collect(0.0)
    shutil.copytree(FIXTURES / "amd-missing-files/sys/class/drm/card0", root / "class/drm/card7")
    with pytest.raises(Unavailable):
        collector.collect(1.0)
    assert [a.details.card for a in collector.collect(RESCAN_SECONDS)] == ["card7"]


def test_runs_inline_until_cards_exist_then_off_the_loop():
    """The collector is cheap (inline) while no card exists and blocking (worker thread) once cards are found."""
    absent, present = AmdCollector(_sys("amd-connector-only")), AmdCollector(_sys("amd-suspended"))
    assert absent.blocking is False and present.blocking is False
    with pytest.raises(Unavailable):
        absent.collect(0.0)
    present.collect(0.0)
    assert absent.blocking is False and present.blocking is True


async def test_served_app_counts_amd_gpus_in_system_info(aiohttp_client):
    """/api/system/info's gpu_count and gpu_info come from the devices the first snapshot found."""
    config = ServiceConfig(node_id="amd-node", interval=3600.0, sys_root=_sys("amd-suspended"))
    client = await aiohttp_client(create_app(config))
    info = await (await client.get("/api/system/info")).json()
    assert info["gpu_count"] == 2 and info["gpu_info"] == ["AMD Instinct MI210", "AMD Instinct MI210"]
    health = await (await client.get("/api/health")).json()
    assert health["collectors"]["amd"]["status"] == "ok"
    assert "nvidia" not in health["collectors"]  # a captured tree: host GPUs are not mixed in
    assert health["dcgm"]["available"] is False and "captured tree" in health["dcgm"]["reason"]
    (node,) = await (await client.get("/api/system/metrics")).json()
    assert [a["vendor"] for a in node["accelerators"]] == ["amd", "amd"] and node["memory"] is not None
