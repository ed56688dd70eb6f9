"""TPU, Neuron and Gaudi through the whole service: REST, WebSocket, Prometheus, SDK keys and /api/health,
with each source failing and coming back while the others and the service carry on."""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import time

import orjson
import psutil
import pytest
from conftest import FIXTURES
from prometheus_client.parser import text_string_to_metric_families
from service_process import Service
from test_supervise import gone, wait_for
from tpu_standin import GIB, StandInServer, StandInService

from tracklab_sysmon import sdk
from tracklab_sysmon.collectors.gaudi import GaudiCollector
from tracklab_sysmon.collectors.neuron import NeuronCollector
from tracklab_sysmon.collectors.supervise import Backoff
from tracklab_sysmon.collectors.tpu import TpuCollector
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.server import ws
from tracklab_sysmon.server.app import create_app

NODE = "accel-node"
DEADLINE = 30.0
QUICK = Backoff(first=0.05, most=0.2)


@pytest.fixture
def controls(tmp_path: pathlib.Path, monkeypatch) -> dict[str, pathlib.Path]:
    """Both tool stand-ins first on PATH, fast, each steered by its control file; their pids logged."""
    files = {"neuron": tmp_path / "neuron-control", "gaudi": tmp_path / "hlsmi-control",
             "neuron-pids": tmp_path / "neuron-pids", "gaudi-pids": tmp_path / "hlsmi-pids"}
    files["neuron"].write_text("report 0")
    files["gaudi"].write_text("report 0")
    path = pathlib.os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{FIXTURES / 'neuron-monitor'}:{FIXTURES / 'hl-smi'}:{path}")
    for prefix, name in (("NEURON", "neuron"), ("HLSMI", "gaudi")):
        monkeypatch.setenv(f"{prefix}_STANDIN_PERIOD", "0.05")
        monkeypatch.setenv(f"{prefix}_STANDIN_CONTROL", str(files[name]))
        monkeypatch.setenv(f"{prefix}_STANDIN_PIDS", str(files[f"{name}-pids"]))
    return files


@pytest.fixture
def tpu():
    server = StandInServer(StandInService()).start()
    yield server
    server.stop()


async def _until(client, predicate, what: str) -> tuple[dict, dict]:
    """Poll /api/system/metrics and /api/health until `predicate(node, health)` holds."""
    end = time.monotonic() + DEADLINE
    while True:
        health = await (await client.get("/api/health")).json()  # first: the snapshot read next is as new or newer
        node = (await (await client.get("/api/system/metrics")).json())[0]
        if predicate(node, health):
            return node, health
        assert time.monotonic() < end, f"timed out waiting for {what}: {health['collectors']}"
        await asyncio.sleep(0.05)


