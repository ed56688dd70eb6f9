"""What users saw on VMs, sandboxes and small boards: each gap pinned on a fixture tree or a real process."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FIXTURES, native_module
from test_cli import Service, _script

from tracklab_sysmon import hotpath
from tracklab_sysmon._hotpath_py import PyHotReader
from tracklab_sysmon.collectors.cpu import CpuCollector
from tracklab_sysmon.collectors.cpuinfo import REFRESH_SECONDS, CpuinfoEntry, parse_cpuinfo
from tracklab_sysmon.collectors.network import NetworkCollector
from tracklab_sysmon.collectors.thermal import CpuThermal
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.hotpath import CounterReader
from tracklab_sysmon.model import AcceleratorMemory, AcceleratorSample, NetworkSample
from tracklab_sysmon.sdk import Run
from tracklab_sysmon.server import create_app, keys

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOW = 1000.0
SANDBOX = FIXTURES / "sandbox-x86"
RPI = FIXTURES / "rpi3-bcm2835"


def _roots(tree: pathlib.Path) -> tuple[str, str]:
    return str(tree / "proc"), str(tree / "sys")


def _cpu(tree: pathlib.Path) -> CpuCollector:
    proc_root, sys_root = _roots(tree)
    return CpuCollector(hotpath.open_reader(proc_root), proc_root=proc_root, sys_root=sys_root)


def _tree_args(tree: pathlib.Path) -> list[str]:
    proc_root, sys_root = _roots(tree)
    return ["--proc-root", proc_root, "--sys-root", sys_root]


# ---------------------------------------------------------------- frequency without cpufreq


def test_frequency_without_cpufreq_is_cpuinfo_mhz_by_processor_number() -> None:
    """cpu0 and cpu2 (no cpufreq; cpu1 offline) take their own `cpu MHz`; cpu3's cpufreq wins over cpuinfo."""
    cores = _cpu(SANDBOX).collect(NOW).cores
    assert {c.id: c.frequency for c in cores} == {0: 2000.0, 2: 2399.874, 3: 3400.0}


def test_captured_vm_reports_the_cpuinfo_clock() -> None:
    """The captured KVM guest (no cpufreq) reports its `cpu MHz: 2100.000`, as lscpu does, not null."""
    assert [c.frequency for c in _cpu(FIXTURES / "vm-capture").collect(NOW).cores] == [2100.0, 2100.0]


def test_cpuinfo_is_reread_at_most_every_refresh_seconds(tmp_path: pathlib.Path) -> None:
    """A changed `cpu MHz` shows only once REFRESH_SECONDS have passed since the last read, never every tick."""
    tree = tmp_path / "t"
    shutil.copytree(SANDBOX, tree)
    cpu = _cpu(tree)
    assert cpu.collect(NOW).cores[0].frequency == 2000.0
    cpuinfo = tree / "proc/cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace("2000.000", "2500.000"))
    assert cpu.collect(NOW + REFRESH_SECONDS - 0.5).cores[0].frequency == 2000.0
    assert cpu.collect(NOW + REFRESH_SECONDS).cores[0].frequency == 2500.0


def test_cpuinfo_parser_shapes() -> None:
    """x86 blocks by `processor`; arm64 has no MHz; `0.000` is unknown; s390's `processor 0:` lines are no CPUs."""
    text = (FIXTURES / "sandbox-x86/proc/cpuinfo").read_text()
    assert parse_cpuinfo(text) == {
        0: CpuinfoEntry(2000.0, 0, 0), 2: CpuinfoEntry(2399.874, 0, 0), 3: CpuinfoEntry(1800.125, 0, 1),
    }
    assert set(parse_cpuinfo((FIXTURES / "arm-board/proc/cpuinfo").read_text()).values()) == {CpuinfoEntry()}
    assert parse_cpuinfo("processor\t: 0\ncpu MHz\t\t: 0.000\ncore id\t\t: x\n") == {0: CpuinfoEntry()}
    s390 = "vendor_id       : IBM/S390\nprocessor 0: version = FF,  identification = 0133E8,  machine = 2964\n"
    assert parse_cpuinfo(s390) == {}


