"""Google TPU: readings from libtpu's metrics messages, and the collector against a stand-in gRPC service."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_supervise import wait_for
from tpu_standin import GIB, V5E, StandInServer, StandInService, response

from tracklab_sysmon import _tpu
from tracklab_sysmon._tpu_proto import tpu_metric_service_pb2 as pb
from tracklab_sysmon.collectors.tpu import TpuCollector, find_tpu_chips
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.errors import ConfigError, SourceError, Unavailable


def _readings(metrics: dict) -> tuple[_tpu.TpuReading, ...]:
    return _tpu.readings_from(*(response(name, metrics.get(name, {})) for name in
                                (_tpu.MEMORY_USED, _tpu.MEMORY_TOTAL, _tpu.DUTY_CYCLE)))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_one_reading_per_device_with_hbm_and_duty_cycle():
    """Each device's HBM used/total (bytes) and duty cycle (%) come from the three metrics by device id."""
    assert _readings(V5E) == (
        _tpu.TpuReading(0, 2 * GIB, 16 * GIB, 87.5), _tpu.TpuReading(1, 3 * GIB, 16 * GIB, 12.25),
        _tpu.TpuReading(2, 0, 16 * GIB, 0.0), _tpu.TpuReading(3, 512 << 20, 16 * GIB, 100.0),
    )


def test_per_chip_duty_cycle_is_repeated_for_each_core_of_the_chip():
    """v2/v3 report HBM per TensorCore and duty cycle per chip: cores 0-1 take chip 0's value, 2-3 chip 1's."""
    metrics = {_tpu.MEMORY_USED: {0: 1, 1: 2, 2: 3, 3: 4}, _tpu.MEMORY_TOTAL: {0: 8, 1: 8, 2: 8, 3: 8},
               _tpu.DUTY_CYCLE: {0: 40.0, 1: 60.0}}
    assert [r.duty_cycle for r in _readings(metrics)] == [40.0, 40.0, 60.0, 60.0]
    odd = {**metrics, _tpu.DUTY_CYCLE: {0: 1.0, 1: 2.0, 2: 3.0}}  # no way to tell which chip a core is on
    assert [r.duty_cycle for r in _readings(odd)] == [None] * 4


def test_device_ids_from_string_and_key_value_attributes():
    """Newer libtpu names the device in a key-value list (`device_ordinal`, a digit string); both read."""
    def point(attr: pb.AttrValue, value: int) -> pb.Metric:
        return pb.Metric(attribute=pb.Attribute(key="device", value=attr), gauge=pb.Gauge(as_int=value))

    kv = pb.AttrValue(kvlist_attr=pb.KeyValueList(attributes=[
        pb.Attribute(key="core_type", value=pb.AttrValue(string_attr="tensorcore")),
        pb.Attribute(key="device_ordinal", value=pb.AttrValue(string_attr="5"))]))
    used = pb.MetricResponse(metric=pb.TPUMetric(metrics=[point(kv, 7), point(pb.AttrValue(string_attr="4"), 6),
                                                          point(pb.AttrValue(string_attr="x"), 9)]))
    readings = _tpu.readings_from(used, pb.MetricResponse(), pb.MetricResponse())
    assert readings == (_tpu.TpuReading(4, 6, None, None), _tpu.TpuReading(5, 7, None, None))


def test_values_out_of_range_or_of_another_kind_are_null():
    """A duty cycle above 100 %, a negative byte count or a string gauge is null, never clamped."""
    metrics = {_tpu.MEMORY_USED: {0: -5}, _tpu.MEMORY_TOTAL: {0: 8}, _tpu.DUTY_CYCLE: {0: 150.0}}
    assert _readings(metrics) == (_tpu.TpuReading(0, None, 8, None),)
    text = pb.MetricResponse(metric=pb.TPUMetric(metrics=[pb.Metric(
        attribute=pb.Attribute(value=pb.AttrValue(int_attr=0)), gauge=pb.Gauge(as_string="87%"))]))
    assert _tpu.readings_from(text, text, text) == (_tpu.TpuReading(0, None, None, None),)