def _by_vendor(node: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for device in node["accelerators"]:
        found.setdefault(device["vendor"], []).append(device)
    return found


def _states(health: dict) -> dict[str, str]:
    return {name: health["collectors"][name]["status"] for name in ("tpu", "neuron", "gaudi")}


async def test_every_source_reaches_rest_websocket_prometheus_and_the_sdk(aiohttp_client, controls, tpu):
    """All three sources' devices, with the stand-ins' exact values, in every output of the service."""
    collectors = (TpuCollector("/nonexistent", address=tpu.address), NeuronCollector(backoff=QUICK),
                  GaudiCollector(backoff=QUICK))
    client = await aiohttp_client(create_app(ServiceConfig(node_id=NODE, interval=0.1, history=50),
                                             collectors=collectors))
    # ok with devices from all three: a tool's collector is ok from its start, before its first rows
    node, health = await _until(client, lambda n, h: set(_states(h).values()) == {"ok"} and set(_by_vendor(n)) >= {
        "google", "aws", "habana"}, "all three ok and reporting")
    devices = _by_vendor(node)
    assert [(d["type"], d["utilization"], d["memory"]["used"]) for d in devices["google"]][:2] == [
        ("tpu", 87.5, 2 * GIB), ("tpu", 12.25, 3 * GIB)]
    assert [d["utilization"] for d in devices["aws"]] == [42.02, 15.5, 0.0, 32.0, 0.0, 0.0]
    assert devices["aws"][1]["neuronCores"][0] == {"index": 2, "utilization": 10.5, "memoryUsed": 413263488}
    assert devices["aws"][1]["sramEccErrors"] == {"corrected": 3, "uncorrected": 0}
    assert [d["utilization"] for d in devices["habana"]] == [15.0, 0.0, 97.0, 100.0, 0.0, 0.0, 3.0, 0.0]
    assert (devices["habana"][2]["power"], devices["habana"][2]["moduleId"]) == (420.0, 0)
    assert health["status"] == "healthy"

    async with client.ws_connect(ws.WS_PATH) as conn:
        while True:
            frame = orjson.loads((await asyncio.wait_for(conn.receive(), DEADLINE)).data)
            if frame["type"] == "metrics":
                break
    assert sorted({d["vendor"] for d in frame["data"]["accelerators"]}) == ["aws", "google", "habana"]

    text = await (await client.get("/metrics")).text()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}

    def value(name: str, **labels: str) -> float:
        return samples[("tracklab_sysmon_" + name, tuple(sorted({"node_id": NODE, **labels}.items())))]

    assert value("gpu_utilization_ratio", gpu="0", uuid="", vendor="google") == 0.875
    assert value("gpu_utilization_ratio", gpu="0", uuid="", vendor="aws") == 0.4202
    assert value("gpu_power_watts", gpu="2", uuid="01P0-HL2080A0-15-TNCN02-00-02", vendor="habana") == 420.0
    assert value("neuroncore_utilization_ratio", gpu="1", core="3") == 0.205
    assert value("accelerator_ecc_errors_total", gpu="1", vendor="aws", memory="sram", kind="corrected") == 3.0

    flat = sdk.flatten_snapshot(node)
    assert flat["system/tpu.0.utilization"] == 87.5  # the only tpu 0: no vendor in the key
    assert flat["system/npu.aws.3.utilization"] == 32.0  # Neuron and Gaudi devices are both npu 0-5
    assert flat["system/npu.habana.2.power"] == 420.0
    assert flat["system/npu.7.memory.used"] == 512 * 2**20  # Gaudi 6 and 7 collide with nothing


async def test_each_source_fails_alone_and_recovers(aiohttp_client, controls, tpu):
    """A dead TPU service, an exiting neuron-monitor, a garbage-printing hl-smi: only that collector is
    error (with why) while the others stay ok and the service serves; each comes back with new values."""
    collectors = (TpuCollector("/nonexistent", address=tpu.address), NeuronCollector(backoff=QUICK),
                  GaudiCollector(backoff=QUICK))
    client = await aiohttp_client(create_app(ServiceConfig(node_id=NODE, interval=0.1, history=50),
                                             collectors=collectors))
    await _until(client, lambda n, h: set(_states(h).values()) == {"ok"}, "all three ok")

    tpu.stop()
    _, health = await _until(client, lambda n, h: _states(h)["tpu"] == "error", "the TPU error")
    assert health["collectors"]["tpu"]["lastError"].startswith(
        f"RpcFailed: TPU runtime metrics service at {tpu.address}: UNAVAILABLE")
    assert (_states(health)["neuron"], _states(health)["gaudi"], health["status"]) == ("ok", "ok", "degraded")

    controls["neuron"].write_text("exit 7")
    controls["gaudi"].write_text("garbage")
    _, health = await _until(client, lambda n, h: set(_states(h).values()) == {"error"}, "all three errors")
    assert health["collectors"]["neuron"]["lastError"].startswith(
        "SourceError: neuron-monitor exited with status 7 (stderr: neuron-monitor stand-in: told to exit)")
    assert health["collectors"]["gaudi"]["lastError"] == (
        "SourceError: hl-smi printed a line with 1 columns, not 12: 'Error: hlml_device_get_utilization failed'")
    node = (await (await client.get("/api/system/metrics")).json())[0]
    assert (node["node_id"], node["accelerators"]) == (NODE, [])  # the service still publishes snapshots

    tpu.service.metrics[next(iter(tpu.service.metrics))] = {0: 1, 1: 1, 2: 1, 3: 1}  # HBM used now 1 byte each
    tpu.start()
    controls["neuron"].write_text("report 1")
    controls["gaudi"].write_text("report 1")
    node, health = await _until(client, lambda n, h: set(_states(h).values()) == {"ok"}, "all three back")
    devices = _by_vendor(node)
    assert devices["google"][0]["memory"]["used"] == 1
    assert devices["aws"][0]["utilization"] == 55.0
    assert devices["habana"][2]["utilization"] == 12.0
    assert health["status"] == "healthy"


