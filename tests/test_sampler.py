"""The sampler on real collectors over a fixture tree, with injected clocks and failing collectors."""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import time

import pytest
from conftest import FIXTURES

from tracklab_sysmon import protocol, wire
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.model import AcceleratorMemory, AcceleratorSample
from tracklab_sysmon.ring import SnapshotRing
from tracklab_sysmon.sampler import Sampler

WALL = 1_800_000_000.0


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Broken:
    """A collector whose reads fail `times` times with an ordinary exception, then succeed."""

    blocking = False

    def __init__(self, name: str, times: int = 10**9) -> None:
        self.name, self.left = name, times

    def collect(self, now: float) -> object:
        if self.left > 0:
            self.left -= 1
            raise RuntimeError("sensor bus wedged")
        return ()


class Absent:
    """A collector whose hardware is not here."""

    name, blocking = "nvidia", True

    def collect(self, now: float) -> object:
        raise Unavailable("no NVIDIA driver")


class OneDevice:
    """A blocking accelerator collector that finds one device."""

    blocking = True

    def __init__(self, name: str, index: int) -> None:
        self.name, self.index = name, index

    def collect(self, now: float) -> list[AcceleratorSample]:
        memory = AcceleratorMemory(used=1, total=4, percentage=25.0)
        return [AcceleratorSample(self.index, "gpu", self.name, 10.0, memory, None, None, None)]


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "workstation"
    shutil.copytree(FIXTURES / "workstation", root, symlinks=True)
    return root


def make_sampler(tree: pathlib.Path, *extra, ring: SnapshotRing | None = None, drop: str = ""):
    clock = Clock()
    real = [c for c in default_collectors(str(tree / "proc"), str(tree / "sys"), statvfs=None)
            if c.name != drop]
    sampler = Sampler([*real, *extra], node_id="ws", ring=ring, monotonic=clock, wall=lambda: WALL)
    return sampler, clock


async def _healthy_body(tree: pathlib.Path) -> dict:
    """The first snapshot, decoded, of a sampler with only the real collectors on `tree` (same stand-in clocks)."""
    sampler, _ = make_sampler(tree)
    await sampler.tick()
    return wire.decode(sampler.latest_bytes)


async def test_one_failing_collector_gives_a_partial_snapshot(tree: pathlib.Path) -> None:
    """A collector that raises leaves its section None; the rest of the snapshot is published."""
    sampler, _ = make_sampler(tree, Broken("network"), drop="network")
    snap = await sampler.tick()
    assert snap.network is None
    body = wire.decode(sampler.latest_bytes)
    assert body["network"] is None and body["memory"]["used"] == 12_582_912_000
    # Every other section is exactly what a sampler without the broken collector publishes.
    assert body == {**await _healthy_body(tree), "network": None}


async def test_error_status_counts_failures_and_keeps_the_message(tree: pathlib.Path) -> None:
    """An erroring collector is `error` with its message and a failure count per tick."""
    sampler, _ = make_sampler(tree, Broken("network"), drop="network")
    await sampler.tick()
    await sampler.tick()
    status = sampler.status["network"]
    assert (status.state, status.failures) == ("error", 2)
    assert status.last_error == "RuntimeError: sensor bus wedged"
    assert status.last_success is None


async def test_unavailable_is_reported_as_unavailable_not_error(tree: pathlib.Path) -> None:
    """Absent hardware is `unavailable`, with no failure counted and no accelerators."""
    sampler, _ = make_sampler(tree, Absent())
    snap = await sampler.tick()
    status = sampler.status["nvidia"]
    assert (status.state, status.last_error, status.failures) == ("unavailable", "no NVIDIA driver", 0)
    assert snap.accelerators == ()


async def test_status_fields_before_and_after_a_tick(tree: pathlib.Path) -> None:
    """Collectors start `pending`; after a tick they are `ok` with duration and last success (ms)."""
    sampler, _ = make_sampler(tree)
    assert {s.state for s in sampler.status.values()} == {"pending"}
    await sampler.tick()
    cpu = sampler.status["cpu"]
    assert (cpu.state, cpu.last_error, cpu.failures, cpu.last_success) == ("ok", None, 0, 1_800_000_000_000)
    assert isinstance(cpu.last_duration_ms, float)
    assert protocol.collector_body(cpu) == {"status": "ok", "lastError": None, "lastDurationMs": cpu.last_duration_ms,
                                            "lastSuccess": 1_800_000_000_000, "failures": 0}


