"""The container section and host PSI on fixture trees: exact figures per cgroup layout, rates, wire names, the flag."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

import pytest
from conftest import FIXTURES, require_command
from prometheus_client.parser import text_string_to_metric_families

from tracklab_sysmon import wire
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.collectors.container import ContainerCollector, HostPressureCollector, _Files
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.errors import ConfigError, Unavailable
from tracklab_sysmon.model import PsiFigures
from tracklab_sysmon.sampler import Sampler
from tracklab_sysmon.server import create_app

HEX64 = "4f1c2a9be0d3c7a85e6f4b2d1c0a9e8f7d6c5b4a39281706f5e4d3c2b1a09f8e"
UID = "5e3c1f2a-7b8d-4c6e-9f0a-1b2c3d4e5f60"
GiB = 1 << 30


def _roots(tree: str | pathlib.Path) -> tuple[str, str]:
    base = FIXTURES / tree if isinstance(tree, str) else tree
    return str(base / "proc"), str(base / "sys")


def _wire(tree: str | pathlib.Path, cgroup: str = "auto") -> dict:
    """The container section of one tree as JSON, after two reads a second apart."""
    collector = ContainerCollector(*_roots(tree), cgroup)
    collector.collect(10.0)
    return wire.container_to_wire(collector.collect(11.0))


def test_v2_quota_tree_reports_the_pod_limits_exactly():
    """cpu.max 250000/100000 is 2.5 cores; memory.max 4 GiB with 1 GiB used is 25 %; OOM kills and PSI as written."""
    box = _wire("cgroup-v2-quota")
    assert box["identity"] == {
        "containerId": HEX64, "podUid": UID, "qosClass": "burstable", "slurmJobId": None,
        "systemdUnit": f"cri-containerd-{HEX64}.scope", "version": 2,
        "path": f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/"
                f"cri-containerd-{HEX64}.scope",
    }
    assert box["cpu"] == {
        "limitCores": 2.5, "usage": 0.0, "usageSeconds": 7200.0, "throttledPeriods": 1200,
        "throttledPeriodsRate": 0.0, "throttledSeconds": 45.5, "throttledSecondsRate": 0.0,
    }
    assert box["memory"] == {
        "current": GiB, "max": 4 * GiB, "usage": 25.0, "high": 3 * GiB, "swap": 8 << 20,
        "oomKills": 3, "anon": 768 << 20, "file": 192 << 20,
    }
    assert [(d["device"], d["readBytes"], d["writeBytes"], d["reads"], d["writes"]) for d in box["io"]] == [
        ("sda", 1 << 20, 4 << 20, 256, 1024), ("259:0", 0, 8192, 0, 2),  # 259:0 has no uevent: MAJ:MIN
    ]
    assert box["pids"] == {"current": 42, "max": 4096}
    assert box["pressure"]["cpu"] == {
        "some": {"avg10": 25.0, "avg60": 20.5, "avg300": 10.25, "total": 45.5},
        "full": {"avg10": 22.0, "avg60": 18.0, "avg300": 9.0, "total": 40.0},
    }
    assert box["pressure"]["memory"]["full"]["total"] == 1.25


def test_v2_unlimited_tree_has_null_limits_not_zero():
    """`max` everywhere and no cpuset: limitCores, usage, memory max/usage/high are null."""
    box = _wire("cgroup-v2-unlimited")
    assert (box["cpu"]["limitCores"], box["cpu"]["usage"]) == (None, None)
    assert (box["memory"]["max"], box["memory"]["usage"], box["memory"]["high"]) == (None, None, None)
    assert box["memory"]["current"] == GiB
    assert box["identity"]["systemdUnit"] == "train.service"


def test_v2_cpuset_only_tree_counts_the_cpuset_as_the_limit():
    """No quota but cpuset 0-3,8,10-11: 7 cores; the Slurm job id comes from the path; no cgroup PSI is null."""
    box = _wire("cgroup-v2-cpuset")
    assert box["cpu"]["limitCores"] == 7.0
    assert box["identity"]["slurmJobId"] == "4242"
    assert box["memory"]["max"] == 64 * GiB
    assert box["pressure"] is None
    assert box["io"] == []


def test_v1_docker_tree_reads_each_hierarchy_at_the_containers_root():
    """Docker (v1, cgroupfs): quota 150000/100000 = 1.5 cores, throttled_time ns to s, v1 unlimited memory is null."""
    box = _wire("cgroup-v1-docker")
    assert box["identity"]["containerId"] == HEX64
    assert box["identity"]["version"] == 1
    assert box["cpu"]["limitCores"] == 1.5
    assert (box["cpu"]["usageSeconds"], box["cpu"]["throttledPeriods"], box["cpu"]["throttledSeconds"]) == (
        123.456789012, 12, 3.5)
    assert box["memory"] == {
        "current": 512 << 20, "max": None, "usage": None, "high": None, "swap": 4 << 20,
        "oomKills": 0, "anon": 336 << 20, "file": 144 << 20,
    }
    assert [(d["device"], d["readBytes"], d["writeBytes"], d["reads"], d["writes"]) for d in box["io"]] == [
        ("sda", 2 << 20, 1 << 20, 64, 32)
    ]
    assert box["pids"] == {"current": 17, "max": None}
    assert box["pressure"] is None


def test_v1_k8s_guaranteed_tree_reads_pod_identity_and_limits():
    """cgroupfs kubepods/pod<uid>/<id> without a QoS level is Guaranteed; 2 GiB limit, 2 OOM kills."""
    box = _wire("cgroup-v1-k8s-guaranteed")
    ident = box["identity"]
    assert (ident["podUid"], ident["qosClass"], ident["containerId"]) == (
        UID, "guaranteed", "9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9")
    assert box["cpu"]["limitCores"] == 2.0
    assert (box["memory"]["max"], box["memory"]["usage"], box["memory"]["oomKills"]) == (2 * GiB, 25.0, 2)


def test_root_cgroup_is_no_container_under_auto_but_is_described_under_self():
    """In the host's root cgroup `auto` gives no section (Unavailable); `self` describes the root anyway."""
    with pytest.raises(Unavailable, match="root cgroup"):
        ContainerCollector(*_roots("cgroup-v2-nopsi")).collect(1.0)
    box = _wire("cgroup-v2-nopsi", "self")
    assert box["identity"]["path"] == "/"
    assert box["cpu"]["limitCores"] == 8.0  # the root's cpuset 0-7; the root has no cpu.max
    assert box["cpu"]["usageSeconds"] == 100.0
    assert (box["memory"]["current"], box["memory"]["anon"]) == (None, 1 << 20)