async def test_absent_sources_are_unavailable_with_the_reason(aiohttp_client, monkeypatch, tmp_path):
    """No tools on PATH and no service listening: three unavailable collectors, a healthy service."""
    monkeypatch.setenv("PATH", str(tmp_path))
    collectors = (TpuCollector("/nonexistent", address="127.0.0.1:1"), NeuronCollector(), GaudiCollector())
    client = await aiohttp_client(create_app(ServiceConfig(node_id=NODE, interval=0.1, history=5),
                                             collectors=collectors))
    health = await (await client.get("/api/health")).json()
    assert _states(health) == {"tpu": "unavailable", "neuron": "unavailable", "gaudi": "unavailable"}
    assert health["collectors"]["neuron"]["lastError"] == (
        "neuron-monitor not found (looked in PATH, /opt/aws/neuron/bin)")
    assert health["collectors"]["gaudi"]["lastError"] == "hl-smi not found (looked in PATH)"
    assert health["collectors"]["tpu"]["lastError"].startswith("no TPU runtime metrics service answers at 127.0.0.1:1")
    assert health["status"] == "healthy"


def _pids(path: pathlib.Path) -> list[int]:
    return [int(p) for p in path.read_text().split()] if path.exists() else []


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL", "parent exit"])
def test_the_real_service_leaves_no_child_behind(controls, tpu, tmp_path, how):
    """`serve` with the stand-ins on PATH runs both tools as children; after SIGTERM or its --parent-pid
    exiting (children silent: killed by the service), or SIGKILL (children printing: their next write fails),
    neither is left running. --tpu-metrics-addr reaches the TPU service."""
    parent = psutil.Popen(["sleep", "600"]) if how == "parent exit" else None
    flags = ["--tpu-metrics-addr", tpu.address, "--interval", "0.2"]
    if parent is not None:
        flags += ["--parent-pid", str(parent.pid)]
    service = Service(tmp_path, *flags)
    try:
        wait_for(lambda: _pids(controls["neuron-pids"]) and _pids(controls["gaudi-pids"]), "both tools started")

        def all_ok() -> bool:
            status, _, body = service.get("/api/health")
            return status == 200 and all(orjson.loads(body)["collectors"][c]["status"] == "ok"
                                         for c in ("tpu", "neuron", "gaudi"))

        wait_for(all_ok, "the three collectors to be ok")
        children = _pids(controls["neuron-pids"]) + _pids(controls["gaudi-pids"])
        assert not any(gone(pid) for pid in children)
        if how != "SIGKILL":  # silent children never hit a closed pipe: only the service's own kill ends them
            controls["neuron"].write_text("hang")
            controls["gaudi"].write_text("hang")
        if how == "parent exit":
            parent.kill()
            parent.wait(DEADLINE)
            assert service.proc.wait(DEADLINE) == 0
        else:
            service.stop(getattr(signal, how))
        wait_for(lambda: all(gone(pid) for pid in children), "the tools to be gone")
    finally:
        service.kill()
        if parent is not None and parent.poll() is None:
            parent.kill()
        for pid in _pids(controls["neuron-pids"]) + _pids(controls["gaudi-pids"]):  # none, unless this failed
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
