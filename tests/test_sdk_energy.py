"""The SDK's energy keys between two log calls, from a real service reading RAPL and Intel fixture trees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import require_command
from test_energy import advance, node_tree
from test_rapl import without_read_access

from tracklab_sysmon.model import EnergySample, GpuEnergy, RaplZone, Snapshot
from tracklab_sysmon.monitor import SystemMonitor
from tracklab_sysmon.sdk import SystemMetricsConfig, init, init_system_metrics, shutdown_system_metrics
from tracklab_sysmon.sdk_energy import EnergyBetweenLogs, energy_totals

DEADLINE = 30.0  # ceiling on waiting for the service to show a change; never a speed assertion


def _zone(zone: str, domain: str, joules: float) -> RaplZone:
    return RaplZone(zone=zone, domain=domain, package=0, joules=joules)


def test_totals_sum_packages_and_dram_and_key_gpus_like_the_other_gpu_keys():
    """cpu = the package zones (not core, which they contain), dram its own; GPUs whose id repeats carry the vendor;
    GPUs the environment hides are left out."""
    from tracklab_sysmon.model import AcceleratorMemory, AcceleratorSample

    def gpu(vendor: str, i: int) -> AcceleratorSample:
        return AcceleratorSample(i, "gpu", None, None, AcceleratorMemory(None, None, None), None, None, None, vendor)

    energy = EnergySample(
        cpu=(_zone("intel-rapl:0", "package", 10.0), _zone("intel-rapl:0:0", "core", 4.0),
             _zone("intel-rapl:1", "package", 5.5), _zone("intel-rapl:0:1", "dram", 2.0)),
        gpus=(GpuEnergy(0, "nvidia", "GPU-a", 100.0), GpuEnergy(0, "intel", None, 7.0),
              GpuEnergy(1, "nvidia", "GPU-b", 9.0)),
    )
    snap = Snapshot("n", 1, accelerators=(gpu("nvidia", 0), gpu("intel", 0), gpu("nvidia", 1)), energy=energy)
    assert energy_totals(snap, {("nvidia", 0), ("intel", 0)}, "system/") == {
        "system/energy.gpu.nvidia.0.joules": 100.0, "system/energy.gpu.intel.0.joules": 7.0,
        "system/energy.cpu.joules": 15.5, "system/energy.dram.joules": 2.0,
    }
    assert energy_totals(Snapshot("n", 1), None, "system/") == {}


def test_between_logs_nothing_until_a_newer_snapshot_and_a_fallen_counter_restarts():
    """A log with no newer snapshot gets no energy key (not a made-up 0); a counter that fell is left out once."""
    meter = EnergyBetweenLogs()
    assert meter.take() == {}
    meter.see(1, {"a": 10.0, "b": 5.0})
    assert meter.take() == {}  # the first snapshot is where counting starts
    meter.see(2, {"a": 12.5, "b": 1.0})
    assert meter.take() == {"a": 2.5}  # b fell (a restarted service): left out, counted from here
    meter.see(3, {"a": 13.0, "b": 1.25, "c": 4.0})
    assert meter.take() == {"a": 0.5, "b": 0.25}  # c is new: counted from the next log


def _node_energy(url: str) -> dict:
    with urllib.request.urlopen(url + "/api/system/metrics", timeout=5) as resp:
        return json.loads(resp.read())[0]["energy"]


def _wait_for(url: str, zone: str, joules: float) -> None:
    """Until the service's snapshot shows `zone` at `joules` (it ticks every 50 ms)."""
    end = time.monotonic() + DEADLINE
    while not any(z["zone"] == zone and z["joules"] == joules for z in _node_energy(url)["cpu"]):
        assert time.monotonic() < end, "the service never showed the new reading"
        time.sleep(0.02)


def test_run_log_records_the_energy_used_between_two_log_calls(tmp_path):
    """Through a real service and Run.log: the first log has what was used since init (2 J of package-0's wrap,
    0.5 J DRAM, 10 J on the xe card); the next, after 1 J more on package-1, has exactly that."""
    root = node_tree(tmp_path)
    flags = ("--proc-root", str(root / "proc"), "--sys-root", str(root / "sys"))
    try:
        with SystemMonitor(rest_port=0, interval=0.05, extra_args=flags) as mon:
            metrics = init_system_metrics(SystemMetricsConfig(service_url=mon.url, cache_duration=3600.0))
            assert metrics is not None
            run = init("energy", name="run1", dir=tmp_path / "runs")
            advance(root)
            _wait_for(mon.url, "intel-rapl:0", 262145.0)
            metrics.refresh()
            run.log({"loss": 1.0})
            (root / "sys/class/powercap/intel-rapl:1/energy_uj").write_text("120001000000\n")
            _wait_for(mon.url, "intel-rapl:1", 120001.0)
            metrics.refresh()
            run.log({"loss": 0.5})
            run.log({"loss": 0.25})  # no newer snapshot fetched: no energy keys rather than zeros
            run.finish()
    finally:
        shutdown_system_metrics()
    first, second, third = (json.loads(line) for line in run.path.read_text().splitlines())
    energy = {k: v for k, v in first.items() if k.startswith("system/energy.")}
    assert energy == {"system/energy.gpu.0.joules": 10.0, "system/energy.cpu.joules": 2.0,
                      "system/energy.dram.joules": 0.5}
    assert {k: v for k, v in second.items() if k.startswith("system/energy.")} == {
        "system/energy.gpu.0.joules": 0.0, "system/energy.cpu.joules": 1.0, "system/energy.dram.joules": 0.0}
    assert not [k for k in third if k.startswith("system/energy.")] and third["loss"] == 0.25


def test_root_only_rapl_is_unavailable_in_the_real_services_health(tmp_path):
    """A service that may not read energy_uj (Linux 5.10+, not root) reports rapl unavailable with the reason."""
    if os.geteuid() == 0:
        require_command("setpriv")
    root = node_tree(tmp_path)
    files = sorted((root / "sys/class/powercap").glob("intel-rapl:*/energy_uj"))
    portfile = tmp_path / "port.json"
    argv = without_read_access(files, [
        sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--portfile", str(portfile),
        "--proc-root", str(root / "proc"), "--sys-root", str(root / "sys"), "--interval", "3600"])
    log = tmp_path / "stderr.log"
    with open(log, "wb") as stderr:
        service = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        end = time.monotonic() + DEADLINE
        while not portfile.exists():
            assert service.poll() is None and time.monotonic() < end, f"the service did not start: {log.read_text()}"
            time.sleep(0.05)
        url = json.loads(portfile.read_text())["url"]
        with urllib.request.urlopen(url + "/api/health", timeout=5) as resp:
            health = json.loads(resp.read())
    finally:
        service.terminate()
        service.wait(DEADLINE)
    rapl = health["collectors"]["rapl"]
    assert rapl["status"] == "unavailable" and rapl["lastError"].startswith("energy_uj is readable by root only")
    assert health["collectors"]["intel"]["status"] == "ok" and health["status"] == "healthy"


@pytest.fixture(autouse=True)
def _no_global_metrics():
    yield
    shutdown_system_metrics()
