"""InfiniBand's slow tiers keep what they made while their files read the same: a change is seen on the next read."""

from __future__ import annotations

import pathlib
import shutil

import pytest
from conftest import FIXTURES, native_module, open_under

from tracklab_sysmon.collectors.infiniband import HW_SECONDS, RESCAN_SECONDS, SLOW_SECONDS, InfinibandCollector
from tracklab_sysmon.collectors.infiniband_ports import PortsBackend
from tracklab_sysmon.collectors.infiniband_ports_py import PyCounterFiles, PyPortsMeter
from tracklab_sysmon.model import InfinibandErrors

TREE = FIXTURES / "infiniband-hca" / "sys"
PORT = "class/infiniband/mlx5_0/ports/1"


@pytest.fixture(params=["python", "cffi"])
def backend(request) -> PortsBackend:
    if request.param == "python":
        return PortsBackend(PyPortsMeter, PyCounterFiles)
    native_module()  # skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, when the helper is not built
    from tracklab_sysmon.collectors.infiniband_ports_cffi import CffiCounterFiles, CffiPortsMeter

    return PortsBackend(CffiPortsMeter, CffiCounterFiles)


def _write(root: pathlib.Path, name: str, value: object) -> None:
    (root / PORT / name).write_text(f"{value}\n")


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copytree(TREE, tmp_path / "sys")
    return tmp_path / "sys"


def test_a_slow_read_that_reads_the_same_keeps_the_records(root, backend):
    """Slow and hw tiers read again with nothing changed: the port's errors and hw_counters are the very records of
    the first read, and so is what the collector made of the slow tier."""
    collector = InfinibandCollector(str(root), backend)
    first = collector.collect(100.0).ports[0]
    slow = collector._ports[0].slow
    again = collector.collect(100.0 + HW_SECONDS).ports[0]  # past both periods: both tiers were read again
    assert again == first
    assert again.errors is first.errors and again.hw_counters is first.hw_counters
    assert collector._ports[0].slow is slow


def test_a_changed_error_counter_is_seen_and_the_texts_parse_is_kept(root, backend):
    """symbol_error rises: the next slow read has it in a new error record; the link details read the same."""
    collector = InfinibandCollector(str(root), backend)
    first = collector.collect(100.0).ports[0]
    texts = collector._ports[0].slow.read[0]
    _write(root, "counters/symbol_error", 9)
    assert collector.collect(101.0).ports[0].errors is first.errors  # not due yet
    port = collector.collect(100.0 + SLOW_SECONDS).ports[0]
    assert port.errors == InfinibandErrors(9, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0) != first.errors
    assert (port.link_layer, port.physical_state, port.rate) == ("InfiniBand", "link_up", 200e9)
    assert collector._ports[0].slow.read[0] is texts  # the texts read the same: their parse was kept
    later = collector.collect(100.0 + 2 * SLOW_SECONDS).ports[0]
    assert later.errors is port.errors  # 9 read again: the new record is kept in turn


@pytest.mark.parametrize(("name", "text", "field", "value"), [
    ("link_layer", "Ethernet", "link_layer", "Ethernet"),
    ("rate", "400 Gb/sec (4X NDR)", "rate", 400e9),
    ("phys_state", "4: PortConfigurationTraining", "physical_state", "port_configuration_training"),
    ("rate", "fast", "rate", None),
])
def test_a_changed_text_is_seen_and_the_error_record_is_kept(root, backend, name, text, field, value):
    """A slow-tier text rewritten in place is parsed again on the next slow read; the error counters read the same,
    so the port keeps its error record."""
    collector = InfinibandCollector(str(root), backend)
    first = collector.collect(100.0).ports[0]
    _write(root, name, text)
    port = collector.collect(100.0 + SLOW_SECONDS).ports[0]
    assert getattr(port, field) == value and port.errors is first.errors
    assert port._replace(**{field: getattr(first, field)}) == first


def test_a_state_change_reads_the_slow_tier_at_once(root, backend):
    """The link going down brings the slow tier in on that very tick: the new rate is seen, errors kept as made."""
    collector = InfinibandCollector(str(root), backend)
    first = collector.collect(100.0).ports[0]
    _write(root, "state", "1: DOWN")
    _write(root, "rate", "10 Gb/sec (4X)")
    port = collector.collect(101.0).ports[0]
    assert (port.state, port.rate, port.errors) == ("down", 10e9, first.errors)
    assert port.errors is first.errors


def test_changed_hw_counters_are_new_records_and_unchanged_ones_are_kept(root, backend):
    """An hw_counters file that changed is seen at the next hw read in a new tuple; read the same, it is kept."""
    collector = InfinibandCollector(str(root), backend)
    first = collector.collect(100.0).ports[0]
    _write(root, "hw_counters/out_of_buffer", 18)
    port = collector.collect(100.0 + HW_SECONDS).ports[0]
    assert dict((c.name, c.value) for c in port.hw_counters)["out_of_buffer"] == 18
    assert port.hw_counters != first.hw_counters and len(port.hw_counters) == len(first.hw_counters) == 7
    assert collector.collect(100.0 + 2 * HW_SECONDS).ports[0].hw_counters is port.hw_counters


def test_a_rescan_that_finds_the_same_ports_leaves_the_meter_alone(root, backend):
    """The usual rescan finds the very ports it knew: the meter keeps its ports as set. One port swapped for another
    at the same count is a change: the new port is read from that rescan on, the one gone is closed."""
    collector = InfinibandCollector(str(root), backend)
    collector.collect(100.0)
    meter_ports = collector._meter._ports
    collector.collect(100.0 + RESCAN_SECONDS)
    assert collector._meter._ports is meter_ports
    del meter_ports  # it would keep the gone port's per-tick files open
    shutil.rmtree(root / "class/infiniband/mlx5_1")
    shutil.copytree(root / "class/infiniband/mlx5_0", root / "class/infiniband/mlx5_5")
    (root / "class/infiniband/mlx5_5/ports/1/counters/port_xmit_data").write_text("7\n")
    ports = collector.collect(100.0 + 2 * RESCAN_SECONDS).ports
    assert [(p.device, p.tx_bytes) for p in ports] == [("mlx5_0", 10_000_000_000), ("mlx5_2", 3_000_000),
                                                       ("mlx5_5", 28)]
    assert not [path for path in open_under(root) if "/mlx5_1/" in path]
