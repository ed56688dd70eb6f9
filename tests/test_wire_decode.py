"""`wire.snapshot_from_wire`: the strict inverse of `snapshot_to_wire`, round-tripped on fixture trees and random
snapshots, and refusing bad fields by path.
"""

from __future__ import annotations

import json
import math

import orjson
import pytest
from conftest import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from tracklab_sysmon import wire
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.model import (
    AcceleratorMemory,
    AcceleratorSample,
    CoreSample,
    CpuSample,
    CpuTimes,
    DiskDeviceSample,
    DiskSample,
    InterfaceSample,
    MemorySample,
    NetworkSample,
    Snapshot,
    SwapSample,
)
from tracklab_sysmon.sampler import Sampler

TREES = sorted(p.name for p in FIXTURES.iterdir() if (p / "proc").is_dir() or (p / "sys").is_dir())


def _roundtrip(snapshot: Snapshot) -> Snapshot:
    return wire.snapshot_from_wire(wire.encode(wire.snapshot_to_wire(snapshot)))


@pytest.mark.parametrize("tree", TREES)
async def test_fixture_tree_snapshots_round_trip_exactly(tree):
    """A snapshot sampled from each fixture tree (two ticks, so rates are real) decodes back to an equal Snapshot."""
    root = FIXTURES / tree
    sampler = Sampler(default_collectors(str(root / "proc"), str(root / "sys"), statvfs=None, host_gpus=False),
                      node_id=f"tree-{tree}", wall=lambda: 1.7e9)
    await sampler.prime()
    snapshot = await sampler.tick()
    assert any((snapshot.cpu, snapshot.memory, snapshot.disk, snapshot.network, snapshot.accelerators))
    assert _roundtrip(snapshot) == snapshot
    assert wire.snapshot_from_wire(sampler.latest_bytes) == snapshot


# ---------------------------------------------------------------- random snapshots

_u64 = st.integers(0, 2**64 - 1)
_opt_u64 = st.none() | _u64
_f = st.floats(allow_nan=False, allow_infinity=False)
_opt_f = st.none() | _f
_name = st.text(min_size=1, max_size=12)
_times = st.builds(CpuTimes, *([_f] * 8))
_cores = st.lists(st.builds(CoreSample, st.integers(0, 4096), _opt_f, _opt_f, _opt_f, _times), max_size=4)
_cpu = st.builds(CpuSample, _opt_f, _cores.map(tuple), st.none() | st.tuples(_f, _f, _f), _opt_u64, _opt_u64, _opt_f)
_swap = st.builds(SwapSample, _opt_u64, _opt_u64, _opt_f)
_memory = st.builds(MemorySample, _opt_f, _opt_u64, _opt_u64, _opt_u64, _swap)
_devices = st.lists(st.builds(DiskDeviceSample, _name, _u64, _u64, _u64, _u64, _f, _f, _f), max_size=3)
_disk = st.builds(DiskSample, _opt_f, _opt_u64, _opt_u64, _opt_f, _opt_f, _opt_f, _devices.map(tuple))
_ifaces = st.lists(st.builds(InterfaceSample, _name, _u64, _u64, _u64, _u64, _f, _f, _f, _f), max_size=3)
_network = st.builds(NetworkSample, _opt_f, _opt_f, _opt_f, _opt_f, _opt_u64, _ifaces.map(tuple))
_json = st.recursive(st.none() | st.booleans() | st.integers(-(2**63), 2**63) | _f | st.text(max_size=6),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                     max_leaves=10)
_accelerators = st.lists(st.builds(
    AcceleratorSample, st.integers(0, 64), st.sampled_from(["gpu", "npu"]), st.none() | _name, _opt_f,
    st.builds(AcceleratorMemory, _opt_u64, _opt_u64, _opt_f), _opt_f, _opt_f, _opt_f,
    st.none() | _name, st.none() | _name,
    st.none(),  # typed vendor details round-trip in test_typed_accelerators.py
), max_size=3)
_snapshots = st.builds(Snapshot, _name, st.integers(0, 2**53), st.none() | _cpu, st.none() | _memory,
                       st.none() | _disk, st.none() | _network, _accelerators.map(tuple))


@settings(max_examples=300, deadline=None)
@given(snapshot=_snapshots)
def test_random_snapshots_round_trip_exactly(snapshot):
    """For any Snapshot the model allows (64-bit counters, any finite float), decode(encode(s)) == s."""
    assert _roundtrip(snapshot) == snapshot


# ---------------------------------------------------------------- refusals, by path

def _good() -> dict:
    return orjson.loads(wire.encode(wire.snapshot_to_wire(Snapshot(
        node_id="n", timestamp=1,
        cpu=CpuSample(1.0, (CoreSample(0, 1.0, 2.0, None, CpuTimes()),), (0.1, 0.2, 0.3), 5, 6, None),
        memory=MemorySample(1.0, 1, 2, 1, SwapSample(0, 0, None)),
        disk=DiskSample(None, None, None, 0.0, 0.0, 0.0, (DiskDeviceSample("sda", 1, 2, 3, 4, 0.0, 0.0, 0.0),)),
        network=NetworkSample(0.0, 0.0, 0.0, 0.0, 3, (InterfaceSample("eth0", 1, 2, 3, 4, 0.0, 0.0, 0.0, 0.0),)),
        accelerators=(AcceleratorSample(0, "gpu", "x", 1.0, AcceleratorMemory(1, 2, 50.0), None, None, None),),
    ))))


