"""The fabric section and MIG profiling on the wire: every record round-trips, bad peers' fields are named."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracklab_sysmon import wire
from tracklab_sysmon.model import (
    AcceleratorMemory,
    AcceleratorSample,
    FabricSample,
    HwCounter,
    InfinibandErrors,
    InfinibandPort,
    InfinibandSample,
    MigInstance,
    MigProfiling,
    MigState,
    NvlinkErrors,
    NvlinkLink,
    NvlinkSample,
    NvmlDetails,
    NvmlReadings,
    Snapshot,
)

_u64 = st.integers(0, 2**64 - 1)
_opt_u64 = st.none() | _u64
_f = st.floats(allow_nan=False, allow_infinity=False)
_opt_f = st.none() | _f
_name = st.text(min_size=1, max_size=10)
_opt_name = st.none() | _name

_links = st.lists(st.builds(
    NvlinkLink, st.integers(0, 64), _opt_name, st.integers(0, 35), _opt_name, _opt_f, _opt_u64, _opt_u64,
    _opt_f, _opt_f, st.builds(NvlinkErrors, _opt_u64, _opt_u64, _opt_u64, _opt_u64),
), max_size=3)
_hw = st.dictionaries(_name, _u64, max_size=3).map(lambda d: tuple(HwCounter(k, v) for k, v in d.items()))
_ports = st.lists(st.builds(
    InfinibandPort, _name, st.integers(0, 255), _opt_name, _opt_name, _opt_name, _opt_f,
    _opt_u64, _opt_u64, _opt_u64, _opt_u64, _opt_f, _opt_f, _opt_f, _opt_f,
    st.builds(InfinibandErrors, *([_opt_u64] * 12)), _hw,
), max_size=3)
_fabric = st.builds(
    FabricSample,
    st.none() | _links.map(lambda links: NvlinkSample(tuple(links))),
    st.none() | _ports.map(lambda ports: InfinibandSample(tuple(ports))),
)
_mig = st.builds(MigInstance, st.integers(0, 6), _opt_name, st.none() | st.integers(0, 14),
                 st.none() | st.integers(0, 7), st.none(), st.none() | st.builds(MigProfiling, _opt_f, _opt_f, _opt_f))


def _gpu(instances: tuple[MigInstance, ...]) -> AcceleratorSample:
    readings = NvmlReadings(mig=MigState(True, False, instances))
    return AcceleratorSample(id=0, type="gpu", name="g", utilization=None, memory=AcceleratorMemory(None, None, None),
                             temperature=None, power=None, fan_speed=None, vendor="nvidia", uuid="GPU-1",
                             details=NvmlDetails(readings=readings))


@given(st.none() | _fabric, st.lists(_mig, max_size=3))
def test_fabric_and_mig_profiling_round_trip_exactly(fabric, instances):
    """snapshot_from_wire(snapshot_to_wire(s)) == s for any fabric section and MIG instances with profiling."""
    snap = Snapshot(node_id="n", timestamp=1, accelerators=(_gpu(tuple(instances)),), fabric=fabric)
    body = wire.decode(wire.encode(wire.snapshot_to_wire(snap)))
    assert wire.snapshot_from_wire(body) == snap


def _body() -> dict:
    link = NvlinkLink(0, "GPU-1", 2, "active", 1e9, 10, 20, 1.0, 2.0, NvlinkErrors(1, 2, 3, 4))
    port = InfinibandPort("mlx5_0", 1, "InfiniBand", "active", "link_up", 2e11, 4, 8, 1, 2, 0.0, 0.0, 0.0, 0.0,
                          InfinibandErrors(symbol_errors=5), (HwCounter("out_of_buffer", 7),))
    snap = Snapshot(node_id="n", timestamp=1, fabric=FabricSample(NvlinkSample((link,)), InfinibandSample((port,))))
    return wire.snapshot_to_wire(snap)


def test_wire_names_are_the_documented_ones():
    """The section's keys are camelCase as docs/rest-api.md lists them; hw_counters keep the driver's names."""
    fabric = _body()["fabric"]
    assert list(fabric["nvlink"][0]) == ["gpu", "uuid", "link", "state", "speed", "txBytes", "rxBytes", "txRate",
                                         "rxRate", "errors"]
    assert fabric["nvlink"][0]["errors"] == {"crcFlit": 1, "crcData": 2, "replay": 3, "recovery": 4}
    port = fabric["infiniband"][0]
    assert list(port) == ["device", "port", "linkLayer", "state", "physicalState", "rate", "txBytes", "rxBytes",
                          "txPackets", "rxPackets", "txRate", "rxRate", "txPacketsRate", "rxPacketsRate", "errors",
                          "hwCounters"]
    assert port["errors"]["symbolErrors"] == 5 and port["hwCounters"] == {"out_of_buffer": 7}


@pytest.mark.parametrize(("path", "value", "message"), [
    (("nvlink", 0, "gpu"), "0", "fabric.nvlink[0].gpu: expected integer"),
    (("nvlink", 0, "errors", "replay"), 1.5, "fabric.nvlink[0].errors.replay: expected integer"),
    (("nvlink",), {"a": 1}, "fabric.nvlink: expected list of objects"),
    (("infiniband", 0, "device"), "", "fabric.infiniband[0].device: expected non-empty string"),
    (("infiniband", 0, "rate"), "fast", "fabric.infiniband[0].rate: expected number"),
    (("infiniband", 0, "hwCounters", "out_of_buffer"), -1.0, "fabric.infiniband[0].hwCounters.out_of_buffer"),
])
def test_bad_fabric_field_from_a_peer_is_refused_with_its_path(path, value, message):
    """A peer's wrong-typed fabric field is a WireError naming where it is."""
    body = copy.deepcopy(_body())
    target = body["fabric"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(wire.WireError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        wire.snapshot_from_wire(body)


def test_null_source_stays_null_and_empty_stays_empty():
    """A source that did not run (null) and one that found nothing ([]) stay apart on a round trip."""
    snap = Snapshot(node_id="n", timestamp=1, fabric=FabricSample(None, InfinibandSample(())))
    body = wire.snapshot_to_wire(snap)
    assert body["fabric"] == {"nvlink": None, "infiniband": []}
    assert wire.snapshot_from_wire(body) == snap
