"""Typed accelerator details: what each source puts on the wire, and `accelerator_from_wire` as its exact inverse."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any

import pytest
from conftest import FIXTURES, require_command
from hypothesis import given, settings
from hypothesis import strategies as st
from nvml_stub.build import build_stub, stub_env

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.amd import AmdCollector
from tracklab_sysmon.collectors.apple import samples_from_ioreg
from tracklab_sysmon.model import (
    AcceleratorMemory,
    AcceleratorSample,
    AmdgpuDetails,
    AmdgpuReadings,
    Clocks,
    EccErrors,
    GpuProcess,
    HabanaDetails,
    IntelDetails,
    IntelReadings,
    IoregDetails,
    MemoryUse,
    MigInstance,
    MigProfiling,
    MigState,
    NeuronCoreUse,
    NeuronDetails,
    NeuronErrorCounts,
    NvmlDetails,
    NvmlReadings,
    PcieThroughput,
    Profiling,
    TemperatureSensor,
)

SEED_KEYS = ["id", "type", "name", "vendor", "uuid", "utilization", "memory", "temperature", "power", "fanSpeed"]
NVML_KEYS = [
    "busId", "memoryUtilization", "encoderUtilization", "decoderUtilization", "clocks", "powerLimit", "energy",
    "pcie", "eccErrors", "throttleReasons", "performanceState", "processes", "mig", "profiling", "lost",
]
AMDGPU_KEYS = [
    "busId", "card", "runtimeStatus", "memoryUtilization", "gtt", "temperatures", "powerLimit", "clocks", "energy",
]
INTEL_KEYS = ["busId", "card", "driver", "runtimeStatus", "frequency", "energy", "temperatures", "engines"]
IOREG_KEYS = ["rendererUtilization", "tilerUtilization", "allocatedMemory", "coreCount", "ioClass"]
NEURON_KEYS = ["deviceType", "coreVersion", "neuronCores", "eccErrors", "sramEccErrors", "executionErrors", "runtimes"]
HABANA_KEYS = ["busId", "moduleId", "eccErrors"]


def _sample(details: Any = None) -> AcceleratorSample:
    return AcceleratorSample(
        id=0, type="gpu", name="g", utilization=None, memory=AcceleratorMemory(None, None, None),
        temperature=None, power=None, fan_speed=None, vendor="v", uuid=None, details=details,
    )


def _round_trips(sample: AcceleratorSample) -> None:
    body = wire.accelerator_to_wire(sample)
    assert wire.accelerator_from_wire(body) == sample
    assert wire.accelerator_from_wire(wire.decode(wire.encode(body))) == sample  # through JSON bytes too


# ---------------------------------------------------------------- which keys each source writes


@pytest.mark.parametrize(
    ("details", "keys"),
    [
        (None, []),
        (NvmlDetails(bus_id=None, lost=True), ["busId", "lost"]),
        (NvmlDetails(bus_id="0:1", readings=NvmlReadings()), NVML_KEYS),
        (AmdgpuDetails(card="card1", runtime_status="suspended"), ["busId", "card", "runtimeStatus"]),
        (AmdgpuDetails(card="card1", readings=AmdgpuReadings()), AMDGPU_KEYS),
        (IoregDetails(io_class="AGXAcceleratorG13X"), IOREG_KEYS),
        (NeuronDetails(), NEURON_KEYS),
        (HabanaDetails(), HABANA_KEYS),
        (IntelDetails(card="card0", driver="xe"), INTEL_KEYS[:4]),
        (IntelDetails(card="card0", driver="xe", readings=IntelReadings()), INTEL_KEYS),
    ],
)
def test_each_source_writes_its_keys_in_order_with_nulls_kept(details, keys):
    """A details record writes all its keys (null included, nothing from other sources) after the seed keys."""
    assert list(wire.accelerator_to_wire(_sample(details))) == SEED_KEYS + keys


def test_nested_records_use_their_wire_names():
    """Processes, MIG instances, profiling, throttle reasons and sensors are spelled as the wire documents them."""
    readings = NvmlReadings(
        throttle_reasons=("gpu_idle", "hw_power_brake_slowdown"),
        processes=(GpuProcess(pid=7, name="train", used_memory=5),),
        mig=MigState(True, False, (MigInstance(0, "MIG-1", 1, 2, MemoryUse(3, 4), MigProfiling(sm_active=9.5)),)),
        profiling=Profiling(sm_active=1.0, nvlink_rx_bytes=2.0),
    )
    body = wire.accelerator_to_wire(_sample(NvmlDetails(readings=readings)))
    assert body["throttleReasons"] == ["gpuIdle", "hwPowerBrakeSlowdown"]
    assert body["processes"] == [{"pid": 7, "name": "train", "usedMemory": 5, "utilization": None}]
    assert body["mig"]["instances"] == [
        {"index": 0, "uuid": "MIG-1", "gpuInstanceId": 1, "computeInstanceId": 2, "memory": {"used": 3, "total": 4},
         "profiling": {"graphicsActive": None, "smActive": 9.5, "dramActive": None}}
    ]
    assert list(body["profiling"]) == [
        "smActive", "smOccupancy", "tensorActive", "dramActive",
        "pcieTxBytes", "pcieRxBytes", "nvlinkTxBytes", "nvlinkRxBytes",
    ]
    assert (body["profiling"]["smActive"], body["profiling"]["nvlinkRxBytes"]) == (1.0, 2.0)
    amd = AmdgpuReadings(temperatures=(TemperatureSensor("edge", 50.0), TemperatureSensor("junction", 61.5)))
    assert wire.accelerator_to_wire(_sample(AmdgpuDetails("card0", readings=amd)))["temperatures"] == {
        "edge": 50.0, "junction": 61.5
    }


# ---------------------------------------------------------------- round trips over real collector output


def test_amd_fixture_samples_round_trip():
    """Every sample the AMD collector reads from the fixture trees (awake, suspended, missing files) round-trips."""
    samples = [
        sample
        for tree in ("amd-discrete", "amd-missing-files", "amd-suspended")
        for sample in AmdCollector(str(FIXTURES / tree / "sys")).collect(0.0)
    ]
    assert {s.details.runtime_status for s in samples} >= {"active", "suspended"}
    assert any(s.details.readings is None for s in samples) and any(s.details.readings for s in samples)
    for sample in samples:
        _round_trips(sample)


def test_apple_fixture_samples_round_trip():
    """Every sample parsed from the ioreg fixtures (Apple Silicon, Intel Mac with Radeon) round-trips."""
    texts = [path.read_text() for path in sorted((FIXTURES / "apple").glob("*.txt"))]
    samples = [sample for text in texts for sample in samples_from_ioreg(text, 2**34)]
    assert len(samples) >= 4 and all(isinstance(s.details, IoregDetails) for s in samples)
    for sample in samples:
        _round_trips(sample)


ROUND_TRIP = """
import sys
from tracklab_sysmon import wire
from tracklab_sysmon.collectors.nvidia import NvidiaCollector
from tracklab_sysmon.model import NvmlDetails
collector, kinds = NvidiaCollector(enable_dcgm="--dcgm" in sys.argv), set()
for tick in range(int(sys.argv[1])):
    for sample in collector.collect(100.0 + tick):
        back = wire.accelerator_from_wire(wire.decode(wire.encode(wire.accelerator_to_wire(sample))))
        assert back == sample, (sample, back)
        r = sample.details.readings
        kinds |= {"lost"} if r is None else {k for k in ("mig", "processes", "profiling", "throttle_reasons")
                                               if getattr(r, k) is not None}
