"""MIG utilisation per GPU instance from DCGM profiling, through the stand-in DCGM bindings and NVML stub."""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys
import urllib.request

import aiohttp
import orjson
import pytest
from conftest import require_command
from hypothesis import given
from hypothesis import strategies as st
from nvml_stub.build import build_stub, stub_env
from prometheus_client.parser import text_string_to_metric_families
from test_gpu_nvidia import _serve

from tracklab_sysmon._dcgm import BLANK, HIERARCHY_SECONDS, RETRY_SECONDS, DcgmProfiler, _mig_profiling
from tracklab_sysmon.model import MigProfiling

STANDIN = pathlib.Path(__file__).parent / "dcgm_standin"
PROBE = str(pathlib.Path(__file__).parent / "nvml_stub" / "probe.py")
DEADLINE = 10.0  # upper bound on waiting for a WebSocket frame; never a speed assertion
# GPU 1 has MIG on in the NVML stub: slots 0 and 1 hold GPU instances 1 and 2 (DCGM entities 8 and 9).
MIG = {"FAKE_DCGM_MIG": "1:1:8,1:2:9", "FAKE_DCGM_MIG_VALUES": json.dumps({"9": {"1001": 0.75, "1002": None,
                                                                                  "1005": 0.0625}})}


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> pathlib.Path:
    require_command("cc")
    return build_stub(tmp_path_factory.mktemp("nvml"))


