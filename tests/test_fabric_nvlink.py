"""NVLink through the real nvidia-ml-py bindings against the stand-in libnvidia-ml.so's field values.

Each scenario runs in a subprocess whose LD_LIBRARY_PATH points at the stub (see test_gpu_nvidia.py);
the field-value decoder is also fuzzed against pynvml's own `c_nvmlFieldValue_t`.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import math
import pathlib
import struct
import subprocess
import sys
import time
import urllib.request

import aiohttp
import orjson
import pynvml
import pytest
from conftest import require_command
from hypothesis import given
from hypothesis import strategies as st
from nvml_stub.build import build_stub, stub_env
from prometheus_client.parser import text_string_to_metric_families
from test_gpu_nvidia import _serve

from tracklab_sysmon import _nvlink

PROBE = str(pathlib.Path(__file__).parent / "nvml_stub" / "nvlink_probe.py")
KIB = 1024
DEADLINE = 10.0  # upper bound on waiting for a WebSocket frame; never a speed assertion


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> pathlib.Path:
    require_command("cc")
    return build_stub(tmp_path_factory.mktemp("nvml"))


def probe(lib_dir: pathlib.Path | None, *args: str, **scenario: str) -> list[dict]:
    env = stub_env(lib_dir or pathlib.Path("/nonexistent"), **scenario)
    done = subprocess.run([sys.executable, PROBE, *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _tx_kib(gpu: int, link: int, reads: int) -> int:
    """The stub's data counter: 1,000,000 KiB x (gpu + 1) plus 100 KiB x (link + 1) per read."""
    return 1_000_000 * (gpu + 1) + reads * 100 * (link + 1)


# ---------------------------------------------------------------- the decoder, against pynvml's struct


def test_field_ids_are_nvml_headers():
    """Our field ids are the ones nvidia-ml-py (generated from nvml.h) defines."""
    assert _nvlink.FI_LINK_COUNT == pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT
    assert _nvlink.FI_THROUGHPUT_DATA_TX == pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX
    assert _nvlink.FI_THROUGHPUT_DATA_RX == pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX
    assert _nvlink.FI_GET_SPEED == pynvml.NVML_FI_DEV_NVLINK_GET_SPEED
    assert _nvlink.FI_GET_STATE == pynvml.NVML_FI_DEV_NVLINK_GET_STATE
    names = {"crc_flit": "CRC_FLIT_ERROR_COUNT", "crc_data": "CRC_DATA_ERROR_COUNT",
             "replay": "REPLAY_ERROR_COUNT", "recovery": "RECOVERY_ERROR_COUNT"}
    for kind, name in names.items():
        expected = [getattr(pynvml, f"NVML_FI_DEV_NVLINK_{name}_L{link}") for link in range(12)]
        assert [fid for fid, scope, slot in _nvlink.status_slots(12) if slot.kind == kind] == expected
    scoped = {"crc_flit": pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_CRC, "replay": pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY,
              "recovery": pynvml.NVML_FI_DEV_NVLINK_ERROR_DL_RECOVERY}
    for kind, field_id in scoped.items():  # links 12+: the scoped DL counters, link in scopeId
        assert [(fid, scope) for fid, scope, slot in _nvlink.status_slots(18) if slot.kind == kind][12:] == [
            (field_id, link) for link in range(12, 18)]
    assert [slot.link for _, _, slot in _nvlink.status_slots(18) if slot.kind == "crc_data"] == list(range(12))


def test_record_layout_is_pynvmls_struct():
    """The 40-byte record we unpack has pynvml's c_nvmlFieldValue_t offsets."""
    record = pynvml.c_nvmlFieldValue_t
    assert ctypes.sizeof(record) == _nvlink.RECORD.size == 40
    assert [record.fieldId.offset, record.scopeId.offset, record.timestamp.offset, record.latencyUsec.offset,
            record.valueType.offset, record.nvmlReturn.offset, record.value.offset] == [0, 4, 8, 16, 24, 28, 32]


_UNION = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}
_RANGES = {0: None, 1: (0, 2**32 - 1), 2: (0, 2**64 - 1), 3: (0, 2**64 - 1), 4: (-(2**63), 2**63 - 1),
           5: (-(2**31), 2**31 - 1), 6: (0, 2**16 - 1)}