class Stopwatch:
    """A stand-in for time.perf_counter that moves only when a collector says it spent time."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Spends:
    """A collector that spends exactly `seconds` of the stand-in stopwatch's time."""

    blocking = False

    def __init__(self, stopwatch: Stopwatch, seconds: float) -> None:
        self.name, self.stopwatch, self.seconds = "spender", stopwatch, seconds

    def collect(self, now: float) -> object:
        self.stopwatch.now += self.seconds
        return ()


async def test_duration_is_the_collectors_own_time_in_ms(tree: pathlib.Path, monkeypatch) -> None:
    """lastDurationMs is the time spent inside that collector's call, in ms; one that spends none reports 0."""
    stopwatch = Stopwatch()
    sampler, _ = make_sampler(tree, Spends(stopwatch, 0.0125))
    monkeypatch.setattr(time, "perf_counter", stopwatch)
    await sampler.tick()
    monkeypatch.undo()
    assert sampler.status["spender"].last_duration_ms == 12.5
    assert sampler.status["cpu"].last_duration_ms == 0.0


async def test_collector_recovers_from_an_error(tree: pathlib.Path) -> None:
    """After one failed read and one good one the collector is `ok` again, the failure still counted."""
    sampler, _ = make_sampler(tree, Broken("flaky", times=1))
    await sampler.tick()
    assert sampler.status["flaky"].state == "error"
    await sampler.tick()
    flaky = sampler.status["flaky"]
    assert (flaky.state, flaky.last_error, flaky.failures) == ("ok", None, 1)


async def test_first_snapshot_after_prime_has_real_rates(tree: pathlib.Path) -> None:
    """prime() reads the counters, so the first published snapshot carries real rates and CPU usage."""
    sampler, clock = make_sampler(tree)
    await sampler.prime()
    assert sampler.latest is None and len(sampler.ring) == 0  # priming publishes nothing
    stat = tree / "proc/stat"
    stat.write_text(stat.read_text().replace(  # every core: +30 user, +70 idle ticks
        "10000 100 2000 80000", "10030 100 2000 80070").replace(
        "cpu  80000 800 16000 640000", "cpu  80240 800 16000 640560"))
    disks = tree / "proc/diskstats"
    disks.write_text(disks.read_text().replace(" sda 1000 10 20000 ", " sda 1100 10 22000 "))
    clock.now += 0.5
    snap = await sampler.tick()
    assert snap.cpu.overall == 30.0
    assert [c.usage for c in snap.cpu.cores] == [30.0] * 8
    assert (snap.disk.io_read, snap.disk.iops) == (2_048_000.0, 200.0)  # 2000 * 512 / 0.5; 100 / 0.5


async def test_listener_gets_the_snapshot_and_its_encoded_bytes(tree: pathlib.Path) -> None:
    """Each tick calls listeners with the snapshot and the exact bytes served and stored."""
    sampler, _ = make_sampler(tree)
    seen = []
    sampler.add_listener(lambda snap, encoded: seen.append((snap, encoded)))
    snap = await sampler.tick()
    assert seen == [(snap, sampler.latest_bytes)]
    assert sampler.ring.select() == [sampler.latest_bytes]
    assert wire.decode(seen[0][1])["node_id"] == "ws"
    assert wire.decode(seen[0][1])["timestamp"] == 1_800_000_000_000


async def test_ring_stays_bounded_across_ticks(tree: pathlib.Path) -> None:
    """With history 3, ten ticks keep only the last three snapshots."""
    sampler, _ = make_sampler(tree, ring=SnapshotRing(3))
    published = []
    sampler.add_listener(lambda snap, encoded: published.append(encoded))
    for _ in range(10):
        await sampler.tick()
    assert sampler.ticks == 10
    assert len(sampler.ring) == 3
    assert sampler.ring.select() == published[-3:]


