"""AWS Neuron: the neuron-monitor report parser on the documented format, and the collector over the stand-in."""

from __future__ import annotations

import json
import pathlib

import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_supervise import wait_for

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.neuron import NeuronCollector, monitor_config
from tracklab_sysmon.collectors.neuron_report import neuron_devices, parse_report
from tracklab_sysmon.collectors.supervise import Backoff
from tracklab_sysmon.errors import ParseError, SourceError, Unavailable
from tracklab_sysmon.model import EccErrors, NeuronCoreUse, NeuronErrorCounts

STANDIN = FIXTURES / "neuron-monitor"
REPORTS = (STANDIN / "reports-inf2.jsonl").read_text().splitlines()
GIB = 1 << 30
CORE_BYTES = 193986816 + 176285056 + 1048576  # constants + model code + runtime memory of one core of pid 4242


def _doc(n: int = 0) -> dict:
    return json.loads(REPORTS[n])


def _devices(doc: dict) -> tuple:
    report = parse_report(json.dumps(doc))
    assert report.hardware is not None, report.hardware_error
    return neuron_devices(report, report.hardware)


def test_report_0_gives_one_npu_per_device_with_core_utilisation_and_memory():
    """Six devices of two cores; a device's utilisation is the mean of its cores (idle cores at 0 %)."""
    devices = _devices(_doc(0))
    assert [(d.id, d.type, d.vendor, d.name) for d in devices] == [(i, "npu", "aws", "inferentia2") for i in range(6)]
    assert [d.utilization for d in devices] == [42.02, 15.5, 0.0, 32.0, 0.0, 0.0]
    used = [2 * CORE_BYTES + 2 * 20971520, 2 * CORE_BYTES + 2 * 41943040, 0, 104857600, 0, 0]
    assert [d.memory.used for d in devices] == used
    assert {d.memory.total for d in devices} == {32 * GIB}
    assert devices[3].memory.percentage == round(100 * 104857600 / (32 * GIB), 2)
    assert all(d.temperature is None and d.power is None and d.fan_speed is None for d in devices)


def test_details_carry_cores_ecc_execution_errors_and_the_runtimes():
    """Device 1: its cores 2 and 3, SRAM ECC from the hardware counters, pid 4242's error summary."""
    one = _devices(_doc(0))[1].details
    assert one.cores == (NeuronCoreUse(2, 10.5, CORE_BYTES + 41943040), NeuronCoreUse(3, 20.5, CORE_BYTES + 41943040))
    assert (one.ecc_errors, one.sram_ecc_errors) == (EccErrors(0, 0), EccErrors(3, 0))
    assert one.execution_errors == NeuronErrorCounts(numerical=1)
    assert one.runtimes == (4242,)
    idle = _devices(_doc(0))[2].details
    assert (idle.execution_errors, idle.runtimes) == (None, ())  # no application: no error summary at all


def test_later_reports_bring_their_own_values():
    """Report 2: every core idle, device 1's DRAM ECC count at 2 and a hardware error for pid 4242."""
    devices = _devices(_doc(2))
    assert [d.utilization for d in devices] == [0.0] * 6
    assert devices[1].details.ecc_errors == EccErrors(2, 0)
    assert devices[0].details.execution_errors == NeuronErrorCounts(numerical=1, hardware=1)


def test_a_runtime_whose_counters_failed_makes_utilisation_unknown_not_zero():
    """A metric group with an error string: the cores it would have covered are null, memory stays known."""
    doc = _doc(0)
    doc["neuron_runtime_data"][0]["report"]["neuroncore_counters"]["error"] = "nrt_get_counters failed"
    devices = _devices(doc)
    assert [d.utilization for d in devices] == [None] * 6
    assert devices[0].memory.used == 2 * CORE_BYTES + 2 * 20971520


def test_hardware_error_is_reported_not_guessed():
    """neuron_hardware_info.error (no driver) leaves no hardware and keeps the message."""
    doc = _doc(0)
    doc["neuron_hardware_info"] = {"error": "neuron driver is not loaded"}
    report = parse_report(json.dumps(doc))
    assert (report.hardware, report.hardware_error) == (None, "neuron driver is not loaded")


@pytest.mark.parametrize("line", ["", "not json", "[1, 2]", '"text"', "{\"neuron_runtime_data\": ["])
def test_lines_that_are_not_a_json_object_raise_parse_error(line):
    """Garbage is a ParseError with the line quoted, never another exception."""
    with pytest.raises(ParseError, match="neuron-monitor printed"):
        parse_report(line)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
_keys = st.sampled_from(["neuron_runtime_data", "system_data", "neuron_hardware_info", "report", "error",
                         "neuroncore_counters", "neuroncores_in_use", "0", "neuron_device_count", "pid"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _json, max_size=5))
def test_any_json_object_parses_without_raising(doc):
    """Whatever shape the report has, parsing and building devices only ever yields values or nulls."""
    report = parse_report(json.dumps(doc))
    if report.hardware is not None:
        for device in neuron_devices(report, report.hardware):
            wire.encode(wire.accelerator_to_wire(device))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 100, allow_nan=False).map(lambda v: round(v, 2)), min_size=12, max_size=12))