@st.composite
def _entries(draw):
    kind = draw(st.integers(0, 6))
    bounds = _RANGES[kind]
    value = draw(st.floats(allow_nan=False) if bounds is None else st.integers(*bounds))
    return (draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)), kind,
            draw(st.sampled_from([0, 0, 0, 2, 3, 15, 999])), value)


@given(st.lists(_entries(), max_size=8))
def test_decoder_reads_back_what_pynvml_structs_hold(entries):
    """Any array of pynvml field values, as NVML fills it, decodes to the same ids, codes and values."""
    array = (pynvml.c_nvmlFieldValue_t * len(entries))()
    for item, (field_id, scope, kind, ret, value) in zip(array, entries, strict=True):
        item.fieldId, item.scopeId, item.valueType, item.nvmlReturn = field_id, scope, kind, ret
        setattr(item.value, _UNION[kind], value)
    decoded = _nvlink.parse_field_values(bytes(memoryview(array).cast("B")))
    expected = [
        _nvlink.FieldValue(fid, scope, ret, (None if kind == 0 and not math.isfinite(value) else value)
                           if ret == 0 else None)
        for fid, scope, kind, ret, value in entries
    ]
    assert decoded == expected


@given(st.lists(_entries(), max_size=8))
def test_fast_counter_decoder_agrees_with_the_full_decoder(entries):
    """The per-tick decoder gives each entry's unsigned value (None otherwise), exactly as the full decoder reads it."""
    array = (pynvml.c_nvmlFieldValue_t * len(entries))()
    for item, (field_id, scope, kind, ret, value) in zip(array, entries, strict=True):
        item.fieldId, item.scopeId, item.valueType, item.nvmlReturn = field_id, scope, kind, ret
        setattr(item.value, _UNION[kind], value)
    raw = bytes(memoryview(array).cast("B"))
    full = _nvlink.parse_field_values(raw)
    unsigned = {1, 2, 3, 6}
    assert _nvlink.counters(raw) == [
        v.value if v.nvml_return == 0 and kind in unsigned else None
        for v, (_, _, kind, _, _) in zip(full, entries, strict=True)
    ]


@given(st.binary(max_size=200))
def test_decoder_takes_any_bytes_without_crashing(raw):
    """Arbitrary bytes decode (whole records) or raise ValueError (a partial record), never anything else."""
    try:
        values = _nvlink.parse_field_values(raw)
    except ValueError:
        assert len(raw) % 40
    else:
        assert len(values) == len(raw) // 40
        assert all(v.value is None or not isinstance(v.value, float) or math.isfinite(v.value) for v in values)


def test_unknown_value_type_and_nan_are_null():
    """A value type NVML may add later, and a NaN double, decode as None, not as a guess."""
    raw = _nvlink.RECORD.pack(138, 0, 0, 0, 7, 0, b"\x01" * 8) + _nvlink.RECORD.pack(
        138, 1, 0, 0, 0, 0, struct.pack("=d", math.nan))
    assert [v.value for v in _nvlink.parse_field_values(raw)] == [None, None]


# ---------------------------------------------------------------- the collector against the stub


def test_links_report_bytes_rates_errors_state_and_speed(stub):
    """Two GPUs x two links: KiB counters in bytes, per-second rates, each error counter, state and speed in bits/s."""
    first, second = probe(stub, "2", NVLINK="2", GPUS="2", NVLINK_DOWN="1:1")
    assert first["degraded"] is None and len(second["nvlink"]) == 4
    link = second["nvlink"][1]  # GPU 0, link 1: read twice now
    assert (link["gpu"], link["link"], link["uuid"]) == (0, 1, "GPU-00000000-0000-0000-0000-000000000000")
    assert link["txBytes"] == _tx_kib(0, 1, 2) * KIB and link["rxBytes"] == 2 * _tx_kib(0, 1, 2) * KIB
    assert (link["txRate"], link["rxRate"]) == (200 * KIB, 400 * KIB)  # 200 KiB and 400 KiB in 1 s
    assert first["nvlink"][1]["txRate"] == 0.0  # first sight: nothing to rate yet
    assert link["errors"] == {"crcFlit": 1, "crcData": 101, "replay": 201, "recovery": 301}
    assert (link["state"], link["speed"]) == ("active", 26562 * 8e6)
    down = second["nvlink"][3]  # GPU 1, link 1 is inactive: counters frozen
    assert (down["gpu"], down["link"], down["state"], down["txRate"]) == (1, 1, "inactive", 0.0)
    assert down["errors"] == {"crcFlit": 1001, "crcData": 1101, "replay": 1201, "recovery": 1301}