_attr = st.one_of(st.builds(lambda v: pb.AttrValue(int_attr=v), st.integers(-(2**63), 2**63 - 1)),
                  st.builds(lambda v: pb.AttrValue(string_attr=v), st.text(max_size=8)),
                  st.builds(lambda: pb.AttrValue()))
_gauge = st.one_of(st.builds(lambda v: pb.Gauge(as_int=v), st.integers(-(2**63), 2**63 - 1)),
                   st.builds(lambda v: pb.Gauge(as_double=v), st.floats()),
                   st.builds(lambda v: pb.Gauge(as_string=v), st.text(max_size=4)))
_response = st.lists(st.builds(lambda a, g: pb.Metric(attribute=pb.Attribute(value=a), gauge=g), _attr, _gauge),
                     max_size=6).map(lambda ms: pb.MetricResponse(metric=pb.TPUMetric(metrics=ms)))


@settings(max_examples=300, deadline=None)
@given(_response, _response, _response)
def test_any_messages_give_readings_in_range_or_null(used, total, duty):
    """Whatever the service sends, readings are sorted devices with bytes >= 0 and duty cycles in 0-100 or null."""
    readings = _tpu.readings_from(used, total, duty)
    assert [r.device for r in readings] == sorted({r.device for r in readings})
    for r in readings:
        assert r.memory_used is None or r.memory_used >= 0
        assert r.duty_cycle is None or 0.0 <= r.duty_cycle <= 100.0


def _reference_value(metric: pb.Metric) -> float | None:
    if metric.WhichOneof("measure") != "gauge":
        return None
    kind = metric.gauge.WhichOneof("value")
    return float(metric.gauge.as_int) if kind == "as_int" else metric.gauge.as_double if kind == "as_double" else None


_ids = st.integers(-3, 6) | st.integers(-(2**63), 2**63 - 1)
_texts = st.sampled_from(["0", "5", "x", "²", "1234567", "007", ""]) | st.text(max_size=3)
_plain_attr = st.one_of(st.builds(lambda v: pb.AttrValue(int_attr=v), _ids),
                        st.builds(lambda v: pb.AttrValue(string_attr=v), _texts),
                        st.builds(lambda v: pb.AttrValue(bool_attr=v), st.booleans()),
                        st.builds(lambda v: pb.AttrValue(double_attr=v), st.floats()),
                        st.builds(lambda v: pb.AttrValue(bytes_attr=v), st.binary(max_size=2)),
                        st.builds(lambda v: pb.AttrValue(array_attr=pb.ArrayAttrValue(attrs=[v])),
                                  st.builds(lambda v: pb.AttrValue(int_attr=v), _ids)),
                        st.just(pb.AttrValue()))
_any_attr = _plain_attr | st.builds(
    lambda pairs: pb.AttrValue(kvlist_attr=pb.KeyValueList(attributes=pairs)),
    st.lists(st.builds(lambda k, v: pb.Attribute(key=k, value=v), st.sampled_from(["device_ordinal", "core_type"]),
                       _plain_attr), max_size=3))
_measure = st.one_of(st.builds(lambda v: {"gauge": pb.Gauge(as_int=v)}, st.integers(-(2**63), 2**63 - 1)),
                     st.builds(lambda v: {"gauge": pb.Gauge(as_double=v)}, st.floats()),
                     st.builds(lambda v: {"gauge": pb.Gauge(as_string=v)}, st.text(max_size=2)),
                     st.builds(lambda v: {"gauge": pb.Gauge(as_bool=v)}, st.booleans()),
                     st.just({"gauge": pb.Gauge()}),
                     st.builds(lambda v: {"counter": pb.Counter(as_int=v)}, st.integers(0, 2**64 - 1)),
                     st.builds(lambda v: {"counter": pb.Counter(as_double=v)}, st.floats()),
                     st.just({}))
