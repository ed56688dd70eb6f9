"""The energy ledger: RAPL, Intel, amdgpu and NVML counters with watts, over the wire and through the real service."""

from __future__ import annotations

import asyncio
import json
import pathlib
import re
import shutil
import subprocess
import sys

import aiohttp
import orjson
from conftest import FIXTURES, require_command
from hypothesis import given
from hypothesis import strategies as st
from nvml_stub.build import build_stub, stub_env
from prometheus_client.parser import text_string_to_metric_families

from tracklab_sysmon import wire
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.collectors.amd import AmdCollector
from tracklab_sysmon.collectors.intel import IntelCollector
from tracklab_sysmon.collectors.rapl import RaplCollector
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.energy import EnergyRate
from tracklab_sysmon.model import (
    AcceleratorMemory,
    AcceleratorSample,
    EnergySample,
    EngineUse,
    GpuEnergy,
    GtFrequency,
    IntelDetails,
    IntelReadings,
    RaplZone,
    Snapshot,
    TemperatureSensor,
)
from tracklab_sysmon.sampler import Sampler
from tracklab_sysmon.server import create_app, keys, ws

NODE = "energy-node"
SLOW = 3600.0  # no background tick: tests tick the sampler themselves
DEADLINE = 10.0  # upper bound on waiting for an event; never a speed assertion
PREFIX = "tracklab_sysmon_"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def node_tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """One machine: the workstation's procfs and sysfs, with the xe cards and their clients and the two-socket
    RAPL zones added."""
    root = tmp_path / "node"
    shutil.copytree(FIXTURES / "workstation", root, symlinks=True)
    shutil.copytree(FIXTURES / "intel-xe", root, dirs_exist_ok=True)
    shutil.copytree(FIXTURES / "rapl/sys", root / "sys", dirs_exist_ok=True)
    return root


def write(root: pathlib.Path, relative: str, value: str) -> None:
    (root / "sys" / relative).write_text(value + "\n")


def advance(root: pathlib.Path) -> None:
    """Two seconds' worth of counters: package-0 wraps (+2 J), its DRAM +0.5 J, the xe card +10 J,
    and client 11 keeps the render engine busy 1e9 of the GPU clock's 4e9 cycles."""
    write(root, "class/powercap/intel-rapl:0/energy_uj", "1671150")
    write(root, "class/powercap/intel-rapl:0:1/energy_uj", "3000500000")
    write(root, "class/drm/card0/device/hwmon/hwmon2/energy1_input", "62000000")
    fdinfo = root / "proc/700/fdinfo/9"
    text = fdinfo.read_text()
    for key, value in (("drm-cycles-rcs", "1028257900"), ("drm-total-cycles-rcs", "11655183225")):
        text = re.sub(rf"^{key}:.*$", f"{key}:\t{value}", text, flags=re.MULTILINE)
    fdinfo.write_text(text)
    (root / "proc/700/fdinfo/10").write_text(text)  # its dup shows the same client


# ---------------------------------------------------------------- the ledger


def test_energy_rate_is_none_first_then_watts_and_none_when_the_counter_falls():
    """Average watts between readings: none for the first, none for a fall (driver reload), none after a gap."""
    rate = EnergyRate()
    assert rate.update(100.0, 10.0) is None
    assert rate.update(130.0, 12.0) == 15.0
    assert rate.update(5.0, 13.0) is None  # fell: a reload, never a negative
    assert rate.update(7.0, 14.0) == 2.0
    assert rate.update(None, 15.0) is None and rate.update(20.0, 16.0) is None


async def test_the_first_snapshot_already_has_watts_for_every_counter(tmp_path):
    """The sampler primes the ledger: after 2 s the wrap is 1.0 W, DRAM 0.25 W and the xe card 5.0 W, in the
    first published snapshot."""
    root = node_tree(tmp_path)
    clock = Clock(100.0)
    collectors = [RaplCollector(str(root / "sys")), IntelCollector(str(root / "sys"), str(root / "proc"))]
    sampler = Sampler(collectors, node_id=NODE, monotonic=clock)
    await sampler.prime()
    advance(root)
    clock.now = 102.0
    energy = (await sampler.tick()).energy
    assert energy is not None
    zones = {z.zone: (z.joules, z.watts) for z in energy.cpu}
    assert zones["intel-rapl:0"] == (262145.0, 1.0) and zones["intel-rapl:0:1"] == (3000.5, 0.25)
    assert zones["intel-rapl:1"] == (120000.0, 0.0)
    assert energy.gpus == (GpuEnergy(id=0, vendor="intel", uuid=None, joules=62.0, watts=5.0),)  # card1 sleeps