def test_a_link_going_down_shows_on_the_next_slow_read_though_earlier_answers_repeated(stub):
    """The slow tier keeps its last decoding while a GPU's answers repeat (only their timestamps move): a link that
    turns inactive between slow reads is still seen on the next one. GPU 0 reads its status at ticks 0, 5 and 10."""
    lines = probe(stub, "11", "--down-at", "3", "0:1", NVLINK="2", GPUS="1")
    states = [[link["state"] for link in line["nvlink"]] for line in lines]
    assert states == [["active", "active"]] * 5 + [["active", "inactive"]] * 6
    assert lines[10]["nvlink"][1]["errors"] == {"crcFlit": 1, "crcData": 101, "replay": 201, "recovery": 301}


def test_same_answer_leaves_out_only_the_timestamps():
    """Two answers decode alike when every record's type, return code and value match, whatever their timestamps."""
    def answer(state: int, stamp: int, ret: int = 0) -> bytes:
        return b"".join(_nvlink.RECORD.pack(_nvlink.FI_GET_STATE, link, stamp + link, 5, 1, ret,
                                            struct.pack("=Q", state if link else 1)) for link in range(3))

    assert _nvlink.same_answer(answer(1, 100), answer(1, 200))
    assert not _nvlink.same_answer(answer(1, 100), answer(0, 100))  # a value
    assert not _nvlink.same_answer(answer(1, 100), answer(1, 100, ret=3))  # a return code
    assert not _nvlink.same_answer(answer(1, 100), answer(1, 100)[:80])  # a shorter (pruned) request
    assert not _nvlink.same_answer(answer(1, 100), None)


def test_one_field_values_call_per_gpu_per_tick_and_status_only_on_the_slow_tier(stub):
    """Per GPU: one link-count call at start, one counter call per tick, one state/speed/errors call every 5 s,
    the GPUs' slow calls spread over the period (GPU i's second one comes i % 5 seconds early)."""
    lines = probe(stub, "6", "--counts", "nvmlDeviceGetFieldValues", NVLINK="4", GPUS="8")
    assert lines[-1]["counts"]["nvmlDeviceGetFieldValues"] == 8 * (1 + 6 + 2)
    few = probe(stub, "5", "--counts", "nvmlDeviceGetFieldValues", NVLINK="4", GPUS="8")
    assert few[-1]["counts"]["nvmlDeviceGetFieldValues"] == 8 * (1 + 5 + 1) + 6  # all but GPUs 0 and 5 came round


def test_public_bindings_call_reads_the_same_values(stub):
    """Bindings without the function-pointer helper go through pynvml's public call and read the same links."""
    fast = probe(stub, "2", NVLINK="3", GPUS="2")
    public = probe(stub, "2", "--public-call", NVLINK="3", GPUS="2")
    assert public == fast and public[1]["nvlink"][5]["txRate"] == 300 * KIB


def test_links_past_eleven_read_the_scoped_error_counters(stub):
    """NVML names per-link error ids only for links 0-11: an 18-link GPU's links 12-17 read replay, recovery and
    flit CRC through the scoped DL fields (the stand-in answers 1000 x gpu + 100 x kind + link); no data-CRC
    counter exists for them, so it is null."""
    (line,) = probe(stub, "1", NVLINK="18", GPUS="1")
    links = line["nvlink"]
    assert [link["link"] for link in links] == list(range(18))
    assert links[11]["errors"]["replay"] == 211 and links[17]["txBytes"] == _tx_kib(0, 17, 1) * KIB
    assert links[12]["errors"] == {"crcFlit": 12, "crcData": None, "replay": 212, "recovery": 312}
    assert links[17]["errors"] == {"crcFlit": 17, "crcData": None, "replay": 217, "recovery": 317}


