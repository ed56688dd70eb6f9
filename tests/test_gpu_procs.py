"""GPU use per process: NVML per-pid memory and SM utilisation mapped through NSpid, and DRM fdinfo for AMD/Intel.

NVIDIA runs the real nvidia-ml-py bindings against the stand-in libnvidia-ml.so in a subprocess;
AMD and Intel read the drm-fdinfo-* fixture trees, copied so a second reading can be written.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
from conftest import require_command
from hypothesis import given
from hypothesis import strategies as st
from nvml_stub.build import build_stub, stub_env

from tracklab_sysmon.collectors.drm_clients import FD_WALK_SECONDS
from tracklab_sysmon.collectors.gpu_procs import GpuProcessReader
from tracklab_sysmon.collectors.pid_namespace import PidTranslator, parse_nspid
from tracklab_sysmon.model import GpuProcessUse

HERE = pathlib.Path(__file__).parent
FIXTURES = HERE / "fixtures"
PROBE = str(HERE / "nvml_stub" / "gpu_procs_probe.py")
COLLECTOR_PROBE = str(HERE / "nvml_stub" / "probe.py")
NSPID = str(FIXTURES / "nvml-nspid" / "proc")
GIB = 2**30
KIB = 1024
# gpu:pid:sm:mem:timestamp_us. GPU 0: pid 4242 twice (mean 40), 4243 once, sibling 5000; GPU 1: pid 4242.
SAMPLES = "0:4242:30:5:1000,0:4242:50:9:2000,0:4243:12:1:1500,0:5000:90:9:1800,1:4242:20:3:1700"


@pytest.fixture(scope="module")
def stub(tmp_path_factory) -> pathlib.Path:
    require_command("cc")
    return build_stub(tmp_path_factory.mktemp("nvml"))


def run_probe(script: str, lib: pathlib.Path, *args: str, **scenario: str) -> list[dict]:
    done = subprocess.run([sys.executable, script, *args], env=stub_env(lib, **scenario),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


# ---------------------------------------------------------------- NVIDIA


def test_nvml_pids_map_to_the_service_namespace_with_mean_sm_utilisation(stub):
    """Host pids 4242/4243 become 17/18 through NSpid; SM % is the mean of the window's samples, per device."""
    first, second, counts = run_probe(PROBE, stub, NSPID, "2", "--counts", "nvmlDeviceGetProcessUtilization",
                                      gpus="2", process_util=SAMPLES)
    # 4244 (no /proc entry) and 5000 (sibling container) are left out; 4243's memory is unknown to the driver.
    assert first == {"17": [[0, "nvidia", GIB, 40.0], [1, "nvidia", None, 20.0]],
                     "18": [[0, "nvidia", None, 12.0]]}
    # The second call asks only for samples after the last seen timestamp: none, so every process was idle.
    assert second == {"17": [[0, "nvidia", GIB, 0.0]], "18": [[0, "nvidia", None, 0.0]]}
    # Per GPU: sized then filled on the first call; the second answers NOT_FOUND at the sizing call.
    assert counts["counts"] == {"nvmlDeviceGetProcessUtilization": 6}


def test_unsupported_process_utilisation_is_asked_once_and_null(stub):
    """A driver without per-process utilisation gives null utilisation and is not asked again."""
    lines = run_probe(PROBE, stub, NSPID, "3", "--counts", "nvmlDeviceGetProcessUtilization",
                      gpus="2", process_util=SAMPLES, unsupported="processutil")
    assert lines[2] == {"17": [[0, "nvidia", GIB, None]], "18": [[0, "nvidia", None, None]]}
    assert lines[-1]["counts"] == {"nvmlDeviceGetProcessUtilization": 2}  # once per GPU, over three calls


def test_a_container_procfs_drops_nvml_pids(stub, tmp_path):
    """When proc_root is another pid namespace than the host's, NVML's host pids are not guessed at."""
    root = tmp_path / "proc"
    shutil.copytree(NSPID, root, symlinks=True)
    (root / "1/ns/pid").unlink()
    (root / "1/ns/pid").symlink_to("pid:[4026532100]")
    (line,) = run_probe(PROBE, stub, str(root), "1", gpus="1", process_util=SAMPLES)
    assert line == {}


def test_collector_process_records_carry_sm_utilisation(stub):
    """The accelerator's process list gains each pid's SM % over the slow read's window (0 when idle)."""
    first, second = run_probe(COLLECTOR_PROBE, stub, "2", "--step", "5", gpus="1", process_util=SAMPLES)
    procs = first["accelerators"][0]["processes"]
    assert [(p["pid"], p["utilization"]) for p in procs] == [(4242, 40.0), (4243, 12.0), (4244, 0.0)]
    assert [p["utilization"] for p in second["accelerators"][0]["processes"]] == [0.0, 0.0, 0.0]