_points = st.lists(st.builds(lambda a, m, keyed: pb.Metric(attribute=pb.Attribute(value=a), **m) if keyed
                             else pb.Metric(**m), _any_attr, _measure, st.booleans()), max_size=6)


@settings(max_examples=500, deadline=None)
@given(_points)
def test_each_points_device_and_value_are_read_as_its_fields_say(points):
    """Any points (every attribute kind, key-value lists, gauges of each kind, counters, no measure, no attribute): the
    values per device are what each point's fields say, the last point of a device winning (NaN compared as such)."""
    expected: dict[int, float | None] = {}
    for metric in points:
        device = _tpu._device_of(metric.attribute.value)  # every attribute kind, read field by field
        if device is not None:
            expected[device] = _reference_value(metric)
    found = _tpu.by_device(pb.MetricResponse(metric=pb.TPUMetric(metrics=points)))
    assert list(found) == list(expected)
    assert [repr(v) for v in found.values()] == [repr(v) for v in expected.values()]


# ---------------------------------------------------------------- finding TPUs and the collector


def _pci(root: pathlib.Path, slot: str, vendor: str, device: str) -> None:
    folder = root / "bus/pci/devices" / slot
    folder.mkdir(parents=True)
    (folder / "vendor").write_text(vendor + "\n")
    (folder / "device").write_text(device + "\n")


def test_tpu_chips_are_found_by_pci_vendor(tmp_path):
    """Google's PCI vendor id with the v5e device id is a "v5e"; other vendors are ignored."""
    _pci(tmp_path, "0000:00:04.0", "0x1ae0", "0x0063")
    _pci(tmp_path, "0000:00:05.0", "0x1ae0", "0x0063")
    _pci(tmp_path, "0000:00:06.0", "0x10de", "0x2330")
    assert find_tpu_chips(str(tmp_path)) == ("v5e", "v5e")