def test_unsupported_counters_are_null_and_never_asked_again(stub):
    """Error counters and status answering NOT_SUPPORTED are null; error entries are asked on the first tick only."""
    lines = probe(stub, "4", "--counts", "nvlinkErrorEntry", NVLINK="2", GPUS="2",
                  UNSUPPORTED="nvlinkerrors,nvlinkstatus")
    link = lines[3]["nvlink"][0]
    assert link["errors"] == {"crcFlit": None, "crcData": None, "replay": None, "recovery": None}
    assert (link["state"], link["speed"]) == (None, None) and link["txRate"] == 100 * KIB
    assert lines[-1]["counts"]["nvlinkErrorEntry"] == 2 * 2 * 4  # GPUs x links x kinds, once


def test_gpus_without_nvlink_make_the_source_unavailable(stub):
    """A driver whose GPUs report no NVLink (NVML_FI_DEV_NVLINK_LINK_COUNT unsupported) is unavailable, saying so."""
    (line,) = probe(stub, "1", GPUS="2")
    assert line["unavailable"] == "no NVIDIA GPU here reports NVLink links (NVML_FI_DEV_NVLINK_LINK_COUNT)"


def test_no_library_is_unavailable_with_reason():
    """Without libnvidia-ml.so.1 the NVLink source is unavailable and names the missing library."""
    (line,) = probe(None, "1")
    assert "libnvidia-ml.so.1 not found" in line["unavailable"]


def test_failing_calls_are_an_error_and_the_source_recovers(stub, tmp_path):
    """While every GPU's field-value call fails the collector raises (error); when they answer again it reports."""
    flag = tmp_path / "fail"
    lines = probe(stub, "4", "--flag-at", "1", str(flag), "--unflag-at", "3", NVLINK="2", GPUS="2",
                  FIELDS_FAIL_FLAG=str(flag))
    assert [("nvlink" in line, "error" in line) for line in lines] == [
        (True, False), (False, True), (False, True), (True, False)]
    assert lines[1]["error"].startswith("RuntimeError: GPU 0: nvmlDeviceGetFieldValues failed: Unknown Error")
    assert lines[3]["nvlink"][0]["txBytes"] == _tx_kib(0, 0, 2) * KIB  # the failed calls counted nothing


def test_a_lost_gpu_drops_its_links_and_the_others_go_on(stub, tmp_path):
    """A GPU lost mid-run loses its links from the section (degraded, saying which) while the other GPU reports."""
    flag = tmp_path / "lost"
    lines = probe(stub, "3", "--flag-at", "1", str(flag), NVLINK="2", GPUS="2", LOST_INDEX="1", LOST_FLAG=str(flag))
    assert [len(line["nvlink"]) for line in lines] == [4, 2, 2]
    assert lines[1]["degraded"] == "GPU 1 is lost" and {link["gpu"] for link in lines[2]["nvlink"]} == {0}