def test_pid_translator_on_a_host_keeps_pids(tmp_path):
    """A service at proc_root's own level keeps pids, even of a process whose NSpid goes deeper."""
    root = tmp_path / "proc"
    shutil.copytree(NSPID, root, symlinks=True)
    (root / "self").unlink()
    (root / "self").symlink_to("1")  # the host's init plays the service: one NSpid entry, depth 0
    translator = PidTranslator(str(root))
    assert translator.depth == 0
    assert [translator.to_service(pid) for pid in (4242, 5000, 4244)] == [4242, 5000, None]


# ---------------------------------------------------------------- AMD and Intel through DRM fdinfo


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tree(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    root = tmp_path / name
    shutil.copytree(FIXTURES / name, root, symlinks=True)
    return root


def set_value(path: pathlib.Path, key: str, value: str) -> None:
    """Rewrite one `key:\tvalue` line of an fdinfo file, or add it."""
    text = path.read_text()
    line = f"{key}:\t{value}"
    new, found = re.subn(rf"^{re.escape(key)}:.*$", line, text, flags=re.MULTILINE)
    path.write_text(new if found else text + line + "\n")


def two_readings(root: pathlib.Path, edits: list[tuple[str, str, str]], seconds: float = 2.0):
    clock = Clock(10.0)
    reader = GpuProcessReader(str(root / "proc"), str(root / "sys"), nvidia=False, clock=clock)
    first = reader.gpu_usage_by_pid()
    for relative, key, value in edits:
        set_value(root / "proc" / relative, key, value)
    clock.now += seconds
    return first, reader.gpu_usage_by_pid()


def test_amdgpu_utilisation_memory_and_duplicate_clients(tmp_path):
    """amdgpu: busiest engine % over 2 s, VRAM per process, a client behind two fds counted once."""
    root = tree(tmp_path, "drm-fdinfo-amdgpu")
    edits = [(f"100/fdinfo/{fd}", key, value) for fd in (5, 6)
             for key, value in (("drm-engine-gfx", "2000000000 ns"), ("drm-engine-compute", "900000000 ns"))]
    edits += [("200/fdinfo/4", "drm-engine-gfx", "2500000000 ns"),
              ("200/fdinfo/4", "drm-engine-compute", "1200000000 ns")]  # absent before: amdgpu omits unused engines
    first, second = two_readings(root, edits)
    assert first == {100: (GpuProcessUse(0, "amd", 262144 * KIB, None), GpuProcessUse(1, "amd", 1024 * KIB, None)),
                     200: (GpuProcessUse(0, "amd", 65536 * KIB, None),)}
    # gfx +1 s of 2 s = 50 % (twice that if fd 6 counted again); 200: gfx 25 %, compute 60 % (from zero).
    assert second == {100: (GpuProcessUse(0, "amd", 262144 * KIB, 50.0), GpuProcessUse(1, "amd", 1024 * KIB, 0.0)),
                      200: (GpuProcessUse(0, "amd", 65536 * KIB, 60.0),)}


def test_i915_capacity_and_pci_order(tmp_path):
    """i915: video time is shared by its two engines; Intel devices are numbered in PCI address order."""
    root = tree(tmp_path, "drm-fdinfo-i915")
    edits = [("500/fdinfo/8", "drm-engine-render", "10788864723 ns"),  # +1.5 s of 2 s: 75 %
             ("500/fdinfo/8", "drm-engine-video", "3600000000 ns"),   # 3.6 s over 2 engines x 2 s: 90 %
             ("501/fdinfo/4", "drm-engine-render", "300000000 ns")]   # +0.2 s: 10 %
    _, second = two_readings(root, edits)
    assert second == {500: (GpuProcessUse(0, "intel", 8192 * KIB, 90.0),),
                      501: (GpuProcessUse(1, "intel", 131072 * KIB, 10.0),)}


def test_xe_cycles_use_the_gpu_clock_not_the_wall_clock(tmp_path):
    """xe: busy cycles over the engine's own cycle clock, divided by the class's engine count."""
    root = tree(tmp_path, "drm-fdinfo-xe")
    edits = [("700/fdinfo/9", "drm-cycles-rcs", "1028257900"), ("700/fdinfo/9", "drm-total-cycles-rcs", "11655183225"),
             ("700/fdinfo/9", "drm-cycles-ccs", "8000000000"), ("700/fdinfo/9", "drm-total-cycles-ccs", "11655183225")]
    # rcs: 1e9 of 4e9 cycles = 25 %; ccs: 8e9 over 4 engines x 4e9 = 50 %. The 7 s wall interval plays no part.
    _, second = two_readings(root, edits, seconds=7.0)
    assert second == {700: (GpuProcessUse(0, "intel", 524288 * KIB, 50.0),)}


def test_drm_pids_are_translated_when_the_service_is_one_level_down(tmp_path):
    """DRM clients found under a host procfs are keyed by the pid the service's namespace gives them."""
    root = tree(tmp_path, "drm-fdinfo-xe")
    proc = root / "proc"
    (proc / "700/status").write_text("Name:\tjob\nNSpid:\t700\t42\n")
    (proc / "900").mkdir()
    (proc / "900/status").write_text("Name:\tsysmon\nNSpid:\t900\t5\n")
    (proc / "self").symlink_to("900")
    reader = GpuProcessReader(str(proc), str(root / "sys"), nvidia=False, clock=Clock(1.0))
    assert list(reader.gpu_usage_by_pid()) == [42]


def test_fds_that_are_not_drm_devices_are_not_read(tmp_path):
    """With fd links present, an fd pointing elsewhere is skipped without reading its fdinfo."""
    root = tree(tmp_path, "drm-fdinfo-xe")
    fd_dir = root / "proc/700/fd"
    fd_dir.mkdir()
    (fd_dir / "9").symlink_to("socket:[12345]")
    clock = Clock(1.0)
    reader = GpuProcessReader(str(root / "proc"), str(root / "sys"), nvidia=False, clock=clock, dev_root=None)
    assert reader.gpu_usage_by_pid() == {}
    (fd_dir / "9").unlink()
    (fd_dir / "9").symlink_to("/dev/dri/renderD128")
    clock.now += FD_WALK_SECONDS  # the next walk of every fd
    assert list(reader.gpu_usage_by_pid()) == [700]


def test_fds_are_walked_every_ten_seconds_and_known_clients_read_between(tmp_path):
    """Between walks only the DRM fds found by the last walk are read: a new client waits for the next walk,
    a closed one is gone at once."""
    root = tree(tmp_path, "drm-fdinfo-amdgpu")
    proc = root / "proc"
    clock = Clock(0.0)
    reader = GpuProcessReader(str(proc), str(root / "sys"), nvidia=False, clock=clock, dev_root=None)  # timed alone
    assert list(reader.gpu_usage_by_pid()) == [100, 200]
    shutil.copytree(proc / "200", proc / "400")  # a new process with a client (another id on card 0)
    set_value(proc / "400/fdinfo/4", "drm-client-id", "46")
    (proc / "200/fdinfo/4").unlink()  # 200 closed its only client
    clock.now = FD_WALK_SECONDS - 1
    assert list(reader.gpu_usage_by_pid()) == [100]
    clock.now = FD_WALK_SECONDS
    assert list(reader.gpu_usage_by_pid()) == [100, 400]


PRINT_USAGE = """
import json, sys
from tracklab_sysmon.collectors.drm_clients import FD_WALK_SECONDS
from tracklab_sysmon.collectors.gpu_procs import GpuProcessReader
usage = GpuProcessReader(sys.argv[1] + "/proc", sys.argv[1] + "/sys", nvidia=False).gpu_usage_by_pid()
print(json.dumps({pid: [u.memory for u in uses] for pid, uses in usage.items()}))
"""


def test_unreadable_fdinfo_is_skipped_without_error(tmp_path):
    """An fdinfo file the service may not read (EACCES) is left out; the other clients are still found."""
    root = tree(tmp_path, "drm-fdinfo-amdgpu")
    target = root / "proc/200/fdinfo/4"
    argv = [sys.executable, "-c", PRINT_USAGE, str(root)]
    if os.geteuid() == 0:
        # Root reads anything through CAP_DAC_OVERRIDE: run it without that capability on a 0400 file of another user.
        os.chown(target, 65534, 65534)
        target.chmod(0o400)
        argv = [require_command("setpriv"), "--bounding-set=-dac_override,-dac_read_search", *argv]
    else:
        target.chmod(0o000)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == {"100": [262144 * KIB, 1024 * KIB]}
    assert done.stderr == ""


# ---------------------------------------------------------------- the NSpid parser


def test_nspid_line_reads_outermost_first():
    """`NSpid:\t4242\t17` is (4242, 17); a status without the line (kernels before 4.1) is None."""
    assert parse_nspid("Name:\tpython3\nPid:\t4242\nNSpid:\t4242\t17\nNSpgid:\t4242\t17\n") == (4242, 17)
    assert parse_nspid("Name:\tpython3\nPid:\t4242\n") is None
    assert parse_nspid("NSpid:\t4242\tx\n") is None


@given(st.lists(st.integers(1, 2**22), min_size=1, max_size=32))
def test_nspid_round_trip(pids):
    """Any list of pids written as the kernel writes it reads back unchanged."""
    assert parse_nspid("Name:\tx\nNSpid:\t" + "\t".join(map(str, pids)) + "\n") == tuple(pids)


@given(st.text(max_size=300))
def test_nspid_never_raises(text):
    """Any status text gives a tuple of non-negative pids or None."""
    found = parse_nspid(text)
    assert found is None or all(pid >= 0 for pid in found)
