"""SDK scopes: the GPUs a run sees (visible_devices), scope="run" against /proc, scope="container" on a fixture."""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
from conftest import FIXTURES
from hypothesis import given
from hypothesis import strategies as st

from tracklab_sysmon.errors import ConfigError
from tracklab_sysmon.model import (
    AcceleratorMemory,
    AcceleratorSample,
    GpuProcessUse,
    MigInstance,
    MigState,
    NvmlDetails,
    NvmlReadings,
    ProcessSample,
    ProcessTree,
)
from tracklab_sysmon.monitor import SystemMonitor
from tracklab_sysmon.scopes import visible_devices, without
from tracklab_sysmon.sdk import SystemMetrics, SystemMetricsConfig

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
UUIDS = [f"GPU-{i:08x}-1111-2222-3333-444455556666" for i in range(4)]
MIG = "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


def _gpu(index: int, vendor: str = "nvidia", mig: tuple[str, ...] = ()) -> AcceleratorSample:
    readings = NvmlReadings(mig=MigState(True, False, tuple(MigInstance(i, uuid) for i, uuid in enumerate(mig))))
    return AcceleratorSample(
        id=index, type="gpu", name=None, utilization=None, memory=AcceleratorMemory(None, None, None),
        temperature=None, power=None, fan_speed=None, vendor=vendor,
        uuid=UUIDS[index] if vendor == "nvidia" else None,
        details=NvmlDetails(readings=readings) if vendor == "nvidia" else None,
    )


NVIDIA = [_gpu(0), _gpu(1, mig=(MIG,)), _gpu(2), _gpu(3)]
AMD = [_gpu(0, "amd"), _gpu(1, "amd")]


def _nvidia(*ids: int) -> set[tuple[str, int]]:
    return {("nvidia", i) for i in ids}


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, _nvidia(0, 1, 2, 3)),
    ({"CUDA_VISIBLE_DEVICES": "all"}, _nvidia(0, 1, 2, 3)),
    ({"CUDA_VISIBLE_DEVICES": ""}, set()),
    ({"CUDA_VISIBLE_DEVICES": "none"}, set()),
    ({"NVIDIA_VISIBLE_DEVICES": "void"}, set()),
    ({"CUDA_VISIBLE_DEVICES": "2,0"}, _nvidia(0, 2)),
    ({"CUDA_VISIBLE_DEVICES": "2, 7, 0"}, _nvidia(2)),  # CUDA stops at the first index that names no device
    ({"CUDA_VISIBLE_DEVICES": UUIDS[3]}, _nvidia(3)),
    ({"CUDA_VISIBLE_DEVICES": UUIDS[3].lower().removeprefix("gpu-")}, _nvidia(3)),
    ({"CUDA_VISIBLE_DEVICES": MIG}, _nvidia(1)),  # a MIG instance selects its parent GPU
    ({"CUDA_VISIBLE_DEVICES": f"MIG-{UUIDS[2]}/1/0"}, _nvidia(2)),  # the pre-CUDA-11.5 MIG spelling
    ({"NVIDIA_VISIBLE_DEVICES": "2,3", "CUDA_VISIBLE_DEVICES": "1"}, _nvidia(3)),  # CUDA indexes what is left
    ({"NVIDIA_VISIBLE_DEVICES": f"{UUIDS[1]},{UUIDS[0]}", "CUDA_VISIBLE_DEVICES": "0"}, _nvidia(1)),
    ({"NVIDIA_VISIBLE_DEVICES": "all", "CUDA_VISIBLE_DEVICES": "3"}, _nvidia(3)),
])
def test_nvidia_device_lists(environ, expected):
    """Each spelling CUDA and the NVIDIA container runtime accept picks the devices they would."""
    assert visible_devices(environ, NVIDIA) == expected


def test_amd_lists_and_vendors_do_not_mix():
    """ROCR then HIP pick AMD devices; CUDA_VISIBLE_DEVICES leaves AMD alone; other vendors are never hidden."""
    apple = AcceleratorSample(0, "gpu", None, None, AcceleratorMemory(None, None, None), None, None, None, "apple")
    devices = [*NVIDIA[:2], *AMD, apple]
    environ = {"CUDA_VISIBLE_DEVICES": "1", "ROCR_VISIBLE_DEVICES": "1,0", "HIP_VISIBLE_DEVICES": "1"}
    assert visible_devices(environ, devices) == {("nvidia", 1), ("amd", 0), ("apple", 0)}
    assert visible_devices({"HIP_VISIBLE_DEVICES": ""}, devices) == {("nvidia", 0), ("nvidia", 1), ("apple", 0)}