def test_path_option_describes_another_cgroup_relative_to_the_hierarchy_root(tmp_path):
    """--cgroup PATH reads that group even when the service itself is in the root cgroup."""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "cgroup-v2-nopsi", tree)
    quota_group = next((FIXTURES / "cgroup-v2-quota/sys/fs/cgroup").rglob("cpu.max")).parent
    shutil.copytree(quota_group, tree / "sys/fs/cgroup/jobs/train")
    box = _wire(tree, "/jobs/train")
    assert box["cpu"]["limitCores"] == 2.5
    assert box["memory"]["oomKills"] == 3
    assert box["identity"]["path"] == "/jobs/train"


def test_rates_come_from_counter_deltas_over_monotonic_time(tmp_path):
    """1.25 s of CPU in 1 s on a 2.5-core limit is 50 %; throttling and IO rates are per second."""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "cgroup-v2-quota", tree)
    group = next((tree / "sys/fs/cgroup").rglob("cpu.max")).parent
    collector = ContainerCollector(*_roots(tree))
    collector.collect(100.0)
    (group / "cpu.stat").write_text(
        "usage_usec 7201250000\nnr_periods 50010\nnr_throttled 1205\nthrottled_usec 45750000\n")
    (group / "io.stat").write_text("8:0 rbytes=1310720 wbytes=4194304 rios=266 wios=1024\n")
    cpu = collector.collect(102.0).cpu
    assert (cpu.usage, cpu.throttled_periods_rate, cpu.throttled_seconds_rate) == (25.0, 2.5, 0.125)
    (group / "cpu.stat").write_text("usage_usec 7202500000\nnr_throttled 1205\nthrottled_usec 45750000\n")
    sample = collector.collect(103.0)
    assert sample.cpu.usage == 50.0
    (sda,) = sample.io
    assert (sda.read_rate, sda.read_iops) == (0.0, 0.0)  # no change in the last second


def test_a_counter_that_goes_backwards_gives_zero_not_a_negative_rate(tmp_path):
    """A reset usage counter (a recreated cgroup) yields 0 % for that interval, never a negative."""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "cgroup-v2-quota", tree)
    group = next((tree / "sys/fs/cgroup").rglob("cpu.max")).parent
    collector = ContainerCollector(*_roots(tree))
    collector.collect(1.0)
    (group / "cpu.stat").write_text("usage_usec 5\nnr_throttled 0\nthrottled_usec 0\n")
    cpu = collector.collect(2.0).cpu
    assert (cpu.usage, cpu.throttled_periods_rate, cpu.throttled_seconds_rate) == (0.0, 0.0, 0.0)


