"""The sampler's own cost: no worker-thread hop for absent hardware, no per-tick re-open of sysfs files."""

from __future__ import annotations

import os
import pathlib
import shutil
import threading

from tracklab_sysmon.collectors.cpu import CpuCollector
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.hotpath import open_reader
from tracklab_sysmon.sampler import Sampler

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Gpu:
    """A blocking collector, absent for its first `absent` calls; records which thread asked it."""

    name, blocking = "nvidia", True

    def __init__(self, absent: int) -> None:
        self.absent = absent
        self.threads: list[str] = []

    def collect(self, now: float) -> object:
        self.threads.append(threading.current_thread().name)
        if len(self.threads) <= self.absent:
            raise Unavailable("no NVIDIA driver")
        return ()


async def _ticks(sampler: Sampler, clock: Clock, count: int) -> None:
    for _ in range(count):
        await sampler.tick()
        clock.now += 1.0


async def test_unavailable_blocking_collector_is_rechecked_inline_every_tick():
    """Once `unavailable`, a blocking collector is still asked each tick, but on the loop's thread."""
    clock, gpu = Clock(), Gpu(absent=10**6)
    sampler = Sampler([gpu], node_id="n", monotonic=clock, wall=lambda: 1.0e9)
    await _ticks(sampler, clock, 4)
    main = threading.current_thread().name
    assert gpu.threads[0] != main and gpu.threads[1:] == [main] * 3
    assert sampler.status["nvidia"].state == "unavailable"


async def test_collector_that_comes_back_returns_to_its_worker_thread():
    """When the hardware answers again, the next ticks run the blocking collector off the loop."""
    clock, gpu = Clock(), Gpu(absent=2)
    sampler = Sampler([gpu], node_id="n", monotonic=clock, wall=lambda: 1.0e9)
    await _ticks(sampler, clock, 5)
    main = threading.current_thread().name
    assert [t == main for t in gpu.threads] == [False, True, True, False, False]
    assert sampler.status["nvidia"].state == "ok"


def _open_fds_under(root: pathlib.Path) -> dict[int, str]:
    found = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(root)):
            found[int(fd)] = target
    return found


def test_cpu_collector_keeps_cpufreq_and_sensor_files_open_across_ticks(tmp_path):
    """Per-core cpufreq and hwmon files are opened once and re-read in place, not reopened per tick."""
    root = tmp_path / "ws"
    shutil.copytree(FIXTURES / "workstation", root, symlinks=True)
    cpu = CpuCollector(open_reader(str(root / "proc")), proc_root=str(root / "proc"), sys_root=str(root / "sys"))
    cpu.collect(1.0)
    first = {fd: t for fd, t in _open_fds_under(root / "sys").items()}
    assert any(t.endswith("scaling_cur_freq") for t in first.values())
    assert any(t.endswith("_input") for t in first.values())
    freq = root / "sys/devices/system/cpu/cpu2/cpufreq/scaling_cur_freq"
    with open(freq, "r+") as handle:  # rewritten in place, as the kernel updates it
        handle.truncate(0)
        handle.write("1234000\n")
    sample = cpu.collect(2.0)
    assert _open_fds_under(root / "sys") == first
    assert [c.frequency for c in sample.cores if c.id == 2] == [1234.0]