@given(st.lists(st.integers(0, 6), max_size=8))
def test_an_index_list_keeps_the_indices_before_the_first_bad_one(indices):
    """For any index list: the devices named before the first index past the last device, and nothing else."""
    kept = []
    for index in indices:
        if index >= len(NVIDIA):
            break
        kept.append(index)
    environ = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, indices))}
    assert visible_devices(environ, NVIDIA) == _nvidia(*kept)


def test_a_bad_scope_is_a_config_error():
    """scope accepts host, container and run only."""
    with pytest.raises(ConfigError, match="scope must be one of host, container, run"):
        SystemMetricsConfig(scope="job")
    assert SystemMetricsConfig().scope == "host"


def _tree_rss(root: int) -> int:
    """Sum of statm resident over `root` and every descendant, read from /proc now."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    members, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        members += frontier
    total = 0
    for pid in members:
        with contextlib.suppress(OSError):
            total += int(pathlib.Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    return total


def test_run_scope_logs_the_process_tree_rss_within_five_percent_of_proc():
    """scope="run" logs proc.* of the calling process and its children (two holding 48 MiB), less the service
    it started, and no host keys."""
    code = "import time\nb = b'x' * (48 << 20)\nprint(1, flush=True)\ntime.sleep(60)"
    children = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True)
                for _ in range(2)]
    try:
        for child in children:
            assert child.stdout.readline()
        with SystemMonitor(rest_port=0, interval=0.1) as service:
            time.sleep(0.3)  # a tick after the children are ready, so the collection lists them
            metrics = SystemMetrics(SystemMetricsConfig(service_url=service.url, scope="run"))
            assert metrics.refresh()
            logged = metrics.latest()
            service_rss = _tree_rss(service.pid)  # the service is our child here, but not part of the run
            expected = _tree_rss(os.getpid()) - service_rss
    finally:
        for child in children:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            child.stdout.close()
    assert logged["system/proc.memory.rss"] == pytest.approx(expected, rel=0.05)
    assert logged["system/proc.memory.rss"] > 96 << 20
    assert service_rss > 0.05 * expected  # the service's own share is big enough to fail the check if counted
    assert logged["system/proc.threads"] >= 3
    assert "system/cpu.overall" not in logged and "system/memory.used" not in logged


def test_a_subtree_taken_off_a_tree_leaves_the_rest_exactly():
    """without(): members removed, sums reduced, GPU use per device reduced, nothing below zero."""
    root = ProcessSample(1, 0, "run", "", None, "S", 5.0, 10, 1, 3, None, None, 0, None, None, ())
    whole = ProcessTree(root, (1, 2, 3), 50.0, 1000, 9, 12, 10.0, None,
                        (GpuProcessUse(0, "nvidia", 300, 40.0), GpuProcessUse(1, "nvidia", 7, None)))
    part = ProcessTree(root, (3,), 60.0, 400, 2, None, 4.0, 1.0, (GpuProcessUse(0, "nvidia", 100, None),))
    assert without(whole, part) == ProcessTree(
        root, (1, 2), 0.0, 600, 7, 12, 6.0, None,
        (GpuProcessUse(0, "nvidia", 200, 40.0), GpuProcessUse(1, "nvidia", 7, None)))


def test_container_scope_logs_the_cgroup_section_of_a_fixture_tree():
    """scope="container" logs the fixture cgroup's limit, memory and OOM kills, and no host keys."""
    tree = FIXTURES / "cgroup-v2-quota"
    args = ("--proc-root", str(tree / "proc"), "--sys-root", str(tree / "sys"))
    with SystemMonitor(rest_port=0, interval=0.1, extra_args=args) as service:
        metrics = SystemMetrics(SystemMetricsConfig(service_url=service.url, scope="container"))
        assert metrics.refresh()
        logged = metrics.latest()
    assert logged["system/container.cpu.limitCores"] == 2.5
    assert logged["system/container.memory.current"] == 1 << 30
    assert logged["system/container.memory.usage"] == 25.0
    assert logged["system/container.memory.oomKills"] == 3
    assert "system/cpu.overall" not in logged
