"""`tracklab-sysmon top` in a real pseudo-terminal (80x24) against a real service process."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
import urllib.request

import pytest
from dashboard_support import FIXTURES, ServiceProcess, core_busy, many_cpu_tree, write_stat

from tracklab_sysmon.model import FabricSample, InfinibandSample, NvlinkLink, NvlinkSample
from tracklab_sysmon.tui import fabric_lines, percent_text, rate_text, size_text

DEADLINE = 20.0  # upper bound on waiting for the screen; never a speed assertion
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()][0-9A-B]|\x1b[=>78]")
CPUS = 8


class Terminal:
    """A child process on an 80x24 pseudo-terminal; `text` is everything it printed, escapes removed."""

    def __init__(self, *args: str) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color"}
        env.pop("COLUMNS", None)
        env.pop("LINES", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tracklab_sysmon", *args], stdin=slave, stdout=slave, stderr=slave,
            env=env, close_fds=True, start_new_session=True,
        )
        os.close(slave)
        self.master, self.raw = master, b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode(errors="replace"))

    def read_until(self, wanted, timeout: float = DEADLINE) -> str:
        end = time.monotonic() + timeout
        while not wanted(self.text):
            remaining = end - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"the terminal never showed what the test waits for; last output: {self.text[-1500:]!r}")
            ready, _, _ = select.select([self.master], [], [], min(remaining, 0.2))
            if ready:
                with contextlib.suppress(OSError):  # the child closed the terminal
                    self.raw += os.read(self.master, 65536)
        return self.text

    def press(self, key: str) -> None:
        os.write(self.master, key.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(DEADLINE)
        os.close(self.master)


@pytest.fixture
def moving_service(tmp_path):
    """A service on an 8-core capture whose /proc/stat advances, so CPU usage is a fixed 35.0 %."""
    proc_root, sys_root = many_cpu_tree(tmp_path / "tree", CPUS)
    stop = threading.Event()

    def advance() -> None:
        tick = 2
        while not stop.wait(0.1):
            write_stat(proc_root, CPUS, tick)
            tick += 1

    mover = threading.Thread(target=advance, daemon=True)
    mover.start()
    service = ServiceProcess(tmp_path, "--proc-root", str(proc_root), "--sys-root", str(sys_root),
                             "--interval", "0.2", "--node-id", "top-node")
    try:
        yield service
    finally:
        service.kill()
        stop.set()
        mover.join()


def _metrics(url: str) -> dict:
    with urllib.request.urlopen(url + "/api/system/metrics", timeout=DEADLINE) as response:
        [node] = json.load(response)
    return node


def test_units_follow_the_dashboard_rules():
    """Sizes are binary (MiB), rates decimal (MB/s), and missing values are a dash, never 0."""
    assert size_text(1536 * 1024 * 1024) == "1.5 GiB"
    assert size_text(512) == "512 B"
    assert rate_text(12_340_000) == "12.3 MB/s"
    assert percent_text(35.0) == "35.0 %"
    assert (size_text(None), rate_text(None), percent_text(None)) == ("\u2013",) * 3  # an en dash, never 0


def test_top_shows_the_node_cpu_and_memory_the_api_gives_and_q_exits_0(moving_service, tmp_path):
    """Under an 80x24 pty, `top --portfile` shows node, CPU and memory as /api/system/metrics gives them; q exits 0."""
    expected_cpu = percent_text(100 * sum(core_busy(i) for i in range(CPUS)) / CPUS)
    portfile = next(tmp_path.glob("port-*.json"))
    memory = _metrics(moving_service.url)["memory"]  # the capture's meminfo does not move
    expected_memory = f"{size_text(memory['used'])} / {size_text(memory['total'])}"
    terminal = Terminal("top", "--portfile", str(portfile))
    try:
        wanted = (expected_cpu, "top-node", expected_memory, "q quits")  # the last line: the frame is whole
        screen = terminal.read_until(lambda text: all(part in text for part in wanted))
        assert percent_text(_metrics(moving_service.url)["cpu"]["overall"]) == expected_cpu
        assert "Load" in screen and "Swap" in screen and "Net" in screen
        terminal.press("q")
        assert terminal.proc.wait(DEADLINE) == 0
    finally:
        terminal.close()


def test_top_says_when_the_service_cannot_be_reached_and_still_quits(tmp_path):
    """With nothing listening, `top` shows one line saying so (and keeps retrying); q still exits 0."""
    terminal = Terminal("top", "--url", "http://127.0.0.1:9")
    try:
        terminal.read_until(lambda text: "cannot read the service" in text)
        terminal.press("q")
        assert terminal.proc.wait(DEADLINE) == 0
    finally:
        terminal.close()


def test_top_with_an_unreadable_portfile_fails_with_one_line(tmp_path):
    """A missing portfile is one readable error line and exit status 2, not a traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "tracklab_sysmon", "top", "--portfile", str(tmp_path / "none.json")],
        capture_output=True, text=True, timeout=DEADLINE,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot read the service URL from portfile" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_service_does_not_import_rich():
    """Only `top` loads rich: importing the server and building an app leaves it out of sys.modules."""
    code = ("import sys; from tracklab_sysmon.server import create_app;"
            " from tracklab_sysmon.config import ServiceConfig; import tracklab_sysmon.cli;"
            " create_app(ServiceConfig()); print('rich' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE, check=True)
    assert done.stdout.strip() == "False"


def test_top_shows_each_infiniband_port_state_link_rate_and_data_rates(tmp_path):
    """On a capture holding the InfiniBand fixture, `top` shows one IB line per port: state, link rate, TX/RX."""
    proc_root, sys_root = many_cpu_tree(tmp_path / "tree", CPUS)
    shutil.copytree(FIXTURES / "infiniband-hca/sys/class/infiniband", sys_root / "class" / "infiniband")
    service = ServiceProcess(tmp_path, "--proc-root", str(proc_root), "--sys-root", str(sys_root),
                             "--interval", "0.2", "--node-id", "ib-node")
    terminal = Terminal("top", "--url", service.url)
    try:
        wanted = ("IB    mlx5_0/1 active 200 Gb/s  tx 0 B/s rx 0 B/s",
                  "IB    mlx5_1/1 down 10.0 Gb/s  tx 0 B/s rx 0 B/s",
                  "IB    mlx5_2/1 active 25.0 Gb/s  tx 0 B/s rx 0 B/s", "q quits")
        screen = terminal.read_until(lambda text: all(part in text for part in wanted))
        assert "NVLink" not in screen  # no NVLink collector ran: no line for it
        terminal.press("q")
        assert terminal.proc.wait(DEADLINE) == 0
    finally:
        terminal.close()
        service.kill()


def test_fabric_lines_sum_nvlink_per_gpu_and_leave_none_without_links():
    """NVLink TX/RX are summed per GPU (a dash while a link's rate is unknown); no fabric or no links: no line."""
    links = (NvlinkLink(0, None, 0, "active", None, None, None, 12.5e9, 1.0e9),
             NvlinkLink(0, None, 1, "active", None, None, None, 12.5e9, 0.5e9),
             NvlinkLink(1, None, 0, "inactive", None, None, None, None, 4.0e6))
    [line] = fabric_lines(FabricSample(nvlink=NvlinkSample(links)))
    assert line.plain == "NVLink #0 tx 25.0 GB/s rx 1.5 GB/s  #1 tx \u2013 rx 4.0 MB/s"
    assert fabric_lines(None) == []
    assert fabric_lines(FabricSample(nvlink=NvlinkSample(()), infiniband=InfinibandSample(()))) == []
