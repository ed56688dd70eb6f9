"""Every GPU's NVLink data counters in one tick: the C reader (one C call that asks NVML itself, native/fabric.c's
fb_nvlink_read) against the Python twin (GPU by GPU through ctypes), on NVML's function played by a ctypes callback
and on the stand-in libnvidia-ml.so through the whole collector: the same counters, rates, failures and calls."""

from __future__ import annotations

import ctypes
import pathlib
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pynvml
import pytest
from conftest import native_module, require_command
from hypothesis import given, settings
from hypothesis import strategies as st
from nvml_stub.build import build_stub
from test_fabric_nvlink import KIB, probe

from tracklab_sysmon import _accel_native, _nvlink
from tracklab_sysmon._fabric_py import MAX_KIB, PyNvlinkCounters, PyNvlinkReader

LOST, UNKNOWN_ERROR = pynvml.NVML_ERROR_GPU_IS_LOST, pynvml.NVML_ERROR_UNKNOWN
_FIELD_VALUES = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p)


@pytest.fixture(scope="module")
def cffi():
    """The C twin's module; skip locally, fail under TRACKLAB_SYSMON_NATIVE=require, where it was not built."""
    native_module()
    from tracklab_sysmon import _fabric_cffi

    return _fabric_cffi


class StandIn:
    """nvmlDeviceGetFieldValues as a C function pointer (a ctypes callback): device d answers `script[d]`, a return
    code and, when it is 0, (valueType, nvmlReturn, value) for each record asked; every call is logged."""

    def __init__(self) -> None:
        self.script: dict[int, tuple[int, list[tuple[int, int, int]]]] = {}
        self.calls: list[tuple[int, int]] = []
        self.function = _FIELD_VALUES(self._answer)  # kept: C holds its address
        # What the readers use of pynvml, with this function as the bindings' pointer.
        self.pynvml = SimpleNamespace(c_nvmlFieldValue_t=pynvml.c_nvmlFieldValue_t, NVMLError=pynvml.NVMLError,
                                      NVML_ERROR_GPU_IS_LOST=LOST, _nvmlGetFunctionPointer=lambda name: self.function)

    def _answer(self, device: int, count: int, values: int) -> int:
        self.calls.append((device, count))
        ret, records = self.script[device]
        if ret:
            return ret
        for item, (kind, nvml_return, value) in zip((pynvml.c_nvmlFieldValue_t * count).from_address(values),
                                                    records, strict=False):
            item.valueType, item.nvmlReturn, item.value.ullVal = kind, nvml_return, value
        return 0


@dataclass(eq=False)
class Gpu:
    """A reader's target, as the collector's _Gpu holds it."""

    handle: Any
    counters: _nvlink.Request
    positions: tuple[int, ...] | None
    meter: Any


def request(links: int, dropped: frozenset[int] = frozenset()) -> tuple[_nvlink.Request, tuple[int, ...] | None]:
    """A GPU's data-counter request less the entries at `dropped`, and each remaining entry's slot (as the collector
    prunes: None when nothing was dropped)."""
    full = _nvlink.Request(_nvlink.counter_slots(links))
    if not dropped:
        return full, None
    pruned = full.without(dropped)
    return pruned, tuple(2 * s.link + (s.kind == "rx_kib") for s in pruned.slots)


def handle(gpu: int) -> ctypes.c_void_p:
    return ctypes.c_void_p(0x1000 + gpu)


# ---------------------------------------------------------------- exact values


def test_one_tick_reads_each_gpu_into_its_slots_and_reports_failures(cffi):
    """GPU 0 (2 links) answers; GPU 1 fails (UNKNOWN); GPU 2 is lost; GPU 3 had every entry pruned and is not asked;
    GPU 4 has only its link-1 rx entry left. Each GPU's slots follow the previous GPU's; a failed GPU's are None."""
    for reader, counters in ((cffi.CffiNvlinkReader(), cffi.CffiNvlinkCounters), (PyNvlinkReader(), PyNvlinkCounters)):
        nvml = StandIn()
        gpus = [Gpu(handle(0), *request(2), counters(2)), Gpu(handle(1), *request(1), counters(1)),
                Gpu(handle(2), *request(1), counters(1)), Gpu(handle(3), *request(1, frozenset({0, 1})), counters(1)),
                Gpu(handle(4), *request(2, frozenset({0, 1, 2})), counters(2))]
        nvml.script = {0x1000: (0, [(3, 0, 1), (3, 0, 2), (1, 0, 3), (3, 3, 4)]), 0x1001: (UNKNOWN_ERROR, []),
                       0x1002: (LOST, []), 0x1004: (0, [(3, 0, 7)])}
        failures, values, rates = reader.read(nvml.pynvml, gpus, 0.0)
        assert failures == [(1, UNKNOWN_ERROR), (2, LOST)]
        assert values == [1024, 2048, 3072, None, None, None, None, None, None, None, None, None, None, 7168]
        assert rates == [0.0, 0.0, 0.0, None, None, None, None, None, None, None, None, None, None, 0.0]
        assert nvml.calls == [(0x1000, 4), (0x1001, 2), (0x1002, 2), (0x1004, 1)]