def test_host_pressure_reads_proc_pressure_and_is_unavailable_without_psi():
    """/proc/pressure/* gives the host's PSI; a kernel without it makes the collector unavailable."""
    sample = HostPressureCollector(_roots("cgroup-v2-quota")[0]).collect(1.0)
    assert sample.cpu is not None and sample.memory is not None
    assert sample.cpu.some == PsiFigures(12.5, 8.25, 3.1, 987.654321)
    assert sample.memory.full == PsiFigures(0.8, 0.4, 0.1, 2.25)
    with pytest.raises(Unavailable, match="pressure"):
        HostPressureCollector(_roots("cgroup-v2-nopsi")[0]).collect(1.0)


async def test_snapshot_carries_container_and_pressure_and_null_on_a_bare_host():
    """The sampler puts both sections into the published JSON; on the no-PSI root host both are null."""
    for tree, expect_container in (("cgroup-v2-quota", True), ("cgroup-v2-nopsi", False)):
        proc, sys_root = _roots(tree)
        sampler = Sampler(default_collectors(proc, sys_root, statvfs=None), node_id="n", interval=0.05)
        await sampler.start()
        body = wire.decode(sampler.latest_bytes)
        assert (body["container"] is not None) == expect_container
        assert (body["pressure"] is not None) == expect_container
        assert sampler.status["container"].state == ("ok" if expect_container else "unavailable")
    assert body["container"] is None and body["pressure"] is None


async def test_prometheus_exposes_container_and_pressure_in_base_units(aiohttp_client):
    """/metrics has the limit in cores, bytes, `_seconds_total` counters and PSI ratios; promtool accepts it."""
    proc, sys_root = _roots("cgroup-v2-quota")
    config = ServiceConfig(node_id="n", interval=3600, proc_root=proc, sys_root=sys_root)
    client = await aiohttp_client(create_app(config))
    text = await (await client.get("/metrics")).text()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }
    node = frozenset({("node_id", "n")})
    prefix = "tracklab_sysmon_"
    assert samples[(prefix + "container_cpu_limit_cores", node)] == 2.5
    assert samples[(prefix + "container_memory_max_bytes", node)] == 4 * GiB
    assert samples[(prefix + "container_memory_current_bytes", node)] == GiB
    assert samples[(prefix + "container_cpu_throttled_seconds_total", node)] == 45.5
    assert samples[(prefix + "container_cpu_throttled_periods_total", node)] == 1200
    assert samples[(prefix + "container_oom_kills_total", node)] == 3
    psi = {("node_id", "n"), ("resource", "cpu")}
    assert samples[(prefix + "pressure_some_stall_seconds_total", frozenset(psi | {("scope", "host")}))] == 987.654321
    assert samples[(prefix + "pressure_full_stall_seconds_total", frozenset(psi | {("scope", "container")}))] == 40.0
    window = frozenset(psi | {("scope", "container"), ("window", "10s")})
    assert samples[(prefix + "pressure_some_ratio", window)] == 0.25
    promtool = require_command("promtool")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("value", ["auto", "self", "/kubepods/pod1/abc"])
def test_cgroup_option_accepts_auto_self_and_absolute_paths(value):
    """auto, self and an absolute path are valid --cgroup values."""
    assert ServiceConfig(cgroup=value).cgroup == value


@pytest.mark.parametrize("value", ["relative/path", "/a/../b", "", "other"])
def test_cgroup_option_rejects_relative_and_escaping_paths(value):
    """A relative path, `..` or another word is a ConfigError."""
    with pytest.raises(ConfigError, match="cgroup"):
        ServiceConfig(cgroup=value)