async def test_blocking_accelerator_collectors_are_merged(tree: pathlib.Path) -> None:
    """Accelerators from several blocking collectors (run in threads) land in one list."""
    sampler, _ = make_sampler(tree, OneDevice("nvml", 0), OneDevice("amd", 1), Absent())
    snap = await sampler.tick()
    assert sorted((a.id, a.name) for a in snap.accelerators) == [(0, "nvml"), (1, "amd")]
    body = wire.decode(sampler.latest_bytes)
    assert [a["memory"]["percentage"] for a in body["accelerators"]] == [25.0, 25.0]


async def test_truncated_kernel_file_fails_only_its_collector(tree: pathlib.Path) -> None:
    """A cut-off /proc/loadavg makes `cpu` an error with a readable message; memory, disk, network go on."""
    (tree / "proc/loadavg").write_text("2.50 2.10")
    sampler, _ = make_sampler(tree)
    snap = await sampler.tick()
    assert snap.cpu is None
    healthy = await _healthy_body(FIXTURES / "workstation")  # the same tree with an intact loadavg
    assert {**wire.decode(sampler.latest_bytes), "cpu": healthy["cpu"]} == healthy
    assert sampler.status["cpu"].state == "error"
    assert sampler.status["cpu"].last_error.startswith("ParseError: /proc/loadavg is malformed")
    assert sampler.status["memory"].state == "ok"


class Burner:
    """A collector that spends about 2 ms of CPU per call, a little more than a real tick."""

    name, blocking = "burner", False

    def collect(self, now: float) -> object:
        start = time.process_time()
        while time.process_time() - start < 0.002:
            pass
        return ()


async def test_own_cpu_share_sees_a_tick_of_a_few_milliseconds(tree: pathlib.Path) -> None:
    """The service's own CPU share resolves the ~ms a tick costs (a 10 ms-grained clock would say 0)."""
    clock = Clock()
    sampler = Sampler((Burner(),), node_id="n", monotonic=clock)
    spent_before = time.process_time()
    await sampler.tick()
    assert sampler.own_cpu_percent is None  # one mark is not a rate yet
    clock.now += 1.0
    await sampler.tick()
    spent = time.process_time() - spent_before
    # Over one stand-in second the process spent at least the burner's 2 ms and at most what the test measured.
    assert 0.2 <= sampler.own_cpu_percent <= round(100.0 * spent, 3)


class Hung:
    """A blocking collector whose first call hangs (a driver call that never returns) until released."""

    name, blocking = "nvidia", True

    def __init__(self) -> None:
        import threading

        self.release = threading.Event()
        self.calls = 0

    def collect(self, now: float) -> object:
        self.calls += 1
        if self.calls == 1:
            self.release.wait(30)
        return ()


async def test_a_hung_blocking_collector_costs_only_its_own_section(tree: pathlib.Path) -> None:
    """A threaded collector stuck in a call is reported as an error and skipped; the others keep ticking."""
    hung = Hung()
    sampler, _ = make_sampler(tree, hung)
    sampler.thread_wait = 0.05
    first = await sampler.tick()
    assert first.cpu is not None and first.memory is not None
    status = sampler.status["nvidia"]
    assert status.state == "error" and "stuck" in status.last_error
    second = await sampler.tick()  # still hung: not asked again, and the tick does not wait for it
    assert hung.calls == 1 and second.cpu is not None
    assert first.timestamp == second.timestamp == int(WALL * 1000)  # the stand-in wall clock stands still
    hung.release.set()
    for _ in range(100):  # its thread frees up; the collector is asked again and recovers
        await asyncio.sleep(0.01)  # between ticks, as in `run`, the loop takes the thread's answer
        await sampler.tick()
        if sampler.status["nvidia"].state == "ok":
            break
    assert hung.calls >= 2 and sampler.status["nvidia"].state == "ok"


async def test_blocking_collectors_run_on_daemon_threads(tree: pathlib.Path) -> None:
    """Blocking collectors run on daemon threads, so a stuck vendor call cannot hold the process open."""
    import threading

    seen: list[threading.Thread] = []

    class Probe:
        name, blocking = "probe", True

        def collect(self, now: float) -> object:
            seen.append(threading.current_thread())
            return ()

    sampler, _ = make_sampler(tree, Probe())
    await sampler.tick()
    assert seen and seen[0] is not threading.main_thread() and seen[0].daemon