def test_generated_utilisations_come_back_per_core_and_as_device_means(values):
    """A report with every core of the inf2 in use gives each core its value and each device their mean."""
    doc = _doc(0)
    doc["neuron_runtime_data"] = [{"pid": 1, "error": "", "report": {"neuroncore_counters": {
        "error": "", "neuroncores_in_use": {str(c): {"neuroncore_utilization": v} for c, v in enumerate(values)}}}}]
    devices = _devices(doc)
    assert [c.utilization for d in devices for c in d.details.cores] == values
    assert [d.utilization for d in devices] == [round((values[2 * i] + values[2 * i + 1]) / 2, 2) for i in range(6)]


def test_configuration_asks_only_the_groups_read_on_one_period():
    """neuron-monitor runs with the service's interval (whole seconds, at least 1) and four metric groups."""
    config = monitor_config(2.4)
    assert config["period"] == "2s" and monitor_config(0.2)["period"] == "1s"
    assert [m["type"] for m in config["neuron_runtimes"][0]["metrics"]] == [
        "neuroncore_counters", "memory_used", "execution_stats"]
    assert config["system_metrics"] == [{"type": "neuron_hw_counters"}]


# ---------------------------------------------------------------- the collector over the stand-in


@pytest.fixture
def standin(tmp_path: pathlib.Path, monkeypatch) -> pathlib.Path:
    """The stand-in first on PATH, fast, steered through a control file (returned)."""
    control = tmp_path / "neuron-control"
    control.write_text("report 0")
    monkeypatch.setenv("PATH", f"{STANDIN}:{pathlib.os.environ['PATH']}")
    monkeypatch.setenv("NEURON_STANDIN_PERIOD", "0.05")
    monkeypatch.setenv("NEURON_STANDIN_CONTROL", str(control))
    return control


def _collect(collector: NeuronCollector):
    """The first samples the collector gives once the stand-in has printed."""
    result: list = []

    def ready() -> bool:
        try:
            result[:] = [collector.collect(0.0)]
        except Unavailable:
            return False
        return True

    wait_for(ready, "neuron-monitor's first report")
    return result[0]


def test_missing_neuron_monitor_is_unavailable_with_where_it_looked(monkeypatch, tmp_path):
    """No neuron-monitor on PATH nor in /opt/aws/neuron/bin: unavailable, and no child started."""
    monkeypatch.setenv("PATH", str(tmp_path))
    collector = NeuronCollector()
    with pytest.raises(Unavailable, match=r"^neuron-monitor not found \(looked in PATH, /opt/aws/neuron/bin\)$"):
        collector.collect(0.0)
    assert collector._source._child is None


def test_collector_reads_the_stand_in_and_follows_its_reports(standin):
    """The child's latest report is what a tick returns; a new report replaces it."""
    collector = NeuronCollector(backoff=Backoff(0.05, 0.2))
    try:
        assert [d.utilization for d in _collect(collector)] == [42.02, 15.5, 0.0, 32.0, 0.0, 0.0]
        standin.write_text("report 1")
        wait_for(lambda: collector.collect(0.0)[0].utilization == 55.0, "report 1")
        assert collector.collect(0.0)[1].details.ecc_errors == EccErrors(1, 0)
    finally:
        collector.close()


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("exit 3", "neuron-monitor exited with status 3 (stderr: neuron-monitor stand-in: told to exit); restarting"),
        ("garbage", "neuron-monitor printed a line that is not JSON"),
        ("hang", "neuron-monitor printed nothing for 0.5 s (hung; killed); restarting"),
    ],
)
def test_exit_garbage_and_hang_are_errors_that_recover(standin, mode, reason):
    """Each failure of the child is a SourceError naming it; once the child reports again, so does the tick."""
    collector = NeuronCollector(stall_after=0.5, backoff=Backoff(0.05, 0.2))
    try:
        _collect(collector)
        standin.write_text(mode)

        def failing() -> bool:
            try:
                collector.collect(0.0)
            except SourceError as exc:
                return reason in str(exc)
            return False

        wait_for(failing, f"the {mode} to show")
        standin.write_text("report 2")
        wait_for(lambda: _ok(collector) and collector.collect(0.0)[1].details.ecc_errors == EccErrors(2, 0),
                 "recovery")
    finally:
        collector.close()


def _ok(collector: NeuronCollector) -> bool:
    try:
        collector.collect(0.0)
    except (SourceError, Unavailable):
        return False
    return True


def test_no_device_reported_is_unavailable(standin, tmp_path, monkeypatch):
    """A report whose hardware info carries the driver's error makes the collector unavailable with it."""
    doc = _doc(0)
    doc["neuron_hardware_info"] = {"error": "no neuron device found"}
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "neuron-monitor").write_text(f"#!/bin/sh\nwhile :; do echo '{json.dumps(doc)}'; sleep 0.05; done\n")
    (fake / "neuron-monitor").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{pathlib.os.environ['PATH']}")
    collector = NeuronCollector()
    try:
        def says_no_device() -> bool:
            try:
                collector.collect(0.0)
            except Unavailable as exc:
                return str(exc) == "neuron-monitor sees no Neuron device: no neuron device found"
            return False

        wait_for(says_no_device, "the hardware error")
    finally:
        collector.close()


def test_close_stops_the_child_and_removes_its_configuration(standin):
    """close() ends neuron-monitor and deletes the configuration file it was started with."""
    collector = NeuronCollector()
    _collect(collector)
    child = collector._source._child
    assert child is not None
    pid, config = child.state().pid, pathlib.Path(child.argv[-1])
    assert json.loads(config.read_text())["period"] == "1s"
    collector.close()
    assert not config.exists()
    assert child.state().running is False and pid is not None