# ---------------------------------------------------------------- core temperatures without sysfs topology


def test_core_temperatures_without_sysfs_topology_use_cpuinfo_ids() -> None:
    """cpu0 and cpu2 have no sysfs topology: cpuinfo's physical id 0 / core id 0 gives them Core 0 (47.0)."""
    cpu = _cpu(SANDBOX).collect(NOW)
    assert {c.id: c.temperature for c in cpu.cores} == {0: 47.0, 2: 47.0, 3: 49.5}
    assert cpu.temperature == 51.0


def test_sysfs_topology_wins_over_cpuinfo(tmp_path: pathlib.Path) -> None:
    """Where sysfs has topology it is used, even if cpuinfo disagrees (cpu3: sysfs core 1, cpuinfo says 0)."""
    tree = tmp_path / "t"
    shutil.copytree(SANDBOX, tree)
    cpuinfo = tree / "proc/cpuinfo"
    cpuinfo.write_text(cpuinfo.read_text().replace("core id\t\t: 1", "core id\t\t: 0"))
    proc_root, sys_root = _roots(tree)
    assert CpuThermal(sys_root, proc_root=proc_root).core_temperatures() == {0: 47.0, 2: 47.0, 3: 49.5}


# ---------------------------------------------------------------- SoC thermal zones


def test_raspberry_pi_bcm2835_zone_is_the_package_temperature() -> None:
    """A Pi 3's `bcm2835_thermal` zone is cpu.temperature, and the RTC's ds3231 hwmon does not hide it."""
    cpu = _cpu(RPI).collect(NOW)
    assert cpu.temperature == 48.312
    assert [(c.temperature, c.frequency) for c in cpu.cores] == [(None, 1200.0)] * 4


def _zones(root: pathlib.Path, *zones: tuple[str, int]) -> str:
    for number, (kind, millidegrees) in enumerate(zones):
        zone = root / f"class/thermal/thermal_zone{number}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(f"{millidegrees}\n")
    return str(root)


@pytest.mark.parametrize("kind", ["x86_pkg_temp", "cpu-thermal", "cpu_thermal", "CPU-therm", "soc-thermal",
                                  "soc_thermal", "bcm2835_thermal"])
def test_soc_zone_types_are_package_temperatures(tmp_path: pathlib.Path, kind: str) -> None:
    """Each CPU/SoC zone type (Intel, Pi 4/5, Allwinner, Jetson, Rockchip, Pi 1-3) is found beside a GPU zone."""
    sys_root = _zones(tmp_path, ("gpu-thermal", 70000), (kind, 41500))
    assert CpuThermal(sys_root).package_temperature() == 41.5


def test_acpitz_alone_is_not_a_package_temperature(tmp_path: pathlib.Path) -> None:
    """acpitz is a firmware-chosen board point (a constant on many VMs): null rather than a made-up package value."""
    assert CpuThermal(_zones(tmp_path, ("acpitz", 27800))).package_temperature() is None


def test_best_ranked_zone_wins_whatever_the_numbering(tmp_path: pathlib.Path) -> None:
    """With soc-thermal in zone0 and cpu-thermal in zone2, the CPU zone is chosen; acpitz never is."""
    sys_root = _zones(tmp_path, ("soc-thermal", 50000), ("acpitz", 27800), ("cpu-thermal", 62000))
    assert CpuThermal(sys_root).package_temperature() == 62.0


def test_soc_hwmon_named_after_its_zone_is_recognised(tmp_path: pathlib.Path) -> None:
    """A zone's hwmon carries the zone's name (`bcm2835_thermal`, `cpu_thermal`): it is the package sensor."""
    hwmon = tmp_path / "class/hwmon/hwmon0"
    hwmon.mkdir(parents=True)
    (hwmon / "name").write_text("bcm2835_thermal\n")
    (hwmon / "temp1_input").write_text("44000\n")
    assert CpuThermal(str(tmp_path)).package_temperature() == 44.0


# ---------------------------------------------------------------- network without /proc/net/dev


def _python_reader(proc_root: str) -> CounterReader:
    return PyHotReader(proc_root)