def test_amdgpu_energy1_input_joins_the_ledger_only_where_the_card_has_one(tmp_path):
    """An amdgpu hwmon with energy1_input (µJ) gives the card's energy; without it the field is null."""
    root = tmp_path / "amd"
    shutil.copytree(FIXTURES / "amd-discrete", root)
    (gpu,) = AmdCollector(str(root / "sys")).collect(0.0)
    assert gpu.details.readings.energy is None
    (root / "sys/class/drm/card1/device/hwmon/hwmon4/energy1_input").write_text("4500250000\n")
    (gpu,) = AmdCollector(str(root / "sys")).collect(0.0)
    assert gpu.details.readings.energy == 4500.25
    assert wire.accelerator_to_wire(gpu)["energy"] == 4500.25


NVML_LEDGER = """
import asyncio, json
from tracklab_sysmon.collectors.nvidia import NvidiaCollector
from tracklab_sysmon.sampler import Sampler

class Clock:
    now = 50.0
    def __call__(self):
        return self.now

async def main():
    clock = Clock()
    sampler = Sampler([NvidiaCollector()], node_id="n", monotonic=clock)
    first = await sampler.tick()
    clock.now = 52.0
    second = await sampler.tick()
    for snap in (first, second):
        print(json.dumps({"gpus": [[g.id, g.uuid, g.joules, g.watts] for g in snap.energy.gpus],
                          "energy": [a.details.readings.energy for a in snap.accelerators]}))

asyncio.run(main())
"""


def test_nvml_total_energy_joins_the_ledger_with_watts(tmp_path):
    """NVML's total energy (read by the NVIDIA collector through the stand-in library) is each GPU's ledger entry;
    its watts are the change between two ticks over their 2 s."""
    require_command("cc")
    lib = build_stub(tmp_path / "nvml")
    done = subprocess.run([sys.executable, "-c", NVML_LEDGER], env=stub_env(lib, gpus="2"),
                          capture_output=True, text=True, timeout=60, check=True)
    first, second = (json.loads(line) for line in done.stdout.splitlines())
    assert [g[2] for g in first["gpus"]] == first["energy"] and [g[3] for g in first["gpus"]] == [None, None]
    assert [g[2] for g in second["gpus"]] == second["energy"]
    assert [g[1] for g in second["gpus"]] == [f"GPU-00000000-0000-0000-0000-00000000000{i}" for i in (0, 1)]
    for before, after, watts in zip(first["energy"], second["energy"], (g[3] for g in second["gpus"]), strict=True):
        assert after > before and watts == round((after - before) / 2.0, 3)


# ---------------------------------------------------------------- the wire


_finite = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
_maybe = st.none() | _finite
_zones = st.builds(RaplZone, zone=st.from_regex(r"intel-rapl:\d(:\d)?", fullmatch=True),
                   domain=st.sampled_from(["package", "core", "uncore", "dram", "psys", "other"]),
                   package=st.none() | st.integers(0, 8), joules=_finite, watts=_maybe)
_gpus = st.builds(GpuEnergy, id=st.integers(0, 16), vendor=st.none() | st.sampled_from(["nvidia", "amd", "intel"]),
                  uuid=st.none() | st.text(max_size=8), joules=_finite, watts=_maybe)
_engines = st.lists(st.sampled_from(["render", "copy", "video", "video-enhance", "compute"]), unique=True).flatmap(
    lambda names: st.tuples(*(st.builds(EngineUse, st.just(n), _maybe) for n in names)))