def test_a_failed_call_leaves_the_gpus_baselines_as_they_were(cffi):
    """1 KiB at 0 s, a failed call at 1 s, 3 KiB at 2 s: 2 KiB over the 2 s since the last answer, 1024.0 bytes/s;
    a dip to 1 KiB at 3 s rates 0 and keeps 3 KiB below it."""
    for reader, counters in ((cffi.CffiNvlinkReader(), cffi.CffiNvlinkCounters), (PyNvlinkReader(), PyNvlinkCounters)):
        nvml = StandIn()
        gpus = [Gpu(handle(0), *request(1), counters(1))]
        got = []
        for now, answer in ((0.0, (0, [(3, 0, 1), (3, 0, 1)])), (1.0, (UNKNOWN_ERROR, [])),
                            (2.0, (0, [(3, 0, 3), (3, 0, 1)])), (3.0, (0, [(3, 0, 1), (3, 0, 1)]))):
            nvml.script = {0x1000: answer}
            got.append(reader.read(nvml.pynvml, gpus, now))
        assert got == [([], [1024, 1024], [0.0, 0.0]), ([(0, UNKNOWN_ERROR)], [None, None], [None, None]),
                       ([], [3072, 1024], [1024.0, 0.0]), ([], [1024, 1024], [0.0, 0.0])]


def test_the_c_reader_follows_a_pruned_request_and_fresh_baselines(cffi):
    """The C reader aims at each GPU's request once: when the collector prunes it (a new request and positions) or
    starts its counters afresh (a new meter), the next tick reads the new one."""
    nvml = StandIn()
    reader, gpu = cffi.CffiNvlinkReader(), Gpu(handle(0), *request(2), cffi.CffiNvlinkCounters(2))
    nvml.script = {0x1000: (0, [(3, 0, 1), (3, 3, 0), (3, 0, 2), (3, 0, 3)])}
    assert reader.read(nvml.pynvml, [gpu], 0.0)[1] == [1024, None, 2048, 3072]
    gpu.counters, gpu.positions = request(2, frozenset({1}))  # link 0's rx answered NOT_SUPPORTED
    nvml.script = {0x1000: (0, [(3, 0, 2), (3, 0, 4), (3, 0, 5)])}
    assert reader.read(nvml.pynvml, [gpu], 1.0) == ([], [2048, None, 4096, 5120], [1024.0, None, 2048.0, 2048.0])
    gpu.meter = cffi.CffiNvlinkCounters(2)
    assert reader.read(nvml.pynvml, [gpu], 2.0)[2] == [0.0, None, 0.0, 0.0]
    assert nvml.calls == [(0x1000, 4), (0x1000, 3), (0x1000, 3)]


def test_no_gpus_read_nothing(cffi):
    """A tick with no GPU to read asks nothing and reads nothing, in both readers."""
    for reader in (cffi.CffiNvlinkReader(), PyNvlinkReader()):
        nvml = StandIn()
        assert reader.read(nvml.pynvml, [], 0.0) == ([], [], []) and nvml.calls == []


def test_reader_follows_the_native_setting(cffi):
    """`off` picks the Python reader, `require` the C one (which this run has), as for the counters."""
    assert _accel_native.select_reader("off") == (PyNvlinkReader, "python")
    assert _accel_native.select_reader("require") == (cffi.CffiNvlinkReader, "cffi")


def test_the_c_reader_takes_only_c_counters(cffi):
    """Python counters hold no C request to aim: the C reader refuses them rather than read garbage."""
    gpu = Gpu(handle(0), *request(1), PyNvlinkCounters(1))
    with pytest.raises(TypeError, match="CffiNvlinkCounters"):
        cffi.CffiNvlinkReader().read(StandIn().pynvml, [gpu], 0.0)


# ---------------------------------------------------------------- any answers, C against the twin

word = st.one_of(st.integers(0, 50), st.sampled_from((MAX_KIB, MAX_KIB + 1, 2**32 - 1, 2**32, 2**64 - 1)),
                 st.integers(0, 2**64 - 1))