def _c_reader(proc_root: str) -> CounterReader:
    reader: CounterReader = native_module().CffiHotReader(proc_root)
    return reader


READERS = pytest.mark.parametrize("open_reader", [_python_reader, _c_reader], ids=["python", "cffi"])


@READERS
def test_missing_net_dev_keeps_connections(open_reader: Callable[[str], CounterReader]) -> None:
    """No /proc/net/dev: rates null and no interfaces, but the TCP connection count stays (both backends)."""
    network = NetworkCollector(open_reader(str(SANDBOX / "proc")))
    expected = NetworkSample(bytes_in=None, bytes_out=None, packets_in=None, packets_out=None,
                             connections=5, interfaces=())
    assert network.collect(NOW) == expected
    assert network.collect(NOW + 1) == expected


@READERS
def test_nothing_readable_is_still_the_collectors_error(open_reader: Callable[[str], CounterReader],
                                                         tmp_path: pathlib.Path) -> None:
    """Without net/dev and net/snmp there is nothing to report: the collector raises, so /api/health says why."""
    tree = tmp_path / "t"
    shutil.copytree(SANDBOX, tree)
    (tree / "proc/net/snmp").unlink()
    with pytest.raises(FileNotFoundError):
        NetworkCollector(open_reader(str(tree / "proc"))).collect(NOW)


