"""NVIDIA through the real nvidia-ml-py bindings against a stand-in libnvidia-ml.so built from C.

Each scenario runs in a subprocess whose LD_LIBRARY_PATH points at the stub, so pynvml's own
`CDLL("libnvidia-ml.so.1")` finds it; nothing in our code is patched.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import require_command
from nvml_stub.build import build_stub, stub_env

PROBE = str(pathlib.Path(__file__).parent / "nvml_stub" / "probe.py")


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> pathlib.Path:
    require_command("cc")  # make test installs gcc (SYSTEM_DEPS); under CI its absence fails
    return build_stub(tmp_path_factory.mktemp("nvml"))


def probe(lib_dir: pathlib.Path | None, *args: str, **scenario: str) -> list[dict]:
    """Run the probe with the stub (or with no library at all) and return its JSON lines."""
    env = stub_env(lib_dir, **scenario) if lib_dir else stub_env(pathlib.Path("/nonexistent"), **scenario)
    done = subprocess.run(
        [sys.executable, PROBE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_nvml_is_loaded_lazily_and_off_the_event_loop():
    """Building the collector imports no pynvml (only the first tick does), and it runs in a worker thread."""
    code = ("import sys; from tracklab_sysmon.collectors.nvidia import NvidiaCollector as N; "
            "c = N(enable_dcgm=True); print('pynvml' in sys.modules, c.blocking)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split() == ["False", "True"]


def test_no_library_is_unavailable_with_reason():
    """Without libnvidia-ml.so.1 the collector reports unavailable, says the library is missing, and never
    imported pynvml (a machine without the driver does not carry its bindings for the service's life)."""
    line, modules = probe(None, "1", "--modules")
    assert "libnvidia-ml.so.1 not found" in line["unavailable"]
    assert modules == {"pynvmlLoaded": False}


def test_with_the_library_pynvml_is_loaded(stub):
    """The other side of the check above: with the library found, the first tick imports pynvml."""
    line, modules = probe(stub, "1", "--modules")
    assert line["accelerators"]
    assert modules == {"pynvmlLoaded": True}


def test_driver_not_loaded_is_unavailable_with_reason(stub):
    """nvmlInit failing with DRIVER_NOT_LOADED becomes an unavailable collector naming that cause."""
    (line,) = probe(stub, "1", init="driver_not_loaded")
    assert line["unavailable"] == "NVML could not start: Driver Not Loaded"


def test_failed_start_is_not_retried_every_tick(stub):
    """After NVML fails to start, later ticks reuse the reason instead of calling nvmlInit again."""
    lines = probe(stub, "5", "--counts", "nvmlInitWithFlags", init="driver_not_loaded")
    assert [line.get("unavailable") for line in lines[:5]] == ["NVML could not start: Driver Not Loaded"] * 5
    assert lines[-1]["counts"]["nvmlInitWithFlags"] == 1


def test_zero_gpus_is_unavailable(stub):
    """A working driver with no GPU is "unavailable", not an empty success."""
    (line,) = probe(stub, "1", gpus="0")
    assert line["unavailable"] == "NVML found no NVIDIA GPU"


def test_one_gpu_reports_seed_and_extended_fields(stub):
    """One GPU carries the seed keys in wire units plus the NVIDIA extensions, all decoded."""
    line, counts = probe(stub, "1", "--counts", "nvmlDeviceGetTotalEnergyConsumption", gpus="1")
    (gpu,) = line["accelerators"]
    assert gpu["id"] == 0 and gpu["type"] == "gpu" and gpu["vendor"] == "nvidia"
    assert gpu["name"] == "NVIDIA Stub A100-SXM4-40GB"
    assert gpu["uuid"] == "GPU-00000000-0000-0000-0000-000000000000"
    assert gpu["busId"] == "00000000:10:00.0"
    assert gpu["utilization"] == 10.0 and gpu["memoryUtilization"] == 5.0
    assert gpu["memory"] == {"used": 2**30, "total": 40 * 2**30, "percentage": 2.5}
    assert (gpu["temperature"], gpu["power"], gpu["fanSpeed"]) == (40.0, 100.0, 30.0)  # mW -> W
    # The stub's counter reads 5,000,000 mJ + 10 mJ per call so far (one call here): mJ -> J.
    assert counts["counts"] == {"nvmlDeviceGetTotalEnergyConsumption": 1}
    assert gpu["powerLimit"] == 400.0 and gpu["energy"] == 5000.01
    assert gpu["clocks"] == {"sm": 1410.0, "memory": 1215.0}
    assert (gpu["encoderUtilization"], gpu["decoderUtilization"]) == (1.0, 2.0)
    assert gpu["pcie"] == {"rx": 2000 * 1024.0, "tx": 1000 * 1024.0}  # KB/s -> bytes/s
    assert gpu["eccErrors"] == {"corrected": 0, "uncorrected": 0}
    assert gpu["throttleReasons"] == ["swPowerCap", "swThermalSlowdown"]
    assert gpu["performanceState"] == 0
    assert gpu["mig"] == {"enabled": False, "pending": False, "instances": []}
    assert gpu["profiling"] is None and gpu["lost"] is False


def test_memory_used_excludes_driver_reserved_memory(stub):
    """memory.used comes from the v2 call, which keeps the driver's reserved memory out (as nvidia-smi does)."""
    lines = probe(stub, "3", "--counts", "nvmlDeviceGetMemoryInfo_v2,nvmlDeviceGetMemoryInfo", gpus="2", mig="1")
    gpus = lines[0]["accelerators"]
    assert [g["memory"]["used"] for g in gpus] == [2**30, 2 * 2**30]  # v1 would add 512 MiB reserved
    assert gpus[1]["mig"]["instances"][0]["memory"] == {"used": 2**30, "total": 10 * 2**30}
    assert lines[-1]["counts"]["nvmlDeviceGetMemoryInfo"] == 0


def test_drivers_without_memory_v2_fall_back_to_v1(tmp_path):
    """A driver library without nvmlDeviceGetMemoryInfo_v2 at all is read through v1 (reserve included)."""
    require_command("cc")
    old_driver = build_stub(tmp_path / "old", "STUB_NO_MEMORY_V2")
    lines = probe(old_driver, "4", "--counts", "nvmlDeviceGetMemoryInfo", gpus="2")
    assert [g["memory"]["used"] for g in lines[3]["accelerators"]] == [2**30 + 2**29, 2 * 2**30 + 2**29]
    assert lines[-1]["counts"]["nvmlDeviceGetMemoryInfo"] == 8


def test_rejected_memory_v2_version_falls_back_to_v1_once(stub):
    """A driver rejecting the v2 struct's version is read through v1, and v2 is not asked again."""
    lines = probe(stub, "4", "--counts", "nvmlDeviceGetMemoryInfo_v2,nvmlDeviceGetMemoryInfo",
                  gpus="2", unsupported="memoryv2version")
    assert [g["memory"]["used"] for g in lines[3]["accelerators"]] == [2**30 + 2**29, 2 * 2**30 + 2**29]
    assert lines[-1]["counts"] == {"nvmlDeviceGetMemoryInfo_v2": 2, "nvmlDeviceGetMemoryInfo": 8}


def test_processes_are_merged_named_and_unknown_memory_is_null(stub):
    """Compute and graphics processes are listed once per pid, named, with null when memory is unknown."""
    (line,) = probe(stub, "1", gpus="1")
    procs = line["accelerators"][0]["processes"]
    assert [p["pid"] for p in procs] == [4242, 4243, 4244]
    assert procs[0] == {"pid": 4242, "name": "stub-worker-4242", "usedMemory": 2**30, "utilization": 0.0}
    assert procs[1]["usedMemory"] is None


def test_process_names_are_asked_again_on_each_slow_read(stub, tmp_path):
    """A pid reused by another program shows the new name at the next slow read, not a cached old one."""
    flag = tmp_path / "reused"
    lines = probe(stub, "4", "--touch-at", "2", str(flag), "--step", "5", gpus="1", rename_flag=str(flag))
    names = [line["accelerators"][0]["processes"][0]["name"] for line in lines]
    assert names == ["stub-worker-4242", "stub-worker-4242", "stub-reused-4242", "stub-reused-4242"]


def test_eight_gpus_each_report_their_own_values(stub):
    """Eight GPUs come back in index order, each with its own distinct readings."""
    (line,) = probe(stub, "1", gpus="8")
    gpus = line["accelerators"]
    assert [g["id"] for g in gpus] == list(range(8))
    assert [g["temperature"] for g in gpus] == [40.0 + i for i in range(8)]
    assert len({g["uuid"] for g in gpus}) == 8
    assert [g["throttleReasons"] for g in gpus[1:]] == [["gpuIdle"]] * 7


def test_unsupported_fields_are_null_and_the_rest_stay(stub):
    """Fields answering NOT_SUPPORTED are null while every other field of the device is still filled."""
    (line,) = probe(stub, "1", gpus="1", unsupported="fan,power,ecc,mig,processes,throttle,clocks")
    gpu = line["accelerators"][0]
    assert gpu["fanSpeed"] is None and gpu["power"] is None and gpu["mig"] is None
    assert gpu["eccErrors"] == {"corrected": None, "uncorrected": None}
    assert gpu["throttleReasons"] is None and gpu["clocks"] == {"sm": None, "memory": None}
    assert gpu["utilization"] == 10.0 and gpu["temperature"] == 40.0 and gpu["powerLimit"] == 400.0


def test_drivers_before_clock_event_reasons_use_the_throttle_name(stub):
    """Without nvmlDeviceGetCurrentClocksEventReasons the older ThrottleReasons call decodes the same names."""
    lines = probe(stub, "1", "--counts", "nvmlDeviceGetCurrentClocksThrottleReasons", gpus="1",
                  unsupported="eventreasons")
    assert lines[0]["accelerators"][0]["throttleReasons"] == ["swPowerCap", "swThermalSlowdown"]
    assert lines[-1]["counts"]["nvmlDeviceGetCurrentClocksThrottleReasons"] == 1


def test_unsupported_field_is_not_asked_again(stub):
    """A field that answered NOT_SUPPORTED once is never queried again on later ticks."""
    lines = probe(stub, "5", "--counts", "nvmlDeviceGetFanSpeed,nvmlDeviceGetTemperature",
                  gpus="2", unsupported="fan")
    counts = lines[-1]["counts"]
    assert counts["nvmlDeviceGetFanSpeed"] == 2  # once per GPU
    assert counts["nvmlDeviceGetTemperature"] == 10  # every tick, every GPU


def test_static_and_slow_fields_are_not_asked_every_tick(stub):
    """Name/UUID are read once per GPU; process tables and MIG only every few seconds, not each tick."""
    lines = probe(stub, "12", "--counts",
                  "nvmlDeviceGetName,nvmlDeviceGetUUID,nvmlDeviceGetMigMode,nvmlDeviceGetUtilizationRates",
                  gpus="2")
    counts = lines[-1]["counts"]
    assert counts["nvmlDeviceGetName"] == 2 and counts["nvmlDeviceGetUUID"] == 2
    assert counts["nvmlDeviceGetUtilizationRates"] == 24
    assert counts["nvmlDeviceGetMigMode"] == 2 * 3  # 12 ticks one second apart, slow tier every 5 s


def test_lost_gpu_is_marked_and_the_others_go_on(stub, tmp_path):
    """A GPU lost mid-run is reported lost with null readings while the other GPUs keep reporting."""
    flag = tmp_path / "lost"
    lines = probe(stub, "3", "--lose-after", "1", str(flag), gpus="3", lost_index="1", lost_flag=str(flag))
    before, during, later = (line["accelerators"] for line in lines)
    assert [g["lost"] for g in before] == [False, False, False]
    assert [g["lost"] for g in during] == [False, True, False]
    lost = during[1]
    assert lost["utilization"] is None and lost["memory"]["used"] is None
    assert lost["name"] == "NVIDIA Stub A100-SXM4-40GB" and lost["uuid"].endswith("000000000001")
    assert [g["utilization"] for g in later] == [10.0, None, 12.0]


def test_lost_gpu_is_probed_again_only_after_the_retry_period(stub, tmp_path):
    """A recovered GPU stays marked lost within the retry period and reports again once it has passed."""
    flag = tmp_path / "lost"
    scenario = {"gpus": "2", "lost_index": "0", "lost_flag": str(flag)}
    soon = probe(stub, "3", "--lose-after", "1", str(flag), "--recover-after", "2", "--step", "1", **scenario)
    assert [line["accelerators"][0]["lost"] for line in soon] == [False, True, True]
    later = probe(stub, "3", "--lose-after", "1", str(flag), "--recover-after", "2", "--step", "40", **scenario)
    assert [line["accelerators"][0]["lost"] for line in later] == [False, True, False]
    assert later[2]["accelerators"][0]["utilization"] == 10.0


def test_gpu_without_a_handle_at_start_is_probed_again(stub, tmp_path):
    """A GPU whose handle failed at start stays lost within the retry period and reports once it is back."""
    flag = tmp_path / "lost"
    scenario = {"gpus": "2", "lost_index": "1", "lost_flag": str(flag)}
    soon = probe(stub, "3", "--lose-after", "0", str(flag), "--recover-after", "2", "--step", "1", **scenario)
    assert [line["accelerators"][1]["lost"] for line in soon] == [True, True, True]
    assert [line["accelerators"][0]["lost"] for line in soon] == [False, False, False]
    later = probe(stub, "3", "--lose-after", "0", str(flag), "--recover-after", "2", "--step", "40", **scenario)
    assert [line["accelerators"][1]["lost"] for line in later] == [True, True, False]
    back = later[2]["accelerators"][1]
    assert back["utilization"] == 11.0 and back["name"] == "NVIDIA Stub A100-SXM4-40GB"


def test_mig_mode_lists_its_instances(stub):
    """A MIG-enabled GPU reports its mode and each created instance with ids, UUID and memory."""
    (line,) = probe(stub, "1", gpus="2", mig="1")
    plain, mig = line["accelerators"]
    assert plain["mig"]["enabled"] is False
    assert mig["mig"]["enabled"] is True and mig["mig"]["pending"] is True
    assert [(i["index"], i["gpuInstanceId"], i["computeInstanceId"]) for i in mig["mig"]["instances"]] == [
        (0, 1, 0), (1, 2, 0)
    ]
    assert mig["mig"]["instances"][1]["memory"] == {"used": 2 * 2**30, "total": 10 * 2**30}
    assert mig["mig"]["instances"][0]["uuid"].startswith("MIG-")


def test_gpm_fills_profiling_without_dcgm(stub, tmp_path):
    """With profiling requested, no DCGM and GPM support, `profiling` comes from GPM from the second tick."""
    lines = probe(stub, "2", "--dcgm", gpus="1", gpm="1")
    assert lines[0]["accelerators"][0]["profiling"] is None  # GPM needs two samples
    profiling = lines[1]["accelerators"][0]["profiling"]
    assert profiling == {
        "smActive": 61.5, "smOccupancy": 33.25, "tensorActive": 12.5, "dramActive": 40.0,
        "pcieTxBytes": 2.0 * 2**20, "pcieRxBytes": 4.0 * 2**20,
        "nvlinkTxBytes": 16.0 * 2**20, "nvlinkRxBytes": 8.0 * 2**20,
    }
    assert lines[1]["profiling"] == {
        "requested": True, "available": True, "source": "gpm", "reason": None,
        "mig": {"instances": 0, "reason": "DCGM Python bindings not found (install DCGM or set "
                                          "TRACKLAB_SYSMON_DCGM_BINDINGS): No module named 'DcgmReader'"},
    }  # GPM has no per-MIG-instance figures here: only DCGM gives them


def test_no_profiling_source_explains_why(stub):
    """Profiling requested without DCGM bindings nor GPM support: null profiling and a reason naming both."""
    lines = probe(stub, "2", "--dcgm", gpus="1")
    status = lines[-1]["profiling"]
    assert status["available"] is False and status["source"] is None
    assert "DCGM Python bindings not found" in status["reason"] and "GPM" in status["reason"]
    assert lines[-1]["accelerators"][0]["profiling"] is None


STANDIN = pathlib.Path(__file__).parent / "dcgm_standin"  # DCGM's bindings, faked at their import boundary


def test_dcgm_fills_profiling_when_bindings_and_engine_are_there(stub, tmp_path):
    """With DCGM's bindings and a host engine, profiling comes from DCGM in percent and bytes/s, blanks null."""
    env_extra = {"TRACKLAB_SYSMON_DCGM_BINDINGS": str(STANDIN)}
    lines = _probe_with(stub, env_extra, "1", "--dcgm", gpus="1")
    assert lines[0]["accelerators"][0]["profiling"] == {
        "smActive": 50.0, "smOccupancy": 25.0, "tensorActive": 12.5, "dramActive": None,
        "pcieTxBytes": 1000.0, "pcieRxBytes": 2000.0, "nvlinkTxBytes": 3000.0, "nvlinkRxBytes": 4000.0,
    }
    assert lines[0]["profiling"]["source"] == "dcgm"


def test_unreachable_dcgm_engine_is_explained(stub, tmp_path):
    """Bindings present but no host engine: the reason says the engine is not reachable."""
    env_extra = {"TRACKLAB_SYSMON_DCGM_BINDINGS": str(STANDIN), "FAKE_DCGM_DOWN": "1"}
    (line,) = _probe_with(stub, env_extra, "1", "--dcgm", gpus="1")
    assert "DCGM host engine not reachable at 127.0.0.1" in line["profiling"]["reason"]


def _probe_with(lib_dir: pathlib.Path, extra: dict[str, str], *args: str, **scenario: str) -> list[dict]:
    env = {**stub_env(lib_dir, **scenario), **extra}
    done = subprocess.run(
        [sys.executable, PROBE, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# ---------------------------------------------------------------- the whole service with the stub


def _serve(lib_dir: pathlib.Path, tmp_path: pathlib.Path, *flags: str, **scenario: str):
    portfile, log = tmp_path / "port.json", tmp_path / "stderr.txt"
    with log.open("wb") as stderr:  # a file, not a pipe: nothing to drain or leave open
        proc = subprocess.Popen(
            [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0",
             "--portfile", str(portfile), "--interval", "0.2", *flags],
            env=stub_env(lib_dir, **scenario),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + 30
    while not portfile.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"service did not start: {log.read_text()}")
        time.sleep(0.05)
    return proc, json.loads(portfile.read_text())["url"]


def _documented_health() -> dict:
    """The /api/health example in docs/rest-api.md (the first JSON block under its heading)."""
    text = (pathlib.Path(__file__).parent.parent / "docs" / "rest-api.md").read_text()
    section = text.split("## GET /api/health", 1)[1]
    return json.loads(section.split("```json", 1)[1].split("```", 1)[0])


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_service_reports_gpus_in_info_metrics_and_health(stub, tmp_path):
    """The served app lists stub GPUs in /api/system/info, /api/system/metrics and the health block."""
    proc, url = _serve(stub, tmp_path, "--enable-dcgm-profiling", gpus="2", gpm="1")
    try:
        info = _get(url + "/api/system/info")
        assert info["gpu_count"] == 2 and info["gpu_info"] == ["NVIDIA Stub A100-SXM4-40GB"] * 2
        (node,) = _get(url + "/api/system/metrics")
        nvidia = [a for a in node["accelerators"] if a["vendor"] == "nvidia"]
        assert [a["id"] for a in nvidia] == [0, 1] and node["cpu"] is not None
        health = _get(url + "/api/health")
        assert health["collectors"]["nvidia"]["status"] == "ok"
        assert health["dcgm"]["requested"] is True and health["dcgm"]["source"] == "gpm"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_service_without_driver_runs_and_health_says_why(stub, tmp_path):
    """With the driver not loaded the service still serves every other section and health names the cause."""
    proc, url = _serve(stub, tmp_path, init="driver_not_loaded")
    try:
        info = _get(url + "/api/system/info")
        (node,) = _get(url + "/api/system/metrics")
        assert info["gpu_count"] == len(node["accelerators"])  # whatever other vendors are here
        assert [a for a in node["accelerators"] if a["vendor"] == "nvidia"] == []
        assert node["cpu"] is not None and node["memory"] is not None
        health = _get(url + "/api/health")
        assert health["status"] == "healthy"
        assert health["collectors"]["nvidia"]["status"] == "unavailable"
        assert health["collectors"]["nvidia"]["lastError"] == "NVML could not start: Driver Not Loaded"
        assert health["dcgm"] == _documented_health()["dcgm"]  # profiling not requested: says so
    finally:
        proc.terminate()
        proc.wait(timeout=10)