def test_no_tpu_on_the_bus_is_unavailable_without_loading_grpc(tmp_path):
    """Without a TPU and without --tpu-metrics-addr the collector says so and never imports grpcio."""
    code = ("import sys; from tracklab_sysmon.collectors.tpu import TpuCollector\n"
            "from tracklab_sysmon.errors import Unavailable\n"
            f"try:\n    TpuCollector({str(tmp_path)!r}).collect(0.0)\nexcept Unavailable as e:\n    print(e)\n"
            "print('grpc' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.splitlines() == [f"no Google TPU (PCI vendor 0x1ae0) under {tmp_path}/bus/pci/devices", "False"]


def test_without_the_tpu_extra_the_collector_says_how_to_get_it(tmp_path):
    """The tpu extra missing (hpack not importable) is unavailable, naming the extra."""
    code = ("import sys; sys.modules['hpack'] = None\n"
            "from tracklab_sysmon.collectors.tpu import TpuCollector\nfrom tracklab_sysmon.errors import Unavailable\n"
            "try:\n    TpuCollector(address='127.0.0.1:1').collect(0.0)\nexcept Unavailable as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == ("protobuf/hpack/hyperframe are not installed (import of hpack halted; None in sys.modules); "
                           "pip install 'tracklab-sysmon[tpu]'")


def test_the_collector_never_imports_grpcio(server):
    """The service asks the metrics service without grpcio (its import alone costs 20 MiB): not even loaded."""
    code = ("import sys\nfrom tracklab_sysmon.collectors.tpu import TpuCollector\n"
            f"c = TpuCollector('/nonexistent', address={server.address!r})\n"
            "import time\nfor _ in range(100):\n    try:\n        print(len(c.collect(0.0))); break\n"
            "    except Exception:\n        time.sleep(0.05)\n"
            "print('grpc' in sys.modules, 'hyperframe' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["4", "False", "True"]


def test_an_absent_service_is_unavailable_and_stays_on_the_loop():
    """Nothing listening: each tick is unavailable with gRPC's reason; the collector stays inline (short probe)."""
    collector = TpuCollector("/nonexistent", address=f"127.0.0.1:{_free_port()}")
    try:
        for _ in range(3):
            with pytest.raises(Unavailable, match=r"^no TPU runtime metrics service answers at 127\.0\.0\.1:\d+ "
                                                  r"\(libtpu serves it only while .*\): UNAVAILABLE: "):
                collector.collect(0.0)
        assert collector.blocking is False
    finally:
        collector.close()


@pytest.fixture
def server():
    running = StandInServer(StandInService()).start()
    yield running
    running.stop()


def _first(collector: TpuCollector) -> tuple:
    got: list = []

    def ready() -> bool:
        try:
            got[:] = [collector.collect(0.0)]
        except Unavailable:
            return False
        return True

    wait_for(ready, "the channel to connect")
    return got[0]


def test_the_collector_reads_the_stand_in_service(server):
    """Four v5e devices: type tpu, vendor google, duty cycle as utilisation, HBM as memory; then off the loop."""
    collector = TpuCollector("/nonexistent", address=server.address)
    try:
        devices = _first(collector)
        assert [(d.id, d.type, d.vendor, d.name) for d in devices] == [(i, "tpu", "google", "Google TPU")
                                                                       for i in range(4)]
        assert [d.utilization for d in devices] == [87.5, 12.25, 0.0, 100.0]
        assert [(d.memory.used, d.memory.total, d.memory.percentage) for d in devices][1] == (3 * GIB, 16 * GIB, 18.75)
        assert (devices[0].temperature, devices[0].power) == (None, None)
        assert collector.blocking is True
        assert sorted(set(server.service.calls)) == sorted([_tpu.MEMORY_USED, _tpu.MEMORY_TOTAL, _tpu.DUTY_CYCLE])
        asked = len(server.service.calls)
        collector.collect(1.0)
        collector.collect(2.0)
        assert server.service.calls[asked:] == [_tpu.DUTY_CYCLE] * 2  # used and total HBM are kept
    finally:
        collector.close()


def test_total_hbm_is_asked_again_once_a_minute_of_the_sampler_clock(server):
    """Total HBM is asked on the first read, kept for TOTAL_SECONDS of the clock `collect` is given, then asked
    again; a changed total shows from then on."""
    collector = TpuCollector("/nonexistent", address=server.address)
    try:
        _first(collector)  # at 0.0
        server.service.metrics[_tpu.MEMORY_TOTAL] = dict.fromkeys(range(4), 32 * GIB)
        asked = len(server.service.calls)
        assert collector.collect(_tpu.TOTAL_SECONDS - 1)[0].memory.total == 16 * GIB
        assert server.service.calls[asked:] == [_tpu.DUTY_CYCLE, _tpu.MEMORY_USED]
        assert collector.collect(_tpu.TOTAL_SECONDS)[0].memory.total == 32 * GIB
        assert server.service.calls[asked + 2:] == [_tpu.DUTY_CYCLE, _tpu.MEMORY_TOTAL]
    finally:
        collector.close()


def test_used_hbm_is_asked_every_few_seconds_and_the_duty_cycle_every_tick(server):
    """One call a tick (the duty cycle); used HBM is kept for USED_SECONDS of the sampler clock, then asked
    again, and a new value shows from then on."""
    collector = TpuCollector("/nonexistent", address=server.address)
    try:
        _first(collector)  # at 0.0
        server.service.metrics[_tpu.MEMORY_USED] = dict.fromkeys(range(4), 4 * GIB)
        server.service.metrics[_tpu.DUTY_CYCLE] = dict.fromkeys(range(4), 25.0)
        asked = len(server.service.calls)
        devices = collector.collect(_tpu.USED_SECONDS - 1)
        assert (devices[0].memory.used, devices[0].utilization) == (2 * GIB, 25.0)
        assert server.service.calls[asked:] == [_tpu.DUTY_CYCLE]
        devices = collector.collect(_tpu.USED_SECONDS)
        assert (devices[3].memory.used, devices[3].memory.percentage) == (4 * GIB, 25.0)
        assert server.service.calls[asked + 1:] == [_tpu.DUTY_CYCLE, _tpu.MEMORY_USED]
    finally:
        collector.close()


def test_losing_the_service_is_an_error_and_its_return_recovers(server):
    """Once reached, a vanished service is an error that fails fast; a restarted one is read again."""
    collector = TpuCollector("/nonexistent", address=server.address)
    try:
        _first(collector)
        server.stop()
        with pytest.raises(SourceError, match=r"^TPU runtime metrics service at 127\.0\.0\.1:\d+: UNAVAILABLE: "):
            collector.collect(0.0)
        server.service.metrics = {**V5E, _tpu.DUTY_CYCLE: {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}}
        server.start()

        def back() -> bool:
            try:
                return [d.utilization for d in collector.collect(0.0)] == [1.0, 2.0, 3.0, 4.0]
            except SourceError:
                return False

        wait_for(back, "the service to be read again")
    finally:
        collector.close()


def test_a_wedged_service_costs_one_deadline(server):
    """A call the service never answers ends at the deadline with DEADLINE_EXCEEDED, not a hang."""
    collector = TpuCollector("/nonexistent", address=server.address, call_seconds=0.2)
    try:
        _first(collector)
        server.service.hang.set()
        with pytest.raises(SourceError, match="DEADLINE_EXCEEDED"):
            collector.collect(0.0)
    finally:
        server.service.release.set()
        collector.close()


def test_an_unknown_metric_is_the_services_error_verbatim(server):
    """A libtpu that does not know a metric answers NOT_FOUND; the reason quotes it."""
    collector = TpuCollector("/nonexistent", address=server.address)
    try:
        _first(collector)
        server.service.metrics = {k: v for k, v in V5E.items() if k != _tpu.DUTY_CYCLE}
        with pytest.raises(SourceError, match=f"NOT_FOUND: metric {_tpu.DUTY_CYCLE} not supported"):
            collector.collect(0.0)
    finally:
        collector.close()


def test_a_tpu_on_the_bus_names_the_devices_and_uses_the_default_address(tmp_path, monkeypatch):
    """With a v5e on the PCI bus and no address given, devices are "TPU v5e" and localhost:8431 is asked."""
    _pci(tmp_path, "0000:00:04.0", "0x1ae0", "0x0063")
    collector = TpuCollector(str(tmp_path))
    try:
        with pytest.raises(Unavailable, match=r"^no TPU runtime metrics service answers at localhost:8431 "):
            collector.collect(0.0)
    finally:
        collector.close()
    collector = TpuCollector(str(tmp_path), address="127.0.0.1:1")
    collector._scan(0.0)
    assert collector._samples([(0, 1, 2, 3.0)])[0].name == "TPU v5e"


@pytest.mark.parametrize("address", ["localhost", "http://localhost:8431", "host:port", "a b:1"])
def test_tpu_metrics_address_must_be_host_and_port(address):
    """--tpu-metrics-addr takes HOST:PORT only."""
    with pytest.raises(ConfigError, match="tpu metrics address must be HOST:PORT"):
        ServiceConfig(tpu_metrics_addr=address)
    assert ServiceConfig(tpu_metrics_addr="127.0.0.1:8431").tpu_metrics_addr == "127.0.0.1:8431"


@pytest.mark.parametrize("address", ["10.0.0.7:8431", "tpu-host:8431", "[2001:db8::1]:8431"])
def test_tpu_metrics_address_must_be_on_this_host(address):
    """--tpu-metrics-addr names a loopback host only: libtpu takes local connections, and no name is resolved."""
    with pytest.raises(ConfigError, match=r"^tpu metrics address must be on this host \(localhost, 127\.x\.x\.x or "
                                          r"\[::1\]\): libtpu's service takes local connections only, got "):
        ServiceConfig(tpu_metrics_addr=address)
    for local in ("localhost:8431", "127.0.0.2:1", "[::1]:8431"):
        assert ServiceConfig(tpu_metrics_addr=local).tpu_metrics_addr == local
    assert os.environ.get("TRACKLAB_SYSMON_TPU_METRICS_ADDR") is None