_readings = st.builds(
    IntelReadings, frequency=st.builds(GtFrequency, _maybe, _maybe), energy=_maybe,
    temperatures=st.none() | st.lists(st.builds(TemperatureSensor, st.sampled_from(["pkg", "vram", "temp1"]), _finite),
                                      unique_by=lambda t: t.label).map(tuple),
    engines=_engines)
_intel = st.builds(
    AcceleratorSample, id=st.integers(0, 8), type=st.just("gpu"), name=st.none() | st.text(max_size=12),
    utilization=_maybe, memory=st.builds(AcceleratorMemory, st.none() | st.integers(0, 2**40),
                                         st.none() | st.integers(0, 2**40), _maybe),
    temperature=_maybe, power=_maybe, fan_speed=st.none(), vendor=st.just("intel"), uuid=st.none(),
    details=st.builds(IntelDetails, card=st.from_regex(r"card\d", fullmatch=True),
                      driver=st.sampled_from(["i915", "xe"]), bus_id=st.none() | st.just("0000:03:00.0"),
                      runtime_status=st.none() | st.just("active"),
                      readings=st.none() | _readings))


@given(st.builds(EnergySample, cpu=st.lists(_zones, max_size=6).map(tuple),
                 gpus=st.lists(_gpus, max_size=4).map(tuple)),
       st.lists(_intel, max_size=3).map(tuple))
def test_energy_and_intel_devices_round_trip_through_the_wire(energy, accelerators):
    """snapshot_from_wire(encode(snapshot_to_wire(s))) is s for any energy section and Intel devices."""
    snap = Snapshot(node_id="n", timestamp=1, accelerators=accelerators, energy=energy)
    assert wire.snapshot_from_wire(wire.encode(wire.snapshot_to_wire(snap))) == snap


def test_an_intel_device_carrying_nvml_keys_is_refused():
    """`driver` with `lost` mixes two sources: the decoder names both instead of guessing."""
    body = {"id": 0, "type": "gpu", "memory": {}, "card": "card0", "driver": "xe", "lost": False}
    try:
        wire.accelerator_from_wire(body)
    except ValueError as exc:
        assert str(exc) == "accelerator: lost and driver belong to different sources"
    else:
        raise AssertionError("decoded a device of two sources")


# ---------------------------------------------------------------- the real service


async def _service(aiohttp_client, root: pathlib.Path):
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5, proc_root=str(root / "proc"),
                           sys_root=str(root / "sys"))
    return await aiohttp_client(create_app(config))


async def _frame(conn) -> dict:
    message = await asyncio.wait_for(conn.receive(), DEADLINE)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    return orjson.loads(message.data)