def _set(body: dict, path: tuple, value) -> dict:
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("cpu",), [1], "cpu: expected object, got list of 1"),
        (("cpu", "loadAverage"), 5, "cpu.loadAverage: expected list of 3 numbers, got int"),
        (("cpu", "loadAverage"), [1, 2], "cpu.loadAverage: expected list of 3 numbers, got list of 2"),
        (("cpu", "loadAverage"), [1, "2", 3], "cpu.loadAverage[1]: expected number, got string"),
        (("cpu", "overall"), True, "cpu.overall: expected number, got boolean"),
        (("cpu", "processes"), 1.5, "cpu.processes: expected integer, got float"),
        (("cpu", "cores"), {}, "cpu.cores: expected list of objects, got object"),
        (("cpu", "cores", 0, "times", "idle"), None, "cpu.cores[0].times.idle: expected number, got null"),
        (("memory", "total"), 2**64, "memory.total: integer 18446744073709551616 is outside 64 bits"),
        (("memory", "swap"), None, "memory.swap: expected object, got null"),
        (("disk", "devices", 0, "name"), 7, "disk.devices[0].name: expected string, got int"),
        (("network", "interfaces", 0, "bytesSent"), -(2**63) - 1, "network.interfaces[0].bytesSent: integer"),
        (("accelerators",), {"id": 0}, "accelerators: expected list of objects, got object"),
        (("accelerators", 0, "memory", "used"), "1", "accelerators[0].memory.used: expected integer, got string"),
        (("node_id",), "", "node_id: expected non-empty string, got string"),
        (("timestamp",), None, "timestamp: expected integer, got null"),
    ],
)
def test_bad_field_is_refused_with_its_path(path, value, message):
    """A wrong type or an out-of-range value anywhere is a WireError whose message starts with that field's path."""
    body = _set(_good(), path, value)
    with pytest.raises(wire.WireError) as refused:
        wire.snapshot_from_wire(body)
    assert str(refused.value).startswith(message)
    with pytest.raises(wire.WireError):  # the same from bytes
        wire.snapshot_from_wire(json.dumps(body).encode())


def test_non_finite_number_is_refused():
    """Infinity (which a Python JSON encoder writes and orjson cannot) is refused by path, from a dict."""
    body = _set(_good(), ("cpu", "overall"), math.inf)
    with pytest.raises(wire.WireError, match=r"^cpu\.overall: number inf is not finite"):
        wire.snapshot_from_wire(body)


@pytest.mark.parametrize(("missing", "message"), [("node_id", "node_id: missing"), ("timestamp", "timestamp: missing")])
def test_required_field_missing_is_refused(missing, message):
    """node_id and timestamp must be present."""
    body = _good()
    del body[missing]
    with pytest.raises(wire.WireError, match=f"^{message}"):
        wire.snapshot_from_wire(body)


@pytest.mark.parametrize("text", [b"", b"not json", b"[1, 2]", b'"snapshot"', b"null"])
def test_not_a_snapshot_object_is_refused(text):
    """Bytes that are not a JSON object are a WireError, never a TypeError or AttributeError."""
    with pytest.raises(wire.WireError, match=r"^snapshot: "):
        wire.snapshot_from_wire(text)


def test_depth_is_limited_before_any_field_is_read():
    """A vendor extra nested past MAX_DEPTH is refused (600 levels: past what a recursive walk survives cheaply)."""
    body = _good()
    body["accelerators"][0]["vendorBlob"] = "@"
    text = orjson.dumps(body).replace(b'"@"', b"[" * 600 + b"]" * 600)
    with pytest.raises(wire.WireError, match=f"nested deeper than {wire.MAX_DEPTH} levels"):
        wire.snapshot_from_wire(text)
    shallow = orjson.dumps(body).replace(b'"@"', b"[" * 20 + b"]" * 20)
    decoded = wire.snapshot_from_wire(shallow)  # within the limit: read, and the unknown key ignored
    assert decoded.accelerators == wire.snapshot_from_wire(_good()).accelerators


def test_unknown_keys_are_ignored_and_known_vendor_keys_read_into_typed_details():
    """A newer peer's extra top-level or accelerator key is ignored (the peer's bytes are served as received);
    NVML's keys are read back into the typed details the collectors build.
    """
    body = _good()
    body["futureSection"] = {"x": 1}
    body["accelerators"][0]["vendorBlob"] = {"x": [1, 2]}
    body["accelerators"][0]["clocks"] = {"sm": 1410, "memory": 1215, "video": 900}
    body["accelerators"][0]["lost"] = False
    decoded = wire.snapshot_from_wire(body)
    assert wire.snapshot_to_wire(decoded)["accelerators"][0]["clocks"] == {"sm": 1410, "memory": 1215}
    assert "vendorBlob" not in wire.snapshot_to_wire(decoded)["accelerators"][0]