def test_snapshot_of_the_sandbox_tree() -> None:
    """`snapshot` on the sandbox tree: cpuinfo clocks and core temperatures, and a network section with connections."""
    result = subprocess.run([_script("tracklab-sysmon"), "snapshot", *_tree_args(SANDBOX)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    cores = [(c["id"], c["frequency"], c["temperature"]) for c in snapshot["cpu"]["cores"]]
    assert cores == [(0, 2000.0, 47.0), (2, 2399.874, 47.0), (3, 3400.0, 49.5)]
    assert snapshot["network"] == {"bytesIn": None, "bytesOut": None, "packetsIn": None, "packetsOut": None,
                                   "connections": 5, "interfaces": []}


# ---------------------------------------------------------------- info agrees with the GPU collectors


def test_info_snapshot_and_rest_agree_on_gpus(tmp_path: pathlib.Path) -> None:
    """On an AMD tree, `info`, `snapshot` and a served /api/system/info all count the RX 6800 XT and the Intel
    iGPU beside it (named by its PCI id: a captured tree never reads the host's pci.ids)."""
    tree = FIXTURES / "amd-discrete"
    run = [_script("tracklab-sysmon")]
    info = json.loads(subprocess.run([*run, "info", *_tree_args(tree)], capture_output=True, text=True,
                                     timeout=60, check=True).stdout)
    snapshot = json.loads(subprocess.run([*run, "snapshot", *_tree_args(tree)], capture_output=True, text=True,
                                         timeout=60, check=True).stdout)
    service = Service([*run, "serve", *_tree_args(tree)], tmp_path / "serve.port")
    try:
        served = service.get("/api/system/info")
    finally:
        service.kill()
    expected = {"gpu_count": 2, "gpu_info": ["AMD Radeon RX 6800 XT", "Intel GPU 8086:4680"]}
    assert [a["name"] for a in snapshot["accelerators"]] == expected["gpu_info"]
    assert {k: info[k] for k in expected} == expected
    assert {k: served[k] for k in expected} == expected


# ---------------------------------------------------------------- Prometheus values without float noise


class StandInGpu:
    """A collector at the Collector boundary: its utilization, 14.3 %, divides into noise (0.14300000000000002)."""

    name, blocking = "gpu-standin", False

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        return (AcceleratorSample(
            id=0, type="gpu", name="Stand-in GPU", utilization=14.3,
            memory=AcceleratorMemory(used=1, total=2, percentage=50.0),
            temperature=None, power=None, fan_speed=None, vendor="nvidia", uuid="GPU-1",
        ),)


async def test_prometheus_divisions_print_no_float_noise(aiohttp_client: Any) -> None:
    """A 0.346 ms collector run is `0.000346` seconds and 14.3 % is `0.143`, not 0.00034599999999999995."""
    config = ServiceConfig(node_id="n", interval=3600.0, history=5)
    app = create_app(config, collectors=(StandInGpu(),))
    client = await aiohttp_client(app)
    app[keys.SAMPLER].status["gpu-standin"].last_duration_ms = 0.346
    text = await (await client.get("/metrics")).text()
    values = dict(re.findall(r"^(tracklab_sysmon_(?:collector_duration_seconds|gpu_utilization_ratio)\{.*\}) (\S+)$",
                             text, re.MULTILINE))
    assert list(values.values()) == ["0.000346", "0.143"], values


# ---------------------------------------------------------------- SDK timestamps in ms


def test_run_log_timestamp_is_ms_like_every_other_timestamp(tmp_path: pathlib.Path) -> None:
    """`_timestamp` in a run's JSON line is an integer of ms since the epoch, as snapshot `timestamp` is."""
    before = int(time.time() * 1000)
    with Run("p", name="r", dir=tmp_path) as run:
        run.log({"loss": 0.5})
    after = int(time.time() * 1000)
    record = json.loads((tmp_path / "p/r.jsonl").read_text())
    assert isinstance(record["_timestamp"], int) and before <= record["_timestamp"] <= after


# ---------------------------------------------------------------- make help


@pytest.mark.parametrize(("args", "shown"), [([], "127.0.0.1:8080"), (["HOST=0.0.0.0", "PORT=9123"], "0.0.0.0:9123")])
def test_make_help_expands_host_and_port(args: list[str], shown: str) -> None:
    """`make help` shows the address `make run` will serve on, never the literal `$(HOST):$(PORT)`."""
    make = shutil.which("make") or pytest.skip("make is not installed")
    result = subprocess.run([make, "-s", "-C", str(ROOT), "help", *args], capture_output=True, text=True,
                            timeout=60, check=True)
    run_line = next(line for line in result.stdout.splitlines() if line.split()[:2] == ["make", "run"])
    assert f"serve on {shown} " in run_line and "$(" not in result.stdout


# ---------------------------------------------------------------- the Python twin says so


# The real CLI, with TRACKLAB_SYSMON_NATIVE set and, for the fallback, the compiled module made
# unimportable the way a failed build leaves it.
START = """
import os, sys
os.environ[{env!r}] = {mode!r}
if {block}:
    sys.modules["tracklab_sysmon._sysmon_cffi"] = None
from tracklab_sysmon.cli import main
main(prog_name="tracklab-sysmon")
"""


@pytest.mark.parametrize(("mode", "block_c", "backend", "reason", "warnings"), [
    ("auto", True, "python", "the C helper is not built", 1),
    ("off", False, "python", "TRACKLAB_SYSMON_NATIVE=off", 0),
    ("require", False, "cffi", None, 0),
], ids=["fallback", "off", "require"])
def test_backend_fallback_is_warned_once_and_shown_in_health(
    tmp_path: pathlib.Path, mode: str, block_c: bool, backend: str, reason: str | None, warnings: int,
) -> None:
    """When `auto` falls back to Python: one warning line at start-up and `backendReason` in /api/health."""
    if backend == "cffi":
        native_module()
    code = START.format(env=hotpath.ENV_VAR, mode=mode, block=block_c)
    argv = [sys.executable, "-c", code, "serve", *_tree_args(FIXTURES / "cli-tree")]
    service = Service(argv, tmp_path / "serve.port")
    try:
        health = service.get("/api/health")
        status, stderr = service.stop(signal.SIGTERM)
    finally:
        service.kill()
    assert status == 0
    assert health["backend"] == backend
    if reason is None:
        assert health["backendReason"] is None
    else:
        assert health["backendReason"].startswith(reason)
    assert len([line for line in stderr.splitlines() if "Python hot path" in line]) == warnings, stderr


# ---------------------------------------------------------------- the habits: LICENSE


def test_license_file_matches_the_declared_license() -> None:
    """pyproject says MIT; LICENSE is the MIT text for the project's contributors."""
    assert re.search(r'^license = "MIT"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "tracklab-sysmon contributors" in text
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in text
