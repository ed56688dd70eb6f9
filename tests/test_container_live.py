"""Live: a real service with --cgroup describes a v1 group this test creates, quota-limits and fills; then removes it.

The test touches only what it makes: `tracklab-sysmon-test-<pid>` at the top of the cpu, cpuacct and memory
hierarchies (never inside an existing group), and moves into it only the children it spawned.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tracklab_sysmon.collectors.cgroup_files import parse_mountinfo_cgroups

QUOTA_US, PERIOD_US = 50_000, 100_000  # half a core
MEMORY_LIMIT = 256 << 20
HOLD = 48 << 20  # what each child keeps resident while it spins
CHILDREN = 2  # two spinners want two cores: the quota, not the busy machine, is what caps them
SHARES = 32 * 1024  # weight against the root group's tasks (1024 each), so other load does not starve the group
PAGE = os.sysconf("SC_PAGE_SIZE")
INTERVAL = 2.0  # usage is averaged over one interval: 2 s of 100 ms periods smooths scheduling noise
CEILING = 30.0  # generous wait for the service and its ticks (no timed assertion)

# Spin after allocating, once moved: memory charged before the move would stay with the old group.
CHILD = f"""
import sys
sys.stdin.readline()
held = bytearray({HOLD})
for i in range(0, len(held), 4096):
    held[i] = 1
print("ready", flush=True)
while True:
    pass
"""


def _v1_dirs() -> dict[str, pathlib.Path]:
    """The mount point of the cpu, cpuacct and memory v1 hierarchies (one may hold both cpu and cpuacct)."""
    mounts = parse_mountinfo_cgroups(pathlib.Path("/proc/self/mountinfo").read_text())
    found: dict[str, pathlib.Path] = {}
    for mount in mounts:
        for controller in ("cpu", "cpuacct", "memory"):
            if mount.version == 1 and controller in mount.controllers:
                found[controller] = pathlib.Path(mount.mount_point)
    return found


def _skip_reason(dirs: dict[str, pathlib.Path]) -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux to create a cgroup"
    missing = {"cpu", "cpuacct", "memory"} - set(dirs)
    if missing:
        return f"no cgroup v1 hierarchy for {', '.join(sorted(missing))} (a pure v2 host)"
    if not all(os.access(d, os.W_OK) for d in dirs.values()):
        return "the cgroup v1 hierarchies are not writable here (read-only mount, unprivileged container)"
    return None


@contextlib.contextmanager
def _own_group(dirs: dict[str, pathlib.Path]) -> Iterator[tuple[str, list[pathlib.Path]]]:
    """Make the test's group in each hierarchy; remove it (and only it) afterwards."""
    name = f"tracklab-sysmon-test-{os.getpid()}"
    groups: list[pathlib.Path] = []
    try:
        for directory in sorted(set(dirs.values())):
            group = directory / name
            group.mkdir()  # fails if it exists: never adopt a group this test did not make
            groups.append(group)
        yield "/" + name, groups
    finally:
        for group in groups:
            for _ in range(50):  # rmdir is EBUSY for a moment after the last task exits
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())[0]


def _wait_for(predicate, what: str) -> object:
    deadline = time.monotonic() + CEILING
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def test_service_describes_a_quota_limited_group_it_was_pointed_at(tmp_path):
    """limitCores = 0.5, usage near 100 % of it, throttling > 0, memory equal to the group's own files."""
    dirs = _v1_dirs()
    reason = _skip_reason(dirs)
    if reason:
        pytest.skip(reason)
    children: list[subprocess.Popen] = []
    service: subprocess.Popen | None = None
    with _own_group(dirs) as (path, groups):
        cpu, memory = dirs["cpu"] / path.lstrip("/"), dirs["memory"] / path.lstrip("/")
        try:
            (cpu / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(QUOTA_US))
            (cpu / "cpu.shares").write_text(str(SHARES))
            (memory / "memory.limit_in_bytes").write_text(str(MEMORY_LIMIT))
            for _ in range(CHILDREN):
                child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
                children.append(child)
                for group in groups:
                    (group / "cgroup.procs").write_text(str(child.pid))
                child.stdin.write("go\n")
                child.stdin.flush()
                assert child.stdout.readline().strip() == "ready"
            portfile = tmp_path / "port.json"
            service = subprocess.Popen(
                [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--portfile",
                 str(portfile), "--cgroup", path, "--interval", str(INTERVAL)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            _wait_for(portfile.exists, "the service's portfile")
            url = json.loads(portfile.read_text())["url"] + "/api/system/metrics"
            first = _get(url)["timestamp"]
            # the second tick after the first seen: a full interval with both children in the group
            snap = _wait_for(lambda: (s := _get(url))["timestamp"] > first + INTERVAL * 1000 and s, "two ticks")
            files = {n: int((memory / n).read_text()) for n in ("memory.usage_in_bytes", "memory.limit_in_bytes")}
        finally:
            for proc in (*children, service):
                if proc is not None:
                    _stop(proc)
    box = snap["container"]
    assert box["identity"] == {
        "path": path, "version": 1, "containerId": None, "podUid": None, "qosClass": None,
        "slurmJobId": None, "systemdUnit": None,
    }
    assert box["cpu"]["limitCores"] == 0.5
    # Only tolerance: CFS enforces the quota per 100 ms period, so a 2 s window holds about 20 periods and
    # the share lands a few % off 100; the floor of 70 % leaves room for a machine busy with other work.
    assert 70.0 <= box["cpu"]["usage"] <= 110.0, box["cpu"]
    assert box["cpu"]["throttledPeriods"] > 0
    assert box["cpu"]["throttledSeconds"] > 0
    assert box["memory"]["max"] == files["memory.limit_in_bytes"] == MEMORY_LIMIT
    # The children hold their memory still, so the file read just after the tick agrees to a page.
    assert abs(box["memory"]["current"] - files["memory.usage_in_bytes"]) <= PAGE
    assert box["memory"]["current"] >= CHILDREN * HOLD
    assert box["memory"]["usage"] == round(100 * box["memory"]["current"] / MEMORY_LIMIT, 2)