def probe(lib_dir: pathlib.Path, extra: dict[str, str], *args: str, **scenario: str) -> list[dict]:
    env = {**stub_env(lib_dir, **scenario), "TRACKLAB_SYSMON_DCGM_BINDINGS": str(STANDIN), **extra}
    done = subprocess.run([sys.executable, PROBE, *args], env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_each_mig_instance_gets_its_gpu_instance_figures_by_uuid(stub):
    """DCGM's GPU_I figures land on the NVML MIG device with the same (GPU, GPU instance id), in percent."""
    (line,) = probe(stub, MIG, "1", "--dcgm", gpus="2", mig="1")
    plain, mig = line["accelerators"]
    first, second = mig["mig"]["instances"]
    assert first["uuid"] == "MIG-00000000-0000-0000-0001-000000000000" and first["gpuInstanceId"] == 1
    assert first["profiling"] == {"graphicsActive": 50.0, "smActive": 25.0, "dramActive": 12.5}
    assert second["profiling"] == {"graphicsActive": 75.0, "smActive": None, "dramActive": 6.25}  # blank: null
    assert plain["mig"]["instances"] == [] and plain["profiling"]["smActive"] == 50.0
    assert line["profiling"]["mig"] == {"instances": 2, "reason": None}


def test_instances_dcgm_does_not_list_stay_without_figures(stub):
    """A MIG device whose GPU instance DCGM does not list keeps null profiling; the rest are matched."""
    (line,) = probe(stub, {"FAKE_DCGM_MIG": "1:2:9,0:1:3"}, "1", "--dcgm", gpus="2", mig="1")
    first, second = line["accelerators"][1]["mig"]["instances"]
    assert first["profiling"] is None and second["profiling"]["graphicsActive"] == 50.0


def test_no_gpu_instances_in_dcgm_says_so(stub):
    """With DCGM up but no GPU instance in its hierarchy, MIG devices have null profiling and health says why."""
    (line,) = probe(stub, {}, "1", "--dcgm", gpus="2", mig="1")
    assert [i["profiling"] for i in line["accelerators"][1]["mig"]["instances"]] == [None, None]
    assert line["profiling"]["source"] == "dcgm"
    assert line["profiling"]["mig"] == {"instances": 0, "reason": "DCGM lists no MIG GPU instance"}


def test_bindings_that_cannot_list_instances_keep_gpu_profiling(stub, tmp_path):
    """Bindings without dcgm_agent (no MIG hierarchy call) still give GPU profiling; health says why MIG has none."""
    for module in ("DcgmReader.py", "dcgm_fields.py", "dcgm_structs.py"):
        (tmp_path / module).write_text((STANDIN / module).read_text())
    (line,) = probe(stub, {**MIG, "TRACKLAB_SYSMON_DCGM_BINDINGS": str(tmp_path)}, "1", "--dcgm", gpus="2", mig="1")
    assert line["accelerators"][0]["profiling"]["smActive"] == 50.0 and line["profiling"]["source"] == "dcgm"
    assert [i["profiling"] for i in line["accelerators"][1]["mig"]["instances"]] == [None, None]
    assert line["profiling"]["mig"] == {
        "instances": 0, "reason": "DCGM could not list MIG GPU instances: ModuleNotFoundError: "
                                  "No module named 'dcgm_agent'"}


def test_not_requested_means_no_dcgm_and_says_so(stub):
    """Without --enable-dcgm-profiling DCGM is not touched: null MIG profiling, reason names the flag."""
    (line,) = probe(stub, MIG, "1", gpus="2", mig="1")
    assert [i["profiling"] for i in line["accelerators"][1]["mig"]["instances"]] == [None, None]
    assert "--enable-dcgm-profiling" in line["profiling"]["mig"]["reason"]


@given(st.dictionaries(st.sampled_from([1001, 1002, 1005, 1003, "1001"]),
                       st.none() | st.booleans() | st.text(max_size=3) | st.integers() | st.floats(), max_size=5))
def test_gpu_instance_values_become_percent_or_null(values):
    """Any value DCGM's reader may hand over is a percent (ratio x 100) when it is a real number under the
    blank sentinels, else null; nothing else is ever taken from the dict."""
    def expected(field_id):
        value = values.get(field_id)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < BLANK
        return round(float(value) * 100, 3) if ok else None

    assert _mig_profiling(values) == MigProfiling(expected(1001), expected(1002), expected(1005))


# ---------------------------------------------------------------- the profiler itself, on a fake clock


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_instances_created_later_are_watched_after_the_hierarchy_period(monkeypatch, tmp_path):
    """MIG instances created while the service runs are picked up at the next hierarchy check, by one reconnect."""
    flag, connects = tmp_path / "created", tmp_path / "connects"
    monkeypatch.setenv("FAKE_DCGM_MIG_FLAG", str(flag))
    monkeypatch.setenv("FAKE_DCGM_MIG_LATER", "0:1:0")
    monkeypatch.setenv("FAKE_DCGM_CONNECTS", str(connects))
    clock = Clock()
    profiler = DcgmProfiler(bindings=str(STANDIN), monotonic=clock)
    assert profiler.read() is not None and profiler.mig == {}
    flag.touch()
    clock.now += HIERARCHY_SECONDS - 1
    profiler.read()
    assert profiler.mig == {}  # not looked at yet
    clock.now += 1
    assert profiler.read() == {0: profiler.read()[0]}
    assert profiler.mig == {(0, 1): MigProfiling(graphics_active=50.0, sm_active=25.0, dram_active=12.5)}
    assert connects.read_text().split() == ["0", "1"]  # the GPU-only reader, then one over GPUs + 1 instance


def test_instances_destroyed_later_are_dropped_and_health_says_none_are_left(monkeypatch, tmp_path):
    """When the last MIG instance is destroyed, the next hierarchy check goes back to a GPU-only reader."""
    flag = tmp_path / "destroyed"
    monkeypatch.setenv("FAKE_DCGM_MIG", "0:1:0")
    monkeypatch.setenv("FAKE_DCGM_MIG_FLAG", str(flag))
    monkeypatch.setenv("FAKE_DCGM_MIG_LATER", "")
    clock = Clock()
    profiler = DcgmProfiler(bindings=str(STANDIN), monotonic=clock)
    profiler.read()
    assert list(profiler.mig) == [(0, 1)] and profiler.mig_reason is None
    flag.touch()
    clock.now += HIERARCHY_SECONDS
    assert profiler.read() is not None and profiler.mig == {}
    assert profiler.mig_reason == "DCGM lists no MIG GPU instance"


def test_engine_that_stops_is_reported_and_reconnected_after_the_retry_period(monkeypatch, tmp_path):
    """Reads failing mid-run drop the MIG figures and say why; after RETRY_SECONDS DCGM is asked again."""
    flag = tmp_path / "stopped"
    monkeypatch.setenv("FAKE_DCGM_STOP_FLAG", str(flag))
    monkeypatch.setenv("FAKE_DCGM_MIG", "0:1:0")
    clock = Clock()
    profiler = DcgmProfiler(bindings=str(STANDIN), monotonic=clock)
    assert profiler.read() is not None and len(profiler.mig) == 1
    flag.touch()
    assert profiler.read() is None and profiler.mig == {}
    assert profiler.reason.startswith("DCGM host engine at 127.0.0.1 stopped answering: DCGMError")
    flag.unlink()
    clock.now += RETRY_SECONDS - 1
    assert profiler.read() is None  # not asked again yet
    clock.now += 1
    assert profiler.read() is not None and profiler.mig[(0, 1)].graphics_active == 50.0 and profiler.reason is None


# ---------------------------------------------------------------- the whole service


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


async def _ws_metrics(url: str) -> dict:
    async with aiohttp.ClientSession() as session, session.ws_connect(url + "/ws/system-metrics") as conn:
        while True:
            frame = orjson.loads((await asyncio.wait_for(conn.receive(), DEADLINE)).data)
            if frame["type"] == "metrics":
                return frame


def test_service_serves_mig_utilisation_in_rest_websocket_prometheus_and_health(stub, tmp_path, monkeypatch):
    """REST, the WebSocket frame and /metrics carry each MIG instance's figures; health counts the instances."""
    monkeypatch.setenv("TRACKLAB_SYSMON_DCGM_BINDINGS", str(STANDIN))
    for key, value in MIG.items():
        monkeypatch.setenv(key, value)
    proc, url = _serve(stub, tmp_path, "--enable-dcgm-profiling", "--interval", "3600", gpus="2", mig="1")
    try:
        (node,) = _get(url + "/api/system/metrics")
        gpu = [a for a in node["accelerators"] if a["vendor"] == "nvidia"][1]
        first, second = gpu["mig"]["instances"]
        assert first["profiling"] == {"graphicsActive": 50.0, "smActive": 25.0, "dramActive": 12.5}
        health = _get(url + "/api/health")
        assert health["dcgm"]["source"] == "dcgm" and health["dcgm"]["mig"] == {"instances": 2, "reason": None}
        frame = asyncio.run(_ws_metrics(url))
        assert [a for a in frame["data"]["accelerators"] if a["vendor"] == "nvidia"][1]["mig"] == gpu["mig"]
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            text = response.read().decode()
        samples = {(s.name, frozenset(s.labels.items())): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        labels = {"node_id": node["node_id"], "gpu": "1", "uuid": gpu["uuid"], "mig_uuid": second["uuid"],
                  "gpu_instance_id": "2"}
        assert samples[("tracklab_sysmon_gpu_mig_graphics_active_ratio", frozenset(labels.items()))] == 0.75
        assert samples[("tracklab_sysmon_gpu_mig_dram_active_ratio", frozenset(labels.items()))] == 0.0625
        assert ("tracklab_sysmon_gpu_mig_sm_active_ratio", frozenset(labels.items())) not in samples  # blank
    finally:
        proc.terminate()
        proc.wait(timeout=10)