print(" ".join(sorted(kinds)))
"""


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> pathlib.Path:
    require_command("cc")
    return build_stub(tmp_path_factory.mktemp("nvml"))


@pytest.mark.parametrize(
    ("args", "scenario", "kinds"),
    [
        (["2"], {"gpus": "8"}, "mig processes throttle_reasons"),
        (["1"], {"gpus": "2", "mig": "1"}, "mig processes throttle_reasons"),
        (["2", "--dcgm"], {"gpus": "1", "gpm": "1"}, "mig processes profiling throttle_reasons"),
        (["1"], {"gpus": "1", "unsupported": "fan,power,ecc,mig,processes,throttle,clocks"}, ""),
        (["1"], {"gpus": "3", "lost_index": "1", "lost_flag": __file__}, "lost mig processes throttle_reasons"),
    ],
)
def test_stand_in_nvml_samples_round_trip(stub, args, scenario, kinds):
    """Samples the NVIDIA collector builds from the stand-in NVML (MIG, GPM, unsupported, lost) round-trip."""
    done = subprocess.run([sys.executable, "-c", ROUND_TRIP, *args], env=stub_env(stub, **scenario),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == kinds  # the scenario really produced the records it is meant to cover


# ---------------------------------------------------------------- round trips over generated records

_ints = st.integers(-(2**63), 2**64 - 1)
_opt_int = st.none() | _ints
_opt_float = st.none() | st.floats(allow_nan=False, allow_infinity=False)
_opt_text = st.none() | st.text(max_size=8)
_clocks = st.builds(Clocks, _opt_float, _opt_float)
_memory_use = st.builds(MemoryUse, _opt_int, _opt_int)
_nvml_readings = st.builds(
    NvmlReadings,
    memory_utilization=_opt_float, encoder_utilization=_opt_float, decoder_utilization=_opt_float,
    clocks=_clocks, power_limit=_opt_float, energy=_opt_float,
    pcie=st.builds(PcieThroughput, _opt_float, _opt_float),
    ecc_errors=st.builds(EccErrors, _opt_int, _opt_int),
    throttle_reasons=st.none() | st.lists(st.sampled_from(list(wire.THROTTLE_REASON_NAMES))).map(tuple),
    performance_state=_opt_int,
    processes=st.none() | st.lists(st.builds(GpuProcess, _ints, _opt_text, _opt_int), max_size=3).map(tuple),
    mig=st.none() | st.builds(
        MigState, st.booleans(), st.booleans(),
        st.lists(st.builds(MigInstance, _ints, _opt_text, _opt_int, _opt_int, st.none() | _memory_use),
                 max_size=3).map(tuple),
    ),
    profiling=st.none() | st.builds(Profiling, *[_opt_float] * 8),
)
_sensors = st.dictionaries(st.text(max_size=8), st.floats(allow_nan=False, allow_infinity=False), max_size=4).map(
    lambda temps: tuple(TemperatureSensor(label, value) for label, value in temps.items())
)
_details = st.one_of(
    st.none(),
    st.builds(NvmlDetails, _opt_text, st.booleans(), st.none() | _nvml_readings),
    st.builds(
        AmdgpuDetails, st.text(max_size=8), _opt_text, _opt_text,
        st.none() | st.builds(AmdgpuReadings, _opt_float, _memory_use, st.none() | _sensors, _opt_float, _clocks),
    ),
    st.builds(IoregDetails, st.text(max_size=12), _opt_float, _opt_float, _opt_int, _opt_int),
    st.builds(
        NeuronDetails, _opt_text, _opt_text,
        st.lists(st.builds(NeuronCoreUse, _ints, _opt_float, _opt_int), max_size=3).map(tuple),
        st.builds(EccErrors, _opt_int, _opt_int), st.builds(EccErrors, _opt_int, _opt_int),
        st.none() | st.builds(NeuronErrorCounts, *[_ints] * 6), st.lists(_ints, max_size=3).map(tuple),
    ),
    st.builds(HabanaDetails, _opt_text, _opt_int, st.builds(EccErrors, _opt_int, _opt_int)),
)
_accelerators = st.builds(
    AcceleratorSample,
    id=_ints, type=st.sampled_from(["gpu", "npu", "tpu"]), name=_opt_text, utilization=_opt_float,
    memory=st.builds(AcceleratorMemory, _opt_int, _opt_int, _opt_float), temperature=_opt_float,
    power=_opt_float, fan_speed=_opt_float, vendor=_opt_text, uuid=_opt_text, details=_details,
)


@settings(max_examples=300, deadline=None)
@given(_accelerators)
def test_generated_samples_round_trip(sample):
    """Any accelerator record, whatever its details, comes back equal from its wire dict and its JSON bytes."""
    _round_trips(sample)


# ---------------------------------------------------------------- refusals name the field


def _nvml_body() -> dict[str, Any]:
    readings = NvmlReadings(
        throttle_reasons=("sw_power_cap",), processes=(GpuProcess(1), GpuProcess(2)),
        mig=MigState(True, False, (MigInstance(0),)), profiling=Profiling(),
    )
    return wire.accelerator_to_wire(_sample(NvmlDetails("0:1", readings=readings)))


def _set(path: tuple[Any, ...], value: Any):
    def change(body: dict[str, Any]) -> dict[str, Any]:
        target = body
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        return body
    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set(("id",), "0"), "accelerators[3].id: expected integer, got string"),
        (_set(("memory", "used"), 1.5), "accelerators[3].memory.used: expected integer, got float"),
        (_set(("lost",), "no"), "accelerators[3].lost: expected boolean, got string"),
        (_set(("busId",), 7), "accelerators[3].busId: expected string, got int"),
        (_set(("clocks", "sm"), "fast"), "accelerators[3].clocks.sm: expected number, got string"),
        (_set(("pcie",), [1, 2]), "accelerators[3].pcie: expected object, got list of 2"),
        (_set(("eccErrors", "corrected"), True), "accelerators[3].eccErrors.corrected: expected integer, got boolean"),
        (_set(("throttleReasons", 0), "overheated"), "accelerators[3].throttleReasons[0]: expected a throttle reason"),
        (_set(("throttleReasons",), "swPowerCap"), "accelerators[3].throttleReasons: expected list of strings"),
        (_set(("processes", 1, "pid"), None), "accelerators[3].processes[1].pid: expected integer, got null"),
        (_set(("processes", 0, "usedMemory"), "1 GB"), "accelerators[3].processes[0].usedMemory: expected integer"),
        (_set(("mig", "enabled"), 1), "accelerators[3].mig.enabled: expected boolean, got int"),
        (_set(("mig", "instances", 0, "gpuInstanceId"), "a"), r"accelerators[3].mig.instances[0].gpuInstanceId: "),
        (_set(("profiling", "smActive"), "high"), "accelerators[3].profiling.smActive: expected number, got string"),
        (_set(("card",), "card0"), "accelerators[3]: lost and card belong to different sources"),
    ],
)
def test_wrong_types_are_refused_with_the_field_path(change, message):
    """A wrongly typed field raises ValueError whose message starts with that field's path."""
    with pytest.raises(ValueError) as caught:
        wire.accelerator_from_wire(change(_nvml_body()), "accelerators[3]")
    assert str(caught.value).startswith(message), str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"card": None}, "accelerator.card: expected string, got null"),
        ({"card": "card0", "temperatures": {"edge": "hot"}}, "accelerator.temperatures.edge: expected number"),
        ({"card": "card0", "gtt": {"used": "1"}}, "accelerator.gtt.used: expected integer, got string"),
        ({"ioClass": None}, "accelerator.ioClass: expected string, got null"),
        ({"ioClass": "AGX", "coreCount": 1.5}, "accelerator.coreCount: expected integer, got float"),
        ({"memory": None}, "accelerator.memory: expected object, got null"),
        ({"neuronCores": [{"index": "0"}]}, "accelerator.neuronCores[0].index: expected integer, got string"),
        ({"neuronCores": [], "executionErrors": {"generic": 1}}, "accelerator.executionErrors.numerical: missing"),
        ({"neuronCores": [], "runtimes": [1, True]}, "accelerator.runtimes: expected list of 64-bit integers"),
        ({"moduleId": "3"}, "accelerator.moduleId: expected integer, got string"),
        ({"moduleId": 3, "eccErrors": {"corrected": 1.5}}, "accelerator.eccErrors.corrected: expected integer"),
        ({"card": "card0", "moduleId": 1}, "accelerator: card and moduleId belong to different sources"),
    ],
)
def test_amdgpu_and_ioreg_fields_are_checked_too(body, message):
    """AMD and ioreg details are type-checked like NVML's, naming the field from the default `accelerator` root."""
    with pytest.raises(ValueError, match=r"^" + message.replace("[", r"\[").replace(".", r"\.")):
        wire.accelerator_from_wire({**wire.accelerator_to_wire(_sample()), **body})
