"""The sampler's own cost: absent hardware is re-checked on the loop, without a worker-thread hop."""

from __future__ import annotations

import threading

from tracklab_sysmon.collectors import Unavailable
from tracklab_sysmon.sampler import Sampler


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Gpu:
    """A blocking collector, absent for its first `absent` calls; records which thread asked it."""

    name, section, blocking = "nvidia", "accelerators", True

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