def test_cli_rejects_a_bad_cgroup_in_one_line():
    """`serve --cgroup ../x` prints one error line and exits non-zero, without starting."""
    result = subprocess.run(
        [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--cgroup", "a/../b"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cgroup" in lines[0], result.stderr


def test_a_file_that_appears_later_is_read_within_the_retry_window(tmp_path):
    """An absent interface file (controller enabled later) is tried again after RETRY_MISSING reads, not never."""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "cgroup-v2-quota", tree)
    group = next((tree / "sys/fs/cgroup").rglob("cpu.max")).parent
    (group / "pids.current").unlink()
    collector = ContainerCollector(*_roots(tree))
    assert collector.collect(0.0).pids.current is None
    (group / "pids.current").write_text("7\n")
    seen = [collector.collect(float(i)).pids.current for i in range(1, _Files.RETRY_MISSING + 1)]
    assert seen[-1] == 7 and seen[0] is None  # not re-opened every tick, but found again


def test_a_bare_host_is_rechecked_only_every_retry_window(tmp_path):
    """"No container" is remembered for RETRY_MISSING ticks, then looked up again (the service was moved)."""
    tree = tmp_path / "tree"
    shutil.copytree(FIXTURES / "cgroup-v2-nopsi", tree)
    quota_group = next((FIXTURES / "cgroup-v2-quota/sys/fs/cgroup").rglob("cpu.max")).parent
    shutil.copytree(quota_group, tree / "sys/fs/cgroup/job")
    collector = ContainerCollector(*_roots(tree))
    with pytest.raises(Unavailable):
        collector.collect(0.0)
    (tree / "proc/self/cgroup").write_text("0::/job\n")
    answers = []
    for tick in range(1, _Files.RETRY_MISSING + 2):
        try:
            answers.append(collector.collect(float(tick)).cpu.limit_cores)
        except Unavailable:
            answers.append(None)
    assert answers[:_Files.RETRY_MISSING] == [None] * _Files.RETRY_MISSING
    assert answers[-1] == 2.5


def expected_container_series(snap: dict, node: str) -> dict[tuple[str, frozenset], float]:
    """Every container_* and pressure_* sample /metrics must carry for one node, derived from its REST snapshot."""
    expected: dict[tuple[str, frozenset], float] = {}

    def put(name: str, value: object, divisor: float = 1.0, **labels: str) -> None:
        if value is not None:  # missing is omitted, never zero
            scaled = value if divisor == 1.0 else round(value / divisor, 9)
            expected[("tracklab_sysmon_" + name, frozenset({"node_id": node, **labels}.items()))] = scaled

    box = snap["container"]
    if box is not None:
        ident = box["identity"]
        put("container_info", 1.0, path=ident["path"], cgroup_version=str(ident["version"]),
            **{label: ident[key] or "" for label, key in (
                ("container_id", "containerId"), ("pod_uid", "podUid"), ("qos_class", "qosClass"),
                ("slurm_job_id", "slurmJobId"), ("systemd_unit", "systemdUnit"))})
        cpu, mem = box["cpu"], box["memory"]
        put("container_cpu_limit_cores", cpu["limitCores"])
        put("container_cpu_usage_ratio", cpu["usage"], 100.0)
        put("container_cpu_usage_seconds_total", cpu["usageSeconds"])
        put("container_cpu_throttled_seconds_total", cpu["throttledSeconds"])
        put("container_cpu_throttled_periods_total", cpu["throttledPeriods"])
        for field in ("current", "max", "high", "swap", "anon", "file"):
            put(f"container_memory_{field}_bytes", mem[field])
        put("container_oom_kills_total", mem["oomKills"])
        put("container_pids", box["pids"]["current"])
        put("container_pids_max", box["pids"]["max"])
        for device in box["io"]:
            for name, field in (("read_bytes", "readBytes"), ("written_bytes", "writeBytes"),
                                ("reads", "reads"), ("writes", "writes")):
                put(f"container_io_{name}_total", device[field], device=device["device"])
    for scope, pressure in (("host", snap["pressure"]), ("container", box and box["pressure"])):
        for resource, figures in (pressure or {}).items():
            for kind in ("some", "full"):
                line = figures and figures[kind]
                if line:
                    put(f"pressure_{kind}_stall_seconds_total", line["total"], scope=scope, resource=resource)
                    for window in ("10", "60", "300"):
                        put(f"pressure_{kind}_ratio", line["avg" + window], 100.0,
                            scope=scope, resource=resource, window=window + "s")
    return expected


@pytest.mark.parametrize("tree", ["cgroup-v2-quota", "cgroup-v1-docker", "cgroup-v2-nopsi"])
async def test_every_container_and_pressure_series_equals_the_rest_snapshot(aiohttp_client, tree):
    """/metrics carries exactly the container_* and pressure_* series the REST snapshot implies, with its values."""
    proc, sys_root = _roots(tree)
    client = await aiohttp_client(create_app(ServiceConfig(node_id="n", interval=3600, proc_root=proc,
                                                           sys_root=sys_root)))
    snap = (await (await client.get("/api/system/metrics")).json())[0]
    text = await (await client.get("/metrics")).text()
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
        if s.name.startswith(("tracklab_sysmon_container", "tracklab_sysmon_pressure"))
    }
    expected = expected_container_series(snap, "n")
    assert samples == expected
    # quota: info + 10 gauges + 4 counters + 2 devices x 4 + PSI (host and cgroup) 2 x 3 resources x 2 kinds x 4;
    # docker: info + 7 gauges (max, high, pids max unlimited) + 4 counters + 1 device x 4, no PSI; bare host: none.
    assert len(expected) == {"cgroup-v2-quota": 71, "cgroup-v1-docker": 16, "cgroup-v2-nopsi": 0}[tree]