record = st.tuples(st.sampled_from((1, 2, 3, 6, 0, 4, 5)), st.sampled_from((0, 0, 0, 3, 15)), word)
gpu_plan = st.integers(1, 3).flatmap(lambda links: st.tuples(
    st.just(links), st.frozensets(st.integers(0, 2 * links - 1), max_size=2 * links)))
gpu_tick = st.tuples(st.sampled_from((0, 0, 0, 0, UNKNOWN_ERROR, LOST)), st.lists(record, min_size=6, max_size=6),
                     st.sampled_from(("", "", "", "", "prune", "afresh")))
step = st.one_of(st.sampled_from((-1.0, 0.0)), st.floats(min_value=0.001, max_value=5.0))


@settings(max_examples=200, deadline=None)
@given(plans=st.lists(gpu_plan, min_size=1, max_size=4),
       ticks=st.lists(st.tuples(step, st.lists(gpu_tick, min_size=4, max_size=4)), min_size=1, max_size=12))
def test_c_and_python_readers_agree_tick_for_tick(cffi, plans, ticks):
    """Any GPUs (1-3 links, any entries pruned from the start or mid-run, counters started afresh mid-run), any
    answers (every value type, failed entries, failed and lost calls, values past the 64-bit edge in bytes), any
    clock: both readers give the same failures, counters and rates, and ask NVML for the same GPUs and records."""
    nvml = {"c": StandIn(), "py": StandIn()}
    readers = {"c": cffi.CffiNvlinkReader(), "py": PyNvlinkReader()}
    meters = {"c": cffi.CffiNvlinkCounters, "py": PyNvlinkCounters}
    gpus: dict[str, list[Gpu]] = {side: [] for side in nvml}
    for i, (links, _) in enumerate(plans):
        for side in nvml:
            gpus[side].append(Gpu(handle(i), *request(links), meters[side](links)))
    now = 0.0
    for dt, answers in ticks:
        now += dt
        for i, (ret, records, event) in enumerate(answers[:len(plans)]):
            for side in nvml:
                gpu = gpus[side][i]
                if event == "prune" and gpu.positions is None:
                    gpu.counters, gpu.positions = request(plans[i][0], plans[i][1])
                elif event == "afresh":
                    gpu.meter = meters[side](plans[i][0])
                nvml[side].script[0x1000 + i] = (ret, records)
        got = {side: readers[side].read(nvml[side].pynvml, gpus[side], now) for side in nvml}
        assert got["c"] == got["py"]
        assert nvml["c"].calls == nvml["py"].calls


# ---------------------------------------------------------------- the collector on the stand-in NVML, both backends

MAX_KIB_EDGE = MAX_KIB - 2000  # links whose counters pass MAX_KIB (not 64 bits in bytes) read null, the rest not
WRAPPING = 2**64 - 3000  # a base whose counters wrap past 2^64 KiB after a few reads


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> pathlib.Path:
    require_command("cc")
    return build_stub(tmp_path_factory.mktemp("nvml"))


def both(monkeypatch: pytest.MonkeyPatch, stub_dir: pathlib.Path, *args: str, flag: pathlib.Path | None = None,
         **scenario: str) -> list[dict]:
    """The probe's lines with the C reader and with the Python twin, which must be equal; returns them. `flag`, the
    scenario's flag file, is removed before each run."""
    native_module()
    lines = {}
    for native in ("require", "off"):
        monkeypatch.setenv("TRACKLAB_SYSMON_NATIVE", native)  # the probe's environment is a copy of this one
        if flag is not None:
            flag.unlink(missing_ok=True)
        lines[native] = probe(stub_dir, *args, "--reader", **scenario)
    assert (lines["require"][-1], lines["off"][-1]) == ({"reader": "CffiNvlinkReader"}, {"reader": "PyNvlinkReader"})
    assert lines["require"][:-1] == lines["off"][:-1]
    return lines["require"][:-1]