# ---------------------------------------------------------------- the whole service with the stub


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_service_serves_nvlink_in_rest_websocket_and_prometheus(stub, tmp_path):
    """The served snapshot's fabric.nvlink is in REST, the WebSocket frame and /metrics, with the same values."""
    proc, url = _serve(stub, tmp_path, "--interval", "3600", gpus="2", nvlink="2")
    try:
        (node,) = _get(url + "/api/system/metrics")
        links = node["fabric"]["nvlink"]
        assert [(x["gpu"], x["link"]) for x in links] == [(0, 0), (0, 1), (1, 0), (1, 1)]
        # prime and the first tick: two reads, so the counters stand at a known value
        assert links[3]["txBytes"] == _tx_kib(1, 1, 2) * KIB and links[3]["errors"]["recovery"] == 1301
        assert links[3]["txRate"] > 0 and links[3]["state"] == "active"
        health = _get(url + "/api/health")
        assert health["collectors"]["nvlink"]["status"] == "ok"
        frame = asyncio.run(_ws_metrics(url))
        assert frame["data"]["fabric"]["nvlink"] == links
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        samples = {(s.name, frozenset(s.labels.items())): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        labels = {"node_id": node["node_id"], "gpu": "1", "uuid": links[3]["uuid"], "link": "1"}
        assert samples[("tracklab_sysmon_nvlink_transmit_bytes_total", frozenset(labels.items()))] == (
            links[3]["txBytes"])
        assert samples[("tracklab_sysmon_nvlink_errors_total",
                        frozenset({**labels, "error": "crc_data"}.items()))] == 1101
        assert samples[("tracklab_sysmon_nvlink_up", frozenset(labels.items()))] == 1.0
        assert samples[("tracklab_sysmon_nvlink_speed_bytes_per_second", frozenset(labels.items()))] == 26562e6
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def _ws_metrics(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/ws/system-metrics") as conn:
        while True:
            frame = orjson.loads((await asyncio.wait_for(conn.receive(), DEADLINE)).data)
            if frame["type"] == "metrics":
                return frame


def test_service_without_nvlink_says_why_in_health(stub, tmp_path):
    """GPUs without NVLink: the service is healthy, nvlink is unavailable with the reason, fabric.nvlink null."""
    proc, url = _serve(stub, tmp_path, "--interval", "3600", gpus="1")
    try:
        health = _get(url + "/api/health")
        assert health["status"] == "healthy" and health["collectors"]["nvidia"]["status"] == "ok"
        assert health["collectors"]["nvlink"] == {**health["collectors"]["nvlink"], "status": "unavailable",
                                                  "lastError": "no NVIDIA GPU here reports NVLink links "
                                                               "(NVML_FI_DEV_NVLINK_LINK_COUNT)"}
        (node,) = _get(url + "/api/system/metrics")
        assert node["fabric"] is None or node["fabric"]["nvlink"] is None
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait_for(url: str, predicate, what: str) -> dict:
    """Poll /api/health until `predicate(health)` holds; fails after DEADLINE seconds (never a speed check)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        health = _get(url + "/api/health")
        if predicate(health):
            return health
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {DEADLINE} s: {health['collectors']}")
        time.sleep(0.05)


def test_service_marks_only_nvlink_error_while_its_calls_fail_and_recovers(stub, tmp_path):
    """Field-value calls failing mid-run make `nvlink` error (fabric.nvlink null) while `nvidia` stays ok; then back."""
    flag = tmp_path / "fail"
    proc, url = _serve(stub, tmp_path, gpus="2", nvlink="2", fields_fail_flag=str(flag))
    try:
        _wait_for(url, lambda h: h["collectors"]["nvlink"]["status"] == "ok", "nvlink ok")
        flag.touch()
        health = _wait_for(url, lambda h: h["collectors"]["nvlink"]["status"] == "error", "nvlink error")
        assert "nvmlDeviceGetFieldValues failed: Unknown Error" in health["collectors"]["nvlink"]["lastError"]
        assert health["collectors"]["nvidia"]["status"] == "ok" and health["status"] == "degraded"
        (node,) = _get(url + "/api/system/metrics")
        assert (node["fabric"] or {}).get("nvlink") is None and len(node["accelerators"]) >= 2
        flag.unlink()
        _wait_for(url, lambda h: h["collectors"]["nvlink"]["status"] == "ok", "nvlink recovery")
        (node,) = _get(url + "/api/system/metrics")
        assert [x["link"] for x in node["fabric"]["nvlink"]] == [0, 1, 0, 1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_gpu_lost_between_slow_reads_is_not_asked_again_before_its_retry_period(stub, tmp_path):
    """2 GPUs x 1 link, 1 s a tick: GPU 1 lost from tick 2 is asked nothing more for 30 s, though no slow read is due
    (the usual tick's shortcut stands aside while a GPU is lost). GPU 0: the link count, 12 counter calls and slow
    reads at 0, 5 and 10 s; GPU 1: the link count, its slow read at 0 s and counter calls at ticks 0-2."""
    flag = tmp_path / "flag"
    lines = probe(stub, "12", "--flag-at", "2", str(flag), "--counts", "nvmlDeviceGetFieldValues", GPUS="2",
                  NVLINK="1", LOST_INDEX="1", LOST_FLAG=str(flag))
    assert lines[-1]["counts"]["nvmlDeviceGetFieldValues"] == (1 + 12 + 3) + (1 + 1 + 3)
    assert [line["degraded"] for line in lines[:-1]] == [None, None] + ["GPU 1 is lost"] * 10
