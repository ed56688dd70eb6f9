"""EFA ports (no counters/ folder): data bytes and packets, and their rates, from the efa driver's hw_counters."""

from __future__ import annotations

import pathlib
import shutil

from conftest import FIXTURES
from prometheus_client.parser import text_string_to_metric_families

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.base import Partial
from tracklab_sysmon.collectors.infiniband import InfinibandCollector
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.model import FabricSample
from tracklab_sysmon.server import create_app

EFA = FIXTURES / "efa-p5" / "sys"
HCA = FIXTURES / "infiniband-hca" / "sys"
HW = "class/infiniband/rdmap79s0/ports/1/hw_counters"


def _copy(tmp_path: pathlib.Path, *trees: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "sys"
    for tree in trees:
        shutil.copytree(tree, root, dirs_exist_ok=True)
    return root


def _ports(value: object) -> list[dict]:
    sample = value.value if isinstance(value, Partial) else value
    return wire.fabric_to_wire(FabricSample(infiniband=sample))["infiniband"]


def test_efa_port_reports_bytes_and_packets_from_hw_counters():
    """The fixture's tx_bytes/rx_bytes are bytes as they stand (not words x 4), tx_pkts/rx_pkts are packets;
    state and rate come from the port files, and every port statistic stays in hwCounters."""
    value = InfinibandCollector(str(EFA)).collect(0.0)
    assert not isinstance(value, Partial)
    [port] = _ports(value)
    assert (port["device"], port["port"], port["linkLayer"]) == ("rdmap79s0", 1, "Unknown")
    assert (port["state"], port["physicalState"], port["rate"]) == ("active", "link_up", 100e9)
    assert (port["txBytes"], port["rxBytes"]) == (123_456_789_012, 98_765_432_100)
    assert (port["txPackets"], port["rxPackets"]) == (20_000_000, 18_000_000)
    assert (port["txRate"], port["rxRate"], port["txPacketsRate"], port["rxPacketsRate"]) == (0.0, 0.0, 0.0, 0.0)
    assert port["errors"]["symbolErrors"] is None  # no PMA: the IB error counters do not exist
    assert port["hwCounters"]["rdma_read_bytes"] == 61_234_567_890
    assert port["hwCounters"]["rdma_write_recv_bytes"] == 38_888_888_890 and "lifespan" not in port["hwCounters"]


def test_efa_rates_are_bytes_per_second_read_every_tick(tmp_path):
    """hw_counters data files are read each tick (not on the 30 s hw tier): a 2 s step gives delta / 2 bytes/s."""
    root = _copy(tmp_path, EFA)
    collector = InfinibandCollector(str(root))
    collector.collect(100.0)
    (root / HW / "tx_bytes").write_text(f"{123_456_789_012 + 5_000_000_000}\n")
    (root / HW / "rx_pkts").write_text(f"{18_000_000 + 3_000}\n")
    [port] = _ports(collector.collect(102.0))
    assert (port["txRate"], port["rxRate"]) == (2_500_000_000.0, 0.0)
    assert (port["rxPacketsRate"], port["txBytes"]) == (1_500.0, 128_456_789_012)


def test_hca_ports_beside_efa_keep_their_word_counters(tmp_path):
    """On one tree, mlx5 ports still count 4-byte words from counters/ while the EFA port counts bytes."""
    root = _copy(tmp_path, HCA, EFA)
    ports = {p["device"]: p for p in _ports(InfinibandCollector(str(root)).collect(0.0))}
    assert ports["mlx5_0"]["txBytes"] == 10_000_000_000 and ports["rdmap79s0"]["txBytes"] == 123_456_789_012


def test_a_port_with_part_of_the_data_statistics_is_null_not_a_problem(tmp_path):
    """Without all four data statistics the port is read as one without counters: null data, no degraded state."""
    root = _copy(tmp_path, EFA)
    (root / HW / "rx_pkts").unlink()
    value = InfinibandCollector(str(root)).collect(0.0)
    assert not isinstance(value, Partial)
    [port] = _ports(value)
    assert (port["txBytes"], port["rxBytes"], port["txRate"]) == (None, None, None)
    assert port["hwCounters"]["tx_bytes"] == 123_456_789_012


async def test_served_efa_port_reaches_rest_and_prometheus(aiohttp_client):
    """The real app on the EFA tree: REST has the port's bytes, /metrics the transmit bytes counter."""
    config = ServiceConfig(node_id="efa-node", interval=3600.0, history=5, sys_root=str(EFA))
    client = await aiohttp_client(create_app(config))
    (node,) = await (await client.get("/api/system/metrics")).json()
    [port] = node["fabric"]["infiniband"]
    assert (port["device"], port["txBytes"], port["rxPackets"]) == ("rdmap79s0", 123_456_789_012, 18_000_000)
    text = await (await client.get("/metrics")).text()
    samples = {(s.name, frozenset(s.labels.items())): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    labels = frozenset({"node_id": "efa-node", "device": "rdmap79s0", "port": "1"}.items())
    assert samples[("tracklab_sysmon_infiniband_transmit_bytes_total", labels)] == 123_456_789_012
    assert samples[("tracklab_sysmon_infiniband_receive_packets_total", labels)] == 18_000_000
