"""InfiniBand/RoCE ports read from class/infiniband fixture trees through an injected sys_root, and served."""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import shutil
import subprocess
from dataclasses import fields

import orjson
import pytest
from conftest import FIXTURES, require_command
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tracklab_sysmon import wire
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.collectors import infiniband_files as ib
from tracklab_sysmon.collectors.base import Partial
from tracklab_sysmon.collectors.infiniband import (
    ERROR_FILES,
    HW_SECONDS,
    RESCAN_SECONDS,
    SLOW_SECONDS,
    InfinibandCollector,
)
from tracklab_sysmon.collectors.memory import MemoryCollector
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.errors import ParseError, Unavailable
from tracklab_sysmon.hotpath import open_reader
from tracklab_sysmon.model import FabricSample, InfinibandErrors
from tracklab_sysmon.server import create_app, keys, ws

TREE = FIXTURES / "infiniband-hca" / "sys"
PORT = "class/infiniband/{}/ports/1"
DEADLINE = 10.0  # upper bound on waiting for a WebSocket frame; never a speed assertion


def _copy(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "sys"
    shutil.copytree(TREE, root)
    return root


def _write(root: pathlib.Path, device: str, name: str, value: object) -> None:
    (root / PORT.format(device) / name).write_text(f"{value}\n")


def _ports(value: object) -> list[dict]:
    sample = value.value if isinstance(value, Partial) else value
    return wire.fabric_to_wire(FabricSample(infiniband=sample))["infiniband"]


# ---------------------------------------------------------------- parsers


def test_error_files_follow_the_record_fields_order():
    """ERROR_FILES lists InfinibandErrors' fields in order (the slow read fills the record positionally)."""
    assert [name for name, _ in ERROR_FILES] == [f.name for f in fields(InfinibandErrors)]


def test_parsers_read_the_kernel_formats():
    """state, phys_state, rate, link_layer and counters read as the kernel's sysfs.c writes them."""
    assert ib.parse_state("4: ACTIVE\n") == "active"
    assert ib.parse_state("5: ACTIVE_DEFER\n") == "active_defer"
    assert ib.parse_state("5: LinkUp\n") == "link_up"
    assert ib.parse_state("4: PortConfigurationTraining\n") == "port_configuration_training"
    assert ib.parse_state("7: Phy Test\n") == "phy_test"
    assert ib.parse_rate("200 Gb/sec (4X HDR)\n") == 200e9
    assert ib.parse_rate("2.5 Gb/sec (1X SDR)\n") == 2.5e9
    assert ib.parse_rate("10 Gb/sec (4X)\n") == 10e9  # no speed name: the kernel leaves it out
    assert ib.parse_link_layer("Ethernet\n") == "Ethernet"
    assert ib.parse_counter("18446744073709551615\n") == 2**64 - 1
    assert ib.words_to_bytes(2_500_000_000) == 10_000_000_000


@pytest.mark.parametrize(("parse", "text"), [
    (ib.parse_counter, "N/A (no PMA)\n"), (ib.parse_counter, "-1\n"), (ib.parse_counter, "18446744073709551616"),
    (ib.parse_counter, ""), (ib.parse_state, "ACTIVE\n"), (ib.parse_state, "4: <unknown>\n"),
    (ib.parse_rate, "fast\n"), (ib.parse_rate, "100 Gb/sec (-1X EDR)\n"), (ib.parse_link_layer, "\n"),
])
def test_parsers_refuse_other_shapes(parse, text):
    """Text that is not the file's format is a ParseError (the collector turns it into null)."""
    with pytest.raises(ParseError):
        parse(text)


@given(st.text(max_size=40))
def test_every_parser_raises_only_parse_error(text):
    """Any text gives a value or a ParseError, never another exception."""
    for parse in (ib.parse_counter, ib.parse_state, ib.parse_rate, ib.parse_link_layer):
        with contextlib.suppress(ParseError):
            parse(text)


@given(st.integers(0, 2**64 - 1), st.sampled_from(["", "\n", " \n"]))
def test_counter_reads_back_any_64_bit_value(value, end):
    """Every unsigned 64-bit decimal the kernel can print reads back exactly."""
    assert ib.parse_counter(f"{value}{end}") == value


@given(st.integers(0, 400), st.booleans(), st.sampled_from([1, 2, 4, 8, 12]),
       st.sampled_from(["", " SDR", " QDR", " FDR10", " EDR", " HDR", " NDR", " XDR"]))
def test_rate_reads_every_kernel_rendering(tens, half, width, speed):
    """rate_show's "%d%s Gb/sec (%dX%s)" reads back as that many bits per second."""
    text = f"{tens}{'.5' if half else ''} Gb/sec ({width}X{speed})\n"
    assert ib.parse_rate(text) == (tens + (0.5 if half else 0.0)) * 1e9


@given(st.integers(0, 99), st.sampled_from(["DOWN", "INIT", "ARMED", "ACTIVE", "ACTIVE_DEFER", "LinkUp", "Polling"]))
def test_state_reads_every_kernel_rendering(number, name):
    """state_show's and phys_state_show's "%d: %s" read back as the name in lower snake case."""
    expected = {"LinkUp": "link_up"}.get(name, name.lower())
    assert ib.parse_state(f"{number}: {name}\n") == expected


# ---------------------------------------------------------------- the collector on the fixture tree


def test_fixture_ports_report_bytes_from_words_states_rates_and_errors():
    """Each port: data in bytes (words x 4), packets, state, rate in bits/s, errors and hw_counters (no lifespan)."""
    ports = _ports(InfinibandCollector(str(TREE)).collect(0.0))
    assert [(p["device"], p["port"]) for p in ports] == [("mlx5_0", 1), ("mlx5_1", 1), ("mlx5_2", 1)]
    hdr, down, roce = ports
    assert (hdr["txBytes"], hdr["rxBytes"]) == (10_000_000_000, 5_000_000_000)
    assert (hdr["txPackets"], hdr["rxPackets"]) == (9_765_625, 4_882_812)
    assert (hdr["linkLayer"], hdr["state"], hdr["physicalState"], hdr["rate"]) == (
        "InfiniBand", "active", "link_up", 200e9)
    assert (hdr["txRate"], hdr["rxRate"], hdr["txPacketsRate"], hdr["rxPacketsRate"]) == (0.0, 0.0, 0.0, 0.0)
    assert hdr["errors"]["symbolErrors"] == 2 and hdr["errors"]["rcvErrors"] == 1
    assert hdr["errors"]["linkDowned"] == 0 and hdr["errors"]["vl15Dropped"] == 0
    assert hdr["hwCounters"] == {
        "duplicate_request": 0, "implied_nak_seq_err": 0, "local_ack_timeout_err": 3, "out_of_buffer": 17,
        "out_of_sequence": 5, "packet_seq_err": 1, "rnr_nak_retry_err": 0,
    }
    assert (down["state"], down["physicalState"], down["rate"]) == ("down", "disabled", 10e9)
    assert down["errors"]["linkDowned"] == 3 and down["errors"]["symbolErrors"] == 65535
    assert down["errors"]["linkErrorRecovery"] == 7 and down["hwCounters"] == {}
    assert (down["txBytes"], down["rxBytes"]) == (4000, 8000)
    assert (roce["linkLayer"], roce["rate"], roce["txBytes"]) == ("Ethernet", 25e9, 3_000_000)
    assert roce["hwCounters"]["np_cnp_sent"] == 12 and roce["errors"]["xmitDiscards"] == 4


def test_rates_are_bytes_and_packets_per_second_over_the_monotonic_interval(tmp_path):
    """Two reads 2 s apart: (words delta x 4) / 2 bytes/s and packets delta / 2 per second."""
    root = _copy(tmp_path)
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    _write(root, "mlx5_0", "counters/port_xmit_data", 2_500_000_000 + 500_000)
    _write(root, "mlx5_0", "counters/port_rcv_packets", 4_882_812 + 300)
    hdr = _ports(collector.collect(102.0))[0]
    assert hdr["txRate"] == 1_000_000.0 and hdr["rxRate"] == 0.0
    assert hdr["rxPacketsRate"] == 150.0 and hdr["txBytes"] == 10_002_000_000


def test_counter_reset_gives_zero_never_a_negative_or_a_spike(tmp_path):
    """A data counter that drops (reset by perfquery -R, driver reload) rates 0; the next rise rates from the low
    reading over the span since the last high one (rates.py's rule: the reset lies inside that span)."""
    root = _copy(tmp_path)
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    _write(root, "mlx5_0", "counters/port_xmit_data", 1000)
    assert _ports(collector.collect(101.0))[0]["txRate"] == 0.0
    _write(root, "mlx5_0", "counters/port_xmit_data", 1250)
    assert _ports(collector.collect(102.0))[0]["txRate"] == 500.0  # 250 words = 1000 bytes over 100 -> 102 s


def test_saturated_32_bit_data_counter_has_no_rate_and_says_why(tmp_path):
    """A 32-bit port_rcv_data stuck at 2^32-1 keeps its bytes, gets a null rate, and the collector is degraded."""
    root = _copy(tmp_path)
    _write(root, "mlx5_1", "counters/port_rcv_data", 2**32 - 1)
    value = InfinibandCollector(str(root)).collect(0.0)
    assert isinstance(value, Partial) and "mlx5_1/1 port_rcv_data is saturated" in value.reason
    down = _ports(value)[1]
    assert down["rxRate"] is None and down["rxBytes"] == 4 * (2**32 - 1) and down["txRate"] == 0.0


def test_garbage_counter_is_null_and_named_while_the_rest_stay(tmp_path):
    """A counter file holding junk is null for that field only, and the degraded reason names the file."""
    root = _copy(tmp_path)
    _write(root, "mlx5_2", "counters/port_xmit_packets", "N/A (no PMA)")
    value = InfinibandCollector(str(root)).collect(0.0)
    assert isinstance(value, Partial) and "mlx5_2/ports/1/counters/port_xmit_packets" in value.reason
    roce = _ports(value)[2]
    assert roce["txPackets"] is None and roce["txPacketsRate"] is None and roce["rxPackets"] == 8000


def test_missing_counters_folder_is_null_not_a_problem(tmp_path):
    """A port without counters/ (soft RoCE, EFA: no PMA) has null data and no degraded state."""
    root = _copy(tmp_path)
    shutil.rmtree(root / PORT.format("mlx5_2") / "counters")
    value = InfinibandCollector(str(root)).collect(0.0)
    assert not isinstance(value, Partial)
    roce = _ports(value)[2]
    assert (roce["txBytes"], roce["rxPackets"], roce["errors"]["xmitDiscards"]) == (None, None, None)
    assert roce["state"] == "active" and roce["hwCounters"]["np_cnp_sent"] == 12


def test_no_class_folder_is_unavailable_with_reason(tmp_path):
    """A machine without an RDMA driver says /sys/class/infiniband is absent."""
    with pytest.raises(Unavailable, match=r"no RDMA driver loaded: .*class/infiniband is absent"):
        InfinibandCollector(str(tmp_path)).collect(0.0)


def test_devices_without_ports_are_unavailable(tmp_path):
    """A class folder holding no port (a device being torn down) is unavailable, not an empty success."""
    (tmp_path / "class/infiniband/mlx5_0").mkdir(parents=True)
    with pytest.raises(Unavailable, match=r"no InfiniBand or RoCE port under"):
        InfinibandCollector(str(tmp_path)).collect(0.0)


def test_error_counters_are_read_on_the_slow_tier_and_when_the_state_changes(tmp_path):
    """Errors and rate are kept between slow reads; a state change or SLOW_SECONDS brings them afresh."""
    root = _copy(tmp_path)
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    _write(root, "mlx5_0", "counters/symbol_error", 9)
    assert _ports(collector.collect(101.0))[0]["errors"]["symbolErrors"] == 2  # not due yet
    assert _ports(collector.collect(100.0 + SLOW_SECONDS))[0]["errors"]["symbolErrors"] == 9
    _write(root, "mlx5_1", "counters/link_downed", 4)
    _write(root, "mlx5_1", "state", "4: ACTIVE")
    _write(root, "mlx5_1", "rate", "100 Gb/sec (4X EDR)")
    down = _ports(collector.collect(101.0 + SLOW_SECONDS))[1]
    assert (down["state"], down["rate"], down["errors"]["linkDowned"]) == ("active", 100e9, 4)


def test_hw_counters_are_read_on_their_own_slower_tier(tmp_path):
    """The driver's hw_counters (dozens per mlx5 port) are read again only after HW_SECONDS."""
    root = _copy(tmp_path)
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    _write(root, "mlx5_0", "hw_counters/out_of_buffer", 18)
    assert _ports(collector.collect(100.0 + SLOW_SECONDS))[0]["hwCounters"]["out_of_buffer"] == 17
    assert _ports(collector.collect(100.0 + HW_SECONDS))[0]["hwCounters"]["out_of_buffer"] == 18


def test_slow_reads_of_many_ports_are_spread_over_the_period(tmp_path):
    """Five ports do not all read their error counters on one tick: port i's next slow read is i seconds early."""
    root = tmp_path / "sys"
    for i in range(5):
        shutil.copytree(TREE / "class/infiniband/mlx5_0", root / f"class/infiniband/mlx5_{i}")
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    for i in range(5):
        _write(root, f"mlx5_{i}", "counters/symbol_error", 9)
    seen = [[p["errors"]["symbolErrors"] for p in _ports(collector.collect(100.0 + t))] for t in range(1, 6)]
    assert seen == [[2, 2, 2, 2, 9], [2, 2, 2, 9, 9], [2, 2, 9, 9, 9], [2, 9, 9, 9, 9], [9, 9, 9, 9, 9]]


def test_ports_are_looked_for_again_after_the_rescan_period(tmp_path):
    """A device that appears (driver loaded late, hot-plug) is listed from the next rescan on."""
    root = tmp_path / "sys"
    (root / "class/infiniband").mkdir(parents=True)
    collector = InfinibandCollector(str(root))
    with pytest.raises(Unavailable):
        collector.collect(0.0)
    shutil.copytree(TREE / "class/infiniband/mlx5_2", root / "class/infiniband/mlx5_7")
    with pytest.raises(Unavailable):
        collector.collect(1.0)
    assert [p["device"] for p in _ports(collector.collect(RESCAN_SECONDS))] == ["mlx5_7"]


def _break(root: pathlib.Path) -> None:
    """Every port's data counters become folders: opened, they are not regular files (an EINVAL read)."""
    for device in ("mlx5_0", "mlx5_1", "mlx5_2"):
        for name in ("port_xmit_data", "port_rcv_data", "port_xmit_packets", "port_rcv_packets"):
            path = root / PORT.format(device) / "counters" / name
            path.unlink()
            path.mkdir()


def _mend(root: pathlib.Path) -> None:
    for device in ("mlx5_0", "mlx5_1", "mlx5_2"):
        for name in ("port_xmit_data", "port_rcv_data", "port_xmit_packets", "port_rcv_packets"):
            path = root / PORT.format(device) / "counters" / name
            path.rmdir()
            shutil.copy(TREE / PORT.format(device) / "counters" / name, path)


def test_nothing_readable_is_an_error_and_recovers(tmp_path):
    """When no data counter of any port reads, collect raises (the collector's error); mended, it reads again."""
    root = _copy(tmp_path)
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    _break(root)
    with pytest.raises(OSError, match="no data counter of any port could be read"):
        collector.collect(101.0)
    _mend(root)
    assert _ports(collector.collect(102.0))[0]["txBytes"] == 10_000_000_000


# ---------------------------------------------------------------- through the served app


def _service(root: pathlib.Path, **overrides: object):
    config = ServiceConfig(**{"node_id": "ib-node", "interval": 3600.0, "history": 5, "sys_root": str(root),
                              **overrides})
    return create_app(config)


async def test_served_snapshot_carries_the_fabric_in_rest_websocket_and_prometheus(aiohttp_client):
    """REST, the WebSocket frame and /metrics all show the fixture's ports, from the same snapshot."""
    client = await aiohttp_client(_service(TREE))
    (node,) = await (await client.get("/api/system/metrics")).json()
    ports = node["fabric"]["infiniband"]
    assert [p["device"] for p in ports] == ["mlx5_0", "mlx5_1", "mlx5_2"] and node["fabric"]["nvlink"] is None
    assert ports[0]["txBytes"] == 10_000_000_000 and ports[1]["state"] == "down"
    assert wire.snapshot_from_wire(node).fabric.infiniband.ports[0].tx_bytes == 10_000_000_000
    health = await (await client.get("/api/health")).json()
    assert health["collectors"]["infiniband"]["status"] == "ok" and "nvlink" not in health["collectors"]
    async with client.ws_connect(ws.WS_PATH) as conn:
        frames = [orjson.loads((await asyncio.wait_for(conn.receive(), DEADLINE)).data) for _ in range(2)]
    assert [f["type"] for f in frames] == ["info", "metrics"]
    assert frames[1]["data"]["fabric"] == node["fabric"]
    text = await (await client.get("/metrics")).text()
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    port0 = {"node_id": "ib-node", "device": "mlx5_0", "port": "1"}
    down = {"node_id": "ib-node", "device": "mlx5_1", "port": "1"}
    assert samples[("tracklab_sysmon_infiniband_transmit_bytes_total", frozenset(port0.items()))] == 1e10
    assert samples[("tracklab_sysmon_infiniband_receive_packets_total", frozenset(port0.items()))] == 4_882_812
    assert samples[("tracklab_sysmon_infiniband_rate_bytes_per_second", frozenset(port0.items()))] == 25e9
    assert samples[("tracklab_sysmon_infiniband_port_up", frozenset(down.items()))] == 0.0
    assert samples[("tracklab_sysmon_infiniband_port_errors_total",
                    frozenset({**down, "error": "link_downed"}.items()))] == 3
    assert samples[("tracklab_sysmon_infiniband_hw_events_total",
                    frozenset({**port0, "counter": "out_of_buffer"}.items()))] == 17
    info = {**port0, "link_layer": "InfiniBand", "state": "active", "physical_state": "link_up"}
    assert samples[("tracklab_sysmon_infiniband_port_info", frozenset(info.items()))] == 1.0


async def test_promtool_accepts_the_fabric_families(aiohttp_client):
    """`promtool check metrics` finds no problem in /metrics with InfiniBand ports in it."""
    promtool = require_command("promtool")
    client = await aiohttp_client(_service(TREE))
    text = await (await client.get("/metrics")).text()
    assert "tracklab_sysmon_infiniband_transmit_bytes_total{" in text
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_absent_rdma_is_unavailable_in_health_with_the_reason(aiohttp_client, tmp_path):
    """A service whose InfiniBand collector finds no class folder stays healthy and says why in /api/health."""
    collectors = (MemoryCollector(open_reader("/proc")), InfinibandCollector(str(tmp_path)))
    config = ServiceConfig(node_id="no-ib", interval=3600.0, history=5)
    client = await aiohttp_client(create_app(config, collectors=collectors))
    health = await (await client.get("/api/health")).json()
    assert health["status"] == "healthy" and health["collectors"]["infiniband"]["status"] == "unavailable"
    assert health["collectors"]["infiniband"]["lastError"] == (
        f"no RDMA driver loaded: {tmp_path}/class/infiniband is absent")
    (node,) = await (await client.get("/api/system/metrics")).json()
    assert node["fabric"] is None and node["memory"] is not None


async def test_failing_mid_run_marks_only_infiniband_error_and_it_recovers(aiohttp_client, tmp_path):
    """Counters that stop reading make infiniband `error` (its section null) while the rest is ok; mended, it is ok."""
    root = _copy(tmp_path)
    app = _service(root)
    client = await aiohttp_client(app)
    sampler = app[keys.SAMPLER]
    _break(root)
    await sampler.tick()
    health = await (await client.get("/api/health")).json()
    assert health["collectors"]["infiniband"]["status"] == "error"
    assert "no data counter of any port could be read" in health["collectors"]["infiniband"]["lastError"]
    others = {name: c["status"] for name, c in health["collectors"].items() if name != "infiniband"}
    assert others["cpu"] == "ok" and others["memory"] == "ok"
    (node,) = await (await client.get("/api/system/metrics")).json()
    assert node["fabric"] is None and node["cpu"] is not None
    _mend(root)
    await sampler.tick()
    health = await (await client.get("/api/health")).json()
    assert health["collectors"]["infiniband"]["status"] == "ok"
    (node,) = await (await client.get("/api/system/metrics")).json()
    assert node["fabric"]["infiniband"][0]["txBytes"] == 10_000_000_000


def test_captured_trees_get_the_collector_only_when_they_hold_rdma_devices(tmp_path):
    """default_collectors adds InfiniBand for a tree with class/infiniband, not for one without."""
    with_ib = [c.name for c in default_collectors("/proc", str(TREE))]
    without = [c.name for c in default_collectors("/proc", str(tmp_path))]
    assert "infiniband" in with_ib and "infiniband" not in without and "nvlink" not in with_ib


async def test_a_peer_node_fabric_reaches_this_node_typed(aiohttp_client):
    """A snapshot decoded from a peer's JSON keeps its fabric (snapshot_from_wire round-trips it)."""
    client = await aiohttp_client(_service(TREE))
    (node,) = await (await client.get("/api/system/metrics")).json()
    assert wire.snapshot_to_wire(wire.snapshot_from_wire(node)) == node
