"""SupervisedChild: real child processes restarted with back-off, killed when hung, and never left behind."""

from __future__ import annotations

import os
import pathlib
import queue
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import psutil
import pytest
from conftest import FIXTURES

from tracklab_sysmon.collectors.supervise import Backoff, SupervisedChild

DEADLINE = 20.0  # ceiling on every wait below: catches a hang, never a speed assertion
QUICK = Backoff(first=0.05, most=0.2, healthy_after=60.0)
SLOW = Backoff(first=60.0, most=60.0, healthy_after=60.0)  # no restart within a test: the problem stays readable


def wait_for(predicate: Callable[[], object], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie waiting for a reaper has exited too)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _lines() -> tuple[queue.Queue[str], Callable[[str], None]]:
    got: queue.Queue[str] = queue.Queue()
    return got, got.put


def test_backoff_doubles_from_first_up_to_most():
    """The n-th restart in a row waits first * 2^(n-1), never more than `most`."""
    backoff = Backoff(first=0.5, most=3.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_child_that_exits_is_started_again_and_says_why():
    """Each exit is followed by a new start; the reason names the status and the child's last stderr line."""
    got, take = _lines()
    child = SupervisedChild(["sh", "-c", "echo up; echo 'cannot open /dev/neuron0' >&2; exit 3"], take, backoff=QUICK)
    child.start()
    try:
        for _ in range(3):
            assert got.get(timeout=DEADLINE) == "up"
        wait_for(lambda: child.state().problem is not None, "the exit to be recorded")
        state = child.state()
        assert state.starts >= 3
        assert state.problem.startswith("sh exited with status 3 (stderr: cannot open /dev/neuron0); restarting in ")
    finally:
        child.close()


def test_a_child_that_goes_silent_is_killed_as_hung():
    """No stdout line for `stall_after` seconds: the child's group is killed and the reason says so."""
    got, take = _lines()
    child = SupervisedChild(["sh", "-c", "echo $$; exec sleep 60"], take, stall_after=0.3, backoff=SLOW)
    child.start()
    try:
        pid = int(got.get(timeout=DEADLINE))
        wait_for(lambda: child.state().problem is not None, "the hang to be noticed")
        assert child.state().problem == "sh printed nothing for 0.3 s (hung; killed); restarting in 60 s"
        wait_for(lambda: gone(pid), "the hung child to be killed")
    finally:
        child.close()


def test_a_missing_executable_is_a_problem_not_an_exception():
    """A command that cannot be executed leaves the supervisor running and says why."""
    child = SupervisedChild(["/nonexistent/neuron-monitor"], lambda line: None, backoff=SLOW)
    child.start()
    try:
        wait_for(lambda: child.state().problem is not None, "the failed start")
        assert child.state().problem == (
            "neuron-monitor cannot be started: No such file or directory; restarting in 60 s")
        assert child.state().starts == 0
    finally:
        child.close()


def test_close_kills_the_whole_process_group():
    """close() ends the child and what it started (same process group), and no further start happens."""
    got, take = _lines()
    child = SupervisedChild(["sh", "-c", "sleep 60 & echo $!; echo $$; wait"], take, backoff=QUICK)
    child.start()
    grandchild, shell = int(got.get(timeout=DEADLINE)), int(got.get(timeout=DEADLINE))
    child.close()
    wait_for(lambda: gone(shell) and gone(grandchild), "the group to be gone")
    assert child.state().running is False and child.state().starts == 1


def test_long_lines_are_cut_and_a_missing_final_newline_is_kept_back():
    """A line longer than MAX_LINE is handed over in pieces; text without a newline yet is not a line."""
    got, take = _lines()
    script = "import sys; sys.stdout.write('x' * (1 << 20) + 'tail\\npartial'); sys.stdout.flush(); import time; " \
             "time.sleep(60)"
    child = SupervisedChild([sys.executable, "-c", script], take, backoff=SLOW)
    child.start()
    try:
        assert got.get(timeout=DEADLINE) == "x" * (1 << 20)
        assert got.get(timeout=DEADLINE) == "tail"
        assert got.empty()
    finally:
        child.close()


def test_the_child_exits_when_its_supervisor_is_killed(tmp_path: pathlib.Path):
    """SIGKILL of the supervising process leaves no orphan: the child's next write hits the closed pipe."""
    pids = tmp_path / "pids"
    script = (
        "import sys, time\n"
        "from tracklab_sysmon.collectors.supervise import SupervisedChild\n"
        f"c = SupervisedChild([{str(FIXTURES / 'neuron-monitor' / 'neuron-monitor')!r}, '-c', sys.argv[1]], print)\n"
        "c.start(); time.sleep(600)\n"
    )
    config = tmp_path / "monitor.json"
    config.write_text('{"period": "1s"}')
    env = {**os.environ, "NEURON_STANDIN_PERIOD": "0.05", "NEURON_STANDIN_PIDS": str(pids)}
    parent = subprocess.Popen([sys.executable, "-c", script, str(config)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: pids.exists() and pids.read_text().strip(), "the stand-in to start")
        child = int(pids.read_text().split()[0])
        assert not gone(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(DEADLINE)
        wait_for(lambda: gone(child), "the orphaned stand-in to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(DEADLINE)


@pytest.mark.parametrize("healthy", [True, False])
def test_backoff_resets_after_a_healthy_run(healthy):
    """A child that ran `healthy_after` seconds before exiting is restarted after the first delay again."""
    got, take = _lines()
    backoff = Backoff(first=0.05, most=60.0, healthy_after=0.0 if healthy else 60.0)
    child = SupervisedChild(["sh", "-c", "echo up; exit 1"], take, backoff=backoff)
    child.start()
    try:
        for _ in range(3):
            got.get(timeout=DEADLINE)
        wait_for(lambda: child.state().problem is not None, "an exit")
        expected = "0.05 s" if healthy else ("0.2 s", "0.4 s", "0.8 s", "1.6 s", "3.2 s")
        assert child.state().problem.endswith(expected)
    finally:
        child.close()