async def test_rest_websocket_and_prometheus_carry_the_ledger_and_the_intel_card(aiohttp_client, tmp_path):
    """Through the served app: the wrap lands in REST, the next WebSocket frame and the joule counters of /metrics
    alike, Intel engines and clocks are gauges, health says ok, and promtool accepts the text."""
    root = node_tree(tmp_path)
    client = await _service(aiohttp_client, root)
    health = await (await client.get("/api/health")).json()
    assert health["collectors"]["intel"]["status"] == "ok" and health["collectors"]["rapl"]["status"] == "ok"
    assert health["status"] == "healthy"
    conn = await client.ws_connect(ws.WS_PATH)
    assert (await _frame(conn))["type"] == "info" and (await _frame(conn))["type"] == "metrics"
    advance(root)
    await client.server.app[keys.SAMPLER].tick()
    frame = (await _frame(conn))["data"]
    (node,) = await (await client.get("/api/system/metrics")).json()
    assert frame["energy"] == node["energy"]
    cpu = {z["zone"]: z for z in node["energy"]["cpu"]}
    assert cpu["intel-rapl:0"]["joules"] == 262145.0 and cpu["intel-rapl:0"]["domain"] == "package"
    assert cpu["intel-rapl:0:1"]["joules"] == 3000.5 and cpu["intel-rapl:1:1"]["package"] == 1
    (gpu_energy,) = node["energy"]["gpus"]
    assert (gpu_energy["id"], gpu_energy["vendor"], gpu_energy["joules"]) == (0, "intel", 62.0)
    xe, asleep = node["accelerators"]
    assert xe["engines"]["render"] == 25.0 and xe["utilization"] == 25.0 and xe["vendor"] == "intel"
    assert asleep["runtimeStatus"] == "suspended"
    await conn.close()
    text = await (await client.get("/metrics")).text()
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    node_label = {"node_id": NODE}
    assert samples[(PREFIX + "rapl_energy_joules_total",
                    frozenset({**node_label, "zone": "intel-rapl:0", "domain": "package"}.items()))] == 262145.0
    gpu0 = {**node_label, "gpu": "0", "uuid": "", "vendor": "intel"}
    assert samples[(PREFIX + "gpu_energy_joules_total", frozenset(gpu0.items()))] == 62.0
    assert samples[(PREFIX + "gpu_engine_utilization_ratio", frozenset({**gpu0, "engine": "render"}.items()))] == 0.25
    assert samples[(PREFIX + "gpu_frequency_hertz", frozenset({**gpu0, "kind": "actual"}.items()))] == 2.85e9
    assert samples[(PREFIX + "gpu_power_watts", frozenset(gpu0.items()))] == xe["power"]
    check = subprocess.run([require_command("promtool"), "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_absent_sources_are_unavailable_with_their_reasons(aiohttp_client, tmp_path):
    """On a node without Intel cards or RAPL zones both collectors are `unavailable` in /api/health, each saying
    why, the service is healthy, and the snapshot's energy section is null."""
    empty = tmp_path / "bare"
    (empty / "sys").mkdir(parents=True)
    config = ServiceConfig(node_id=NODE, interval=SLOW, history=5)
    collectors = (*default_collectors(), IntelCollector(str(empty / "sys"), str(empty / "proc")),
                  RaplCollector(str(empty / "sys")))
    client = await aiohttp_client(create_app(config, collectors=collectors))
    health = await (await client.get("/api/health")).json()
    intel, rapl = health["collectors"]["intel"], health["collectors"]["rapl"]
    assert intel["status"] == "unavailable"
    assert intel["lastError"] == f"no i915 or xe device under {empty}/sys/class/drm"
    assert rapl["status"] == "unavailable"
    assert rapl["lastError"].startswith(f"no RAPL zone under {empty}/sys/class/powercap")
    assert health["status"] == "healthy"
    (node,) = await (await client.get("/api/system/metrics")).json()
    assert node["energy"] is None


# ---------------------------------------------------------------- /metrics against REST (used by test_prometheus)

_ENGINE_LABELS = {"render": "render", "copy": "copy", "video": "video", "videoEnhance": "video-enhance",
                  "compute": "compute"}


def expected_energy_series(snap: dict, node: str) -> dict[tuple[str, frozenset], float]:
    """Every energy and Intel engine/clock sample /metrics must carry for one node, from its REST snapshot."""
    expected: dict[tuple[str, frozenset], float] = {}

    def put(name: str, value: float | None, **labels: str) -> None:
        if value is not None:
            expected[(PREFIX + name, frozenset({"node_id": node, **labels}.items()))] = value

    energy = snap["energy"] or {"cpu": [], "gpus": []}
    for zone in energy["cpu"]:
        put("rapl_energy_joules_total", zone["joules"], zone=zone["zone"], domain=zone["domain"])
    for gpu in energy["gpus"]:
        put("gpu_energy_joules_total", gpu["joules"], gpu=str(gpu["id"]), uuid=gpu["uuid"] or "",
            vendor=gpu["vendor"] or "")
    for acc in snap["accelerators"]:
        if "driver" not in acc or "engines" not in acc:  # Intel cards with readings only
            continue
        labels = {"gpu": str(acc["id"]), "uuid": acc["uuid"] or "", "vendor": acc["vendor"]}
        for name, share in acc["engines"].items():
            put("gpu_engine_utilization_ratio", None if share is None else round(share / 100, 9),
                engine=_ENGINE_LABELS[name], **labels)
        for kind in ("actual", "max"):
            mhz = acc["frequency"][kind]
            put("gpu_frequency_hertz", None if mhz is None else mhz * 1e6, kind=kind, **labels)
    return expected