def test_collector_reads_alike_through_loss_failure_dips_and_the_64_bit_edge(monkeypatch, stub, tmp_path):
    """3 GPUs x 2 links, 10 s a tick. Ticks 2-3: GPU 1 lost and GPU 2's calls failing; from tick 3 the counters
    start from 5 KiB (a dip), from tick 5 just under MAX_KIB (some links pass it: null), from tick 7 near 2^64 (those
    that wrap past it read small again, the rest stay null). Both backends report the same on every tick."""
    flag = tmp_path / "flag"
    lines = both(monkeypatch, stub, "9", "--step", "10", "--flag-at", "2", str(flag), "--unflag-at", "4",
                 "--env-at", "3", "NVML_STUB_NVLINK_BASE=5", "--env-at", "5", f"NVML_STUB_NVLINK_BASE={MAX_KIB_EDGE}",
                 "--env-at", "7", f"NVML_STUB_NVLINK_BASE={WRAPPING}",
                 GPUS="3", NVLINK="2", LOST_INDEX="1", LOST_FLAG=str(flag), FIELDS_FAIL_FLAG=str(flag),
                 FIELDS_FAIL_GPUS="2", flag=flag)
    reasons = [line["degraded"] for line in lines]
    assert reasons == [None, None, "GPU 1 is lost; GPU 2: nvmlDeviceGetFieldValues failed: Unknown Error",
                       "GPU 1 is lost; GPU 2: nvmlDeviceGetFieldValues failed: Unknown Error", "GPU 1 is lost",
                       None, None, None, None]
    gpus = [sorted({link["gpu"] for link in line["nvlink"]}) for line in lines]
    assert gpus == [[0, 1, 2]] * 2 + [[0]] * 2 + [[0, 2]] + [[0, 1, 2]] * 4  # GPU 1 asked again after 30 s
    tx = [(link["txBytes"], link["txRate"]) for link in (line["nvlink"][0] for line in lines)]  # GPU 0, link 0
    assert tx[3] == ((5 + 4 * 100) * KIB, 0.0)  # the dip: its 4th read, rated 0
    assert lines[4]["nvlink"][2]["txRate"] == 0.0  # GPU 2 answers again: counted afresh
    link1 = lines[5]["nvlink"][1]  # GPU 0, link 1: rx (+200 KiB x 2 a read) passed MAX_KIB, tx did not
    assert (link1["txBytes"], link1["rxBytes"], link1["rxRate"]) == ((MAX_KIB_EDGE + 6 * 200) * KIB, None, None)
    wrapped = lines[7]["nvlink"][1]  # GPU 0, link 1 at its 8th read: rx wrapped past 2^64 KiB, tx not yet
    assert (wrapped["txBytes"], wrapped["rxBytes"], wrapped["rxRate"]) == (None, (WRAPPING + 8 * 400 - 2**64) * KIB,
                                                                            0.0)


def test_collector_reads_pruned_entries_alike(monkeypatch, stub):
    """rx counters and error counters answering NOT_SUPPORTED: pruned after the first answer in both backends, rx
    null, tx rated (GPU 1, link 1: 200 KiB a read, 1 s apart)."""
    lines = both(monkeypatch, stub, "3", NVLINK="2", GPUS="2", UNSUPPORTED="nvlinkrx,nvlinkerrors")
    link = lines[2]["nvlink"][3]
    assert (link["gpu"], link["link"], link["rxBytes"], link["rxRate"], link["txRate"]) == (1, 1, None, None,
                                                                                          200 * KIB)
    assert link["errors"] == {"crcFlit": None, "crcData": None, "replay": None, "recovery": None}


def test_problems_are_told_in_gpu_order_whichever_read_found_them(monkeypatch, stub, tmp_path):
    """1 s a tick: at tick 3 GPU 2 takes its slow read (staggered) and fails there, while GPU 1 is found lost by the
    data counters' read that follows every slow read; the reason still names GPU 1 first, as GPU by GPU did."""
    flag = tmp_path / "flag"
    lines = both(monkeypatch, stub, "4", "--flag-at", "3", str(flag), GPUS="3", NVLINK="1", LOST_INDEX="1",
                 LOST_FLAG=str(flag), FIELDS_FAIL_FLAG=str(flag), FIELDS_FAIL_GPUS="2", flag=flag)
    assert lines[3]["degraded"] == "GPU 1 is lost; GPU 2: nvmlDeviceGetFieldValues failed: Unknown Error"
    assert [link["gpu"] for link in lines[3]["nvlink"]] == [0]


def test_links_stand_while_idle_and_change_with_a_rate_or_a_slow_read(monkeypatch, stub):
    """One link, rx unsupported, tx from 1000 KiB (+100 a read). At tick 3 it goes down and its counter stays at
    tick 2's 1300 KiB: the same counter with a rate of 0 now. Tick 4 repeats tick 3 (the records stand); tick 5's
    slow read finds it inactive, though no counter moved."""
    lines = both(monkeypatch, stub, "7", "--down-at", "3", "0:0", "--env-at", "3", "NVML_STUB_NVLINK_BASE=1300",
                 GPUS="1", NVLINK="1", UNSUPPORTED="nvlinkrx", NVLINK_BASE="1000")
    tx = [(link["txBytes"] // KIB, link["txRate"], link["state"]) for link in (line["nvlink"][0] for line in lines)]
    assert tx == [(1100, 0.0, "active"), (1200, 100 * KIB, "active"), (1300, 100 * KIB, "active"),
                  (1300, 0.0, "active"), (1300, 0.0, "active"), (1300, 0.0, "inactive"), (1300, 0.0, "inactive")]
