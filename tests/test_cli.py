"""The CLI through real subprocesses: serve, portfile, port conflict, signals, parent watch, bad flags."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import FIXTURES, require_command

from tracklab_sysmon import __version__, hotpath

BIN = pathlib.Path(sys.executable).parent
TREE = FIXTURES / "cli-tree"
TREE_ARGS = ["--proc-root", str(TREE / "proc"), "--sys-root", str(TREE / "sys")]
CONTRACT_SECONDS = 5  # exit after SIGTERM/SIGINT, a dead parent or a taken port
READY_SECONDS = 30  # generous: the test machine may be busy; readiness is polled, not timed
PORTFILE_KEYS = {"host", "port", "pid", "url"}


def _script(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"console script {name} is missing beside {sys.executable}; run `make test`")
    return str(path)


class Service:
    """One `serve` process started for a test; always stopped at teardown."""

    def __init__(self, argv: list[str], portfile: pathlib.Path) -> None:
        self.portfile = portfile
        self.proc = subprocess.Popen(
            [*argv, "--rest-api-port", "0", "--portfile", str(portfile)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def ready(self) -> dict:
        """The portfile's content once it appears (the service is then listening)."""
        deadline = time.monotonic() + READY_SECONDS
        while not self.portfile.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"service exited {self.proc.returncode}: {self.proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail("service wrote no portfile")
            time.sleep(0.02)
        return json.loads(self.portfile.read_text())

    def get(self, path: str):
        with urllib.request.urlopen(self.ready()["url"] + path, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            return json.loads(response.read())

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Send `sig` and return (exit code, stderr); fails if the contract's 5 s pass first."""
        self.proc.send_signal(sig)
        try:
            _, stderr = self.proc.communicate(timeout=CONTRACT_SECONDS)
        except subprocess.TimeoutExpired:
            pytest.fail(f"no exit within {CONTRACT_SECONDS} s of signal {sig}")
        return self.proc.returncode, stderr

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def spawn(tmp_path):
    """Start services with a portfile in tmp_path; kill any still running after the test."""
    started: list[Service] = []

    def start(*argv: str) -> Service:
        service = Service(list(argv), tmp_path / f"service-{len(started)}.port")
        started.append(service)
        return service

    yield start
    for service in started:
        service.kill()


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- serve: portfile, signals ----------------------------------------------------------------


def test_console_script_serves_and_exits_0_on_sigterm(spawn, tmp_path):
    """`tracklab-sysmon serve` writes {host, port, pid, url} once listening and removes it on SIGTERM."""
    service = spawn(_script("tracklab-sysmon"), "serve", "--node-id", "cli-node")
    info = service.ready()
    assert set(info) == PORTFILE_KEYS
    assert info["host"] == "127.0.0.1" and info["pid"] == service.proc.pid
    assert info["url"] == f"http://127.0.0.1:{info['port']}" and info["port"] > 0
    with socket.create_connection(("127.0.0.1", info["port"]), timeout=5):
        pass  # the portfile exists only once the socket is bound and listening
    health = service.get("/api/health")
    assert health["status"] == "healthy" and health["nodeId"] == "cli-node"
    assert service.get("/api/system/metrics")[0]["node_id"] == "cli-node"
    code, stderr = service.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in stderr
    assert not service.portfile.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no temp file of the atomic write left behind


def test_python_dash_m_serves_and_exits_0_on_sigint(spawn):
    """`python -m tracklab_sysmon serve` is the same CLI and exits 0 on SIGINT, removing its portfile."""
    service = spawn(sys.executable, "-m", "tracklab_sysmon", "serve")
    assert service.get("/api/system/info")["cpu_threads"] == os.cpu_count()
    code, stderr = service.stop(signal.SIGINT)
    assert code == 0 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert not service.portfile.exists()


def test_port_in_use_is_one_line_and_fast(tmp_path):
    """A taken port gives one readable stderr line and a non-zero exit, and leaves others' portfiles alone."""
    portfile = tmp_path / "theirs.port"
    portfile.write_text("written by the instance that owns the port")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(
            _script("tracklab-sysmon"), "serve", "--rest-api-port", str(port), "--portfile", str(portfile),
            timeout=CONTRACT_SECONDS + READY_SECONDS,
        )
    assert result.returncode != 0
    line = _one_error_line(result.stderr)
    assert f"127.0.0.1:{port}" in line and "in use" in line
    assert portfile.read_text() == "written by the instance that owns the port"


def test_exits_when_parent_dies(spawn):
    """With --parent-pid the service exits 0 and removes its portfile once that process is gone."""
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        service = spawn(_script("tracklab-sysmon"), "serve", "--parent-pid", str(parent.pid))
        service.ready()
        assert service.proc.poll() is None  # a living parent keeps it serving
    finally:
        parent.kill()
        parent.wait()
    try:
        service.proc.wait(timeout=CONTRACT_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.fail("service outlived its parent")
    assert service.proc.returncode == 0 and not service.portfile.exists()


def test_serves_a_captured_tree(spawn):
    """`serve --proc-root/--sys-root` serves the tree's values over REST, not this machine's."""
    service = spawn(_script("tracklab-sysmon"), "serve", *TREE_ARGS)
    snapshot = service.get("/api/system/metrics")[0]
    snapshot.pop("timestamp")
    assert snapshot == TREE_SNAPSHOT
    assert service.get("/api/system/info") == TREE_INFO
    assert service.stop()[0] == 0


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, word",
    [
        (["--interval", "0"], "interval"),
        (["--interval", "soon"], "--interval"),
        (["--history", "0"], "history"),
        (["--history-mib", "0"], "history MiB"),
        (["--rest-api-port", "70000"], "--rest-api-port"),
        (["--parent-pid", "0"], "parent pid"),
        (["--node-id", " "], "node id"),
        (["--no-such-flag"], "--no-such-flag"),
    ],
)
def test_bad_flags_are_one_readable_line(flags, word):
    """A bad flag value exits non-zero with one stderr line naming it, and no traceback."""
    result = _run(_script("tracklab-sysmon"), "serve", *flags)
    assert result.returncode != 0
    line = _one_error_line(result.stderr)
    assert line.startswith("tracklab-sysmon: error:") and word in line


def test_system_monitor_bad_flag_names_itself():
    """The seed's `system_monitor` command reports its own name in a one-line error."""
    result = _run(_script("system_monitor"), "--history", "-5")
    assert result.returncode != 0
    assert _one_error_line(result.stderr).startswith("system_monitor: error: history")


@pytest.mark.parametrize("command", [["serve", "--rest-api-port", "0"], ["snapshot"], ["info"]])
def test_bad_backend_choice_is_one_readable_line(command):
    """An invalid TRACKLAB_SYSMON_NATIVE value is one readable line and exit 2 from every command."""
    env = {**os.environ, "TRACKLAB_SYSMON_NATIVE": "yes"}
    result = subprocess.run(
        [_script("tracklab-sysmon"), *command], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert line.startswith("tracklab-sysmon: error: TRACKLAB_SYSMON_NATIVE must be one of")


def test_portfile_in_missing_folder_is_one_line(tmp_path):
    """A portfile that cannot be written is a one-line error, not a traceback."""
    portfile = tmp_path / "no-such-folder" / "monitor.port"
    result = _run(_script("tracklab-sysmon"), "serve", "--rest-api-port", "0", "--portfile", str(portfile))
    assert result.returncode != 0
    line = _one_error_line(result.stderr.replace(_serving_line(result.stderr), ""))
    assert "portfile" in line and str(portfile) in line


def _serving_line(stderr: str) -> str:
    return next((line for line in stderr.splitlines() if "serving on" in line), "")


# --- snapshot and info ----------------------------------------------------------------------


def _tick_seconds(ticks: int) -> float:
    return round(ticks / os.sysconf("SC_CLK_TCK"), 2)


def _times(user: int, nice: int, system: int, idle: int, iowait: int, softirq: int) -> dict:
    values = {"user": user, "nice": nice, "system": system, "idle": idle, "iowait": iowait,
              "irq": 0, "softirq": softirq, "steal": 0}
    return {mode: _tick_seconds(ticks) for mode, ticks in values.items()}


# Worked out by hand from tests/fixtures/cli-tree (see its README): counters never move there,
# so rates are 0 and CPU usage is unknown (null); a tree has no file systems to stat.
TREE_SNAPSHOT = {
    "node_id": "captured-host",
    "cpu": {
        "overall": None,
        "cores": [
            {"id": 0, "usage": None, "frequency": 2400.0, "temperature": 45.0,
             "times": _times(600, 10, 150, 2500, 20, 5)},
            {"id": 1, "usage": None, "frequency": 1800.0, "temperature": -5.0,
             "times": _times(400, 10, 150, 2500, 20, 5)},
        ],
        "loadAverage": [0.5, 0.25, 0.1],
        "processes": 3,
        "threads": 345,
        "temperature": 52.0,
    },
    "memory": {
        "usage": 25.0, "used": 2_048_000_000, "total": 8_192_000_000, "available": 6_144_000_000,
        "swap": {"used": 512_000_000, "total": 2_048_000_000, "percentage": 25.0},
    },
    "disk": {
        "usage": None, "used": None, "total": None, "ioRead": 0.0, "ioWrite": 0.0, "iops": 0.0,
        "devices": [{"name": "sda", "readBytes": 10_240_000, "writeBytes": 20_480_000, "reads": 1000,
                     "writes": 2000, "readRate": 0.0, "writeRate": 0.0, "iops": 0.0}],
    },
    "network": {
        "bytesIn": 0.0, "bytesOut": 0.0, "packetsIn": 0.0, "packetsOut": 0.0, "connections": 7,
        "interfaces": [{"name": "eth0", "bytesRecv": 123_456_789, "bytesSent": 987_654_321,
                        "packetsRecv": 98765, "packetsSent": 54321, "bytesIn": 0.0, "bytesOut": 0.0,
                        "packetsIn": 0.0, "packetsOut": 0.0}],
    },
    "accelerators": [],
    "container": None,  # the tree has no /proc/self/cgroup
    "pressure": None,  # nor /proc/pressure
    "energy": None,  # nor RAPL zones nor GPUs with an energy counter
    "fabric": None,  # nor class/infiniband (and NVLink is asked of host GPUs only)
}

TREE_INFO = {
    "platform": "linux", "architecture": "aarch64", "cpu_model": "Test CPU @ 2.40GHz",
    "cpu_cores": 2, "cpu_threads": 2, "memory_total": 8_192_000_000, "swap_total": 2_048_000_000,
    "disk_total": None, "gpu_count": 0, "gpu_info": [], "hostname": "captured-host",
    "ip_address": None, "node_id": "captured-host", "boot_time": 1_700_000_000_000,
    "kernel": "6.1.0-test", "version": __version__,
}


def test_snapshot_on_captured_tree_is_exact():
    """`snapshot --proc-root/--sys-root` prints exactly the tree's values, disk usage null."""
    result = _run(_script("tracklab-sysmon"), "snapshot", *TREE_ARGS)
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert isinstance(snapshot.pop("timestamp"), int)
    assert snapshot == TREE_SNAPSHOT


def test_info_on_captured_tree_is_exact():
    """`info --proc-root/--sys-root` prints exactly the tree's system info and the backend."""
    result = _run(_script("tracklab-sysmon"), "info", *TREE_ARGS)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {**TREE_INFO, "backend": hotpath.BACKEND}


def test_snapshot_on_this_machine():
    """`snapshot` on the host prints one snapshot with a CPU entry per CPU and real disk totals."""
    result = _run(sys.executable, "-m", "tracklab_sysmon", "snapshot")
    assert result.returncode == 0, result.stderr
    snapshot = json.loads(result.stdout)
    assert snapshot["node_id"] == socket.gethostname()
    assert len(snapshot["cpu"]["cores"]) == os.cpu_count()
    assert isinstance(snapshot["cpu"]["overall"], float)
    assert snapshot["disk"]["total"] > 0
    meminfo = pathlib.Path("/proc/meminfo").read_text().splitlines()
    mem_total_kb = next(line.split()[1] for line in meminfo if line.startswith("MemTotal:"))
    assert snapshot["memory"]["total"] == int(mem_total_kb) * 1024


def test_info_on_this_machine():
    """`info` on the host reports this machine's CPUs, hostname and a real disk_total."""
    result = _run(_script("tracklab-sysmon"), "info")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["cpu_threads"] == os.cpu_count() and info["hostname"] == socket.gethostname()
    assert isinstance(info["disk_total"], int) and info["disk_total"] > 0
    assert info["backend"] == hotpath.BACKEND


# --- the seed's command lines, verbatim -------------------------------------------------------

# Runs inside `unshare --net --mount`: a private loopback (so the fixed ports 8080/9090 are free)
# and a private layer over /tmp (so /tmp/monitor.port is ours alone). It starts the seed's command line,
# reads the portfile, asks every route, stops it with SIGTERM and prints what it saw as JSON.
_NAMESPACE_DRIVER = r"""
import ctypes, fcntl, json, os, shlex, signal, socket, struct, subprocess, sys, time, urllib.request
libc = ctypes.CDLL(None, use_errno=True)
def mount(source, target, fstype, options=None):
    if libc.mount(source, target, fstype, 0, options) != 0:
        sys.exit(f"mount {fstype} on {target}: " + os.strerror(ctypes.get_errno()))
# /tmp becomes an overlay: the real /tmp stays readable (this checkout may live there) while
# what the seed line writes (/tmp/monitor.port) lands in a private upper layer.
mount(b"tmpfs", b"/dev/shm", b"tmpfs")
os.mkdir("/dev/shm/upper"); os.mkdir("/dev/shm/work")
mount(b"overlay", b"/tmp", b"overlay", b"lowerdir=/tmp,upperdir=/dev/shm/upper,workdir=/dev/shm/work")
if os.path.lexists("/tmp/monitor.port"):  # a real one outside is hidden, never touched
    os.unlink("/tmp/monitor.port")
with socket.socket() as s:  # bring the namespace's loopback up (ip link set lo up)
    flags = struct.unpack("16sH", fcntl.ioctl(s, 0x8913, struct.pack("16sH", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", flags | 1))
proc = subprocess.Popen(  # dies with this driver, so a timed-out test leaves nothing behind
    shlex.split(sys.argv[1]), stderr=subprocess.PIPE, text=True,
    preexec_fn=lambda: libc.prctl(1, signal.SIGKILL),  # PR_SET_PDEATHSIG
)
deadline = time.monotonic() + float(sys.argv[2])
while not os.path.exists("/tmp/monitor.port"):
    if proc.poll() is not None or time.monotonic() > deadline:
        proc.kill()
        sys.exit("no portfile: " + proc.communicate()[1])
    time.sleep(0.02)
portfile = json.load(open("/tmp/monitor.port"))
bodies = {}
for path in ("/api/health", "/api/system/info", "/api/system/metrics"):
    with urllib.request.urlopen(portfile["url"] + path, timeout=10) as response:
        bodies[path] = json.loads(response.read())
proc.send_signal(signal.SIGTERM)
try:
    stderr = proc.communicate(timeout=5)[1]
except subprocess.TimeoutExpired:
    proc.kill()
    stderr = proc.communicate()[1]
print(json.dumps({"portfile": portfile, "bodies": bodies, "code": proc.returncode,
                  "left": os.path.exists("/tmp/monitor.port"), "stderr": stderr}))
"""


@pytest.fixture(scope="module")
def namespaces():
    """`unshare` able to make a network and mount namespace (needs root), else skip."""
    unshare = require_command("unshare")
    probe = _run(unshare, "--net", "--mount", "true", timeout=30)
    if probe.returncode != 0:
        message = f"cannot create namespaces for the fixed-port seed lines: {probe.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return unshare


@pytest.mark.parametrize(
    "line, port",
    [
        ("system_monitor --portfile /tmp/monitor.port", 8080),
        ("system_monitor --portfile /tmp/monitor.port --rest-api-port 9090", 9090),
        ("system_monitor --portfile /tmp/monitor.port --enable-dcgm-profiling", 8080),
        ("system_monitor --portfile /tmp/monitor.port --verbose", 8080),
        ("system_monitor --portfile /tmp/monitor.port --node-id worker-01", 8080),
    ],
)
def test_seed_command_lines_verbatim(namespaces, line, port):
    """Each of the seed's `system_monitor` command lines serves its port and stops cleanly on SIGTERM."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        [namespaces, "--net", "--mount", sys.executable, "-c", _NAMESPACE_DRIVER, line, str(READY_SECONDS)],
        capture_output=True, text=True, env=env, timeout=READY_SECONDS + 30,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["portfile"]["port"] == port and set(seen["portfile"]) == PORTFILE_KEYS
    assert seen["code"] == 0 and not seen["left"] and "Traceback" not in seen["stderr"]
    health, metrics = seen["bodies"]["/api/health"], seen["bodies"]["/api/system/metrics"]
    assert health["status"] == "healthy" and health["service"] == "system_monitor"
    assert health["dcgm"]["requested"] is ("--enable-dcgm-profiling" in line)
    expected_node = "worker-01" if "--node-id" in line else socket.gethostname()
    assert health["nodeId"] == expected_node and [m["node_id"] for m in metrics] == [expected_node]
    assert seen["bodies"]["/api/system/info"]["node_id"] == expected_node
    assert ("GET /api/health" in seen["stderr"]) is ("--verbose" in line)
