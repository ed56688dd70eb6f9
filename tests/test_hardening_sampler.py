"""Hardening of the sampler: supervised ticks, 64-bit overflow, stalls, dips, clocks, own RSS, FIFOs."""

from __future__ import annotations

import asyncio
import logging
import os
import pathlib
import shutil
import time
from typing import Any

import pytest
from conftest import FIXTURES
from test_cli import Service, _script

from tracklab_sysmon import hotpath
from tracklab_sysmon.collectors import default_collectors
from tracklab_sysmon.collectors.memory import MemoryCollector
from tracklab_sysmon.collectors.network import NetworkCollector
from tracklab_sysmon.config import ServiceConfig
from tracklab_sysmon.model import MemorySample, Snapshot, SwapSample
from tracklab_sysmon.sampler import LoopHealth, Sampler
from tracklab_sysmon.server import create_app, keys

WALL = 1_800_000_000.0
SECTORS_2_55 = 2**55  # legal in /proc/diskstats text; in bytes (x 512) it is 2**64, one past u64


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now: float = 50.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    root = tmp_path / "cli-tree"
    shutil.copytree(FIXTURES / "cli-tree", root, symlinks=True)
    return root


def tree_sampler(tree: pathlib.Path, **kwargs: Any) -> Sampler:
    collectors = default_collectors(str(tree / "proc"), str(tree / "sys"), statvfs=None, host_gpus=False)
    return Sampler(collectors, node_id="n", **kwargs)


def net_dev(eth0_rx: int, eth0_tx: int) -> str:
    head = "Inter-| Receive | Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets\n"
    return (head + "    lo: 10 1 0 0 0 0 0 0 10 1 0 0 0 0 0 0\n"
            f"  eth0: {eth0_rx} 100 0 0 0 0 0 0 {eth0_tx} 50 0 0 0 0 0 0\n")


# --- defect 2: a value wider than 64 bits, a failing tick, a stalled loop ------------------------


def test_a_counter_wider_than_64_bits_is_null_and_the_service_keeps_ticking(
    tree: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """2^55 sectors (2^64 bytes): readBytes is null, disk says why, ticks go on, SIGTERM exits 0."""
    diskstats = tree / "proc/diskstats"
    diskstats.write_text(diskstats.read_text().replace("sda 1000 0 20000", f"sda 1000 0 {SECTORS_2_55}"))
    service = Service([_script("tracklab-sysmon"), "serve", "--proc-root", str(tree / "proc"),
                       "--sys-root", str(tree / "sys"), "--interval", "0.05"], tmp_path / "svc.port")
    try:
        first = service.get("/api/health")
        sda = next(d for d in service.get("/api/system/metrics")[0]["disk"]["devices"] if d["name"] == "sda")
        assert sda["readBytes"] is None and sda["writeBytes"] == 40000 * 512
        disk = first["collectors"]["disk"]
        assert disk["status"] == "degraded"
        assert disk["lastError"] == "sda read_bytes does not fit an unsigned 64-bit counter"
        assert first["status"] == "degraded" and first["failedTicks"] == 0
        for _ in range(600):  # wait for more ticks; the ceiling only catches a dead loop
            if service.get("/api/health")["ticks"] >= first["ticks"] + 5:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the sampler stopped ticking")
        code, stderr = service.stop()
        assert code == 0, stderr
    finally:
        service.kill()


async def test_a_failing_tick_costs_one_tick_and_the_loop_goes_on(tree: pathlib.Path) -> None:
    """A tick that raises is counted and skipped; the next ticks publish as usual."""
    clock = Clock()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds
        if len(sleeps) > 6:
            raise asyncio.CancelledError

    sampler = tree_sampler(tree, interval=1.0, monotonic=clock, sleep=sleep)
    real_tick, calls = sampler.tick, []

    async def flaky_tick() -> Snapshot:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return await real_tick()

    sampler.tick = flaky_tick
    with pytest.raises(asyncio.CancelledError):
        await sampler.run()
    assert (len(calls), sampler.failed_ticks, sampler.ticks) == (6, 1, 5)


async def test_a_listener_that_raises_does_not_cost_the_others_their_snapshot(tree: pathlib.Path) -> None:
    """The second listener still gets every snapshot when the first one raises."""
    sampler = tree_sampler(tree)
    got = []
    sampler.add_listener(lambda snapshot, encoded: 1 / 0)
    sampler.add_listener(lambda snapshot, encoded: got.append(encoded))
    await sampler.start()
    first = sampler.latest_bytes
    await sampler.tick()
    assert got == [first, sampler.latest_bytes] and sampler.ticks == 2


class HugeMemory:
    """A collector that publishes an int no JSON encoder here accepts (2^70), bypassing every check."""

    name, blocking = "huge", False

    def collect(self, now: float) -> MemorySample:
        return MemorySample(usage=1.0, used=2**70, total=2**71, available=1, swap=SwapSample(0, 0, 0.0))


async def test_a_section_that_cannot_be_encoded_is_dropped_and_its_collector_says_why(tree: pathlib.Path) -> None:
    """The tick publishes without the bad section; that collector is `error` with the encoder's reason."""
    sampler = Sampler([*tree_sampler(tree).collectors, HugeMemory()], node_id="n")
    snapshot = await sampler.tick()
    assert snapshot.memory is None and snapshot.cpu is not None and sampler.ticks == 1
    status = sampler.status["huge"]
    assert (status.state, status.failures) == ("error", 1)
    assert status.last_error == "cannot encode its values: Integer exceeds 64-bit range"


async def test_an_unencodable_section_is_logged_once_not_every_tick(
    tree: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Three ticks with the same unencodable section log one warning (not ok/error each tick); its recovery
    logs one line."""
    huge = HugeMemory()
    sampler = Sampler([huge], node_id="n")
    with caplog.at_level(logging.INFO, logger="tracklab_sysmon.sampler"):
        for _ in range(3):
            await sampler.tick()
        huge.collect = lambda now: MemorySample(1.0, 1, 2, 1, SwapSample(0, 0, 0.0))  # type: ignore[method-assign]
        await sampler.tick()
        await sampler.tick()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert lines == [
        ("INFO", "collector huge: ok"),  # pending -> ok, as every collector's first run
        ("WARNING", "collector huge: error (cannot encode its values: Integer exceeds 64-bit range)"),
        ("INFO", "collector huge: ok"),
    ]
    assert sampler.status["huge"].failures == 3


async def test_health_says_stalled_once_the_newest_snapshot_is_three_intervals_old(tree: pathlib.Path) -> None:
    """Healthy up to three intervals after the last tick, then degraded with the snapshot's age."""
    clock = Clock()
    sampler = tree_sampler(tree, interval=2.0, monotonic=clock)
    await sampler.tick()
    clock.now += 6.0
    assert sampler.health() == LoopHealth(status="healthy", stalled=False, last_tick_age_ms=6000.0, failed_ticks=0)
    clock.now += 0.5
    assert sampler.health() == LoopHealth(status="degraded", stalled=True, last_tick_age_ms=6500.0, failed_ticks=0)


async def test_api_health_reports_a_stalled_sampler(aiohttp_client: Any, tree: pathlib.Path) -> None:
    """When every tick fails, /api/health turns degraded, says stalled, and counts the failed ticks."""
    config = ServiceConfig(node_id="n", interval=0.05, history=5, proc_root=str(tree / "proc"),
                           sys_root=str(tree / "sys"))
    app = create_app(config)
    client = await aiohttp_client(app)
    sampler = app[keys.SAMPLER]
    assert (await (await client.get("/api/health")).json())["stalled"] is False

    def refuse(snapshot: Snapshot) -> tuple[Snapshot, bytes]:
        raise ValueError("encoder wedged")

    sampler._encode = refuse
    for _ in range(600):  # the ceiling only catches a hang
        body = await (await client.get("/api/health")).json()
        if body["stalled"]:
            break
        await asyncio.sleep(0.05)
    assert body["status"] == "degraded" and body["failedTicks"] > 0
    assert body["lastTickAgeMs"] > sampler.stall_after * 1000


# --- the run loop realigns after a stall instead of bursting ------------------------------------


async def test_run_realigns_to_its_schedule_after_a_stall(tree: pathlib.Path) -> None:
    """A 5.5-interval stall inside one tick: the next sleep reaches the next grid point, no burst."""
    clock = Clock(100.0)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        clock.now += seconds
        if len(sleeps) == 6:
            raise asyncio.CancelledError

    sampler = tree_sampler(tree, interval=1.0, monotonic=clock, sleep=sleep)
    real_tick = sampler.tick

    async def tick() -> Snapshot:
        snapshot = await real_tick()
        if sampler.ticks == 3:
            clock.now += 5.5  # suspend, or a tick that took far too long
        return snapshot

    sampler.tick = tick
    with pytest.raises(asyncio.CancelledError):
        await sampler.run()
    # prime (0.2), then beats at 100.2 + k: after the stall at 102.2 + 5.5, wake at 108.2, not at once.
    assert sleeps == [0.2, 1.0, 1.0, 0.5, 1.0, 1.0]


# --- own RSS: the right statm field -------------------------------------------------------------


async def test_own_rss_is_the_second_statm_field_times_the_page_size(
    tree: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """statm `size resident shared ...`: rss is resident pages x page size, exactly."""
    statm = tmp_path / "statm"
    statm.write_text("9000 1234 300 10 0 500 0\n")
    sampler = tree_sampler(tree, statm_path=str(statm))
    await sampler.tick()
    assert sampler.own_rss == 1234 * os.sysconf("SC_PAGE_SIZE")
    statm.write_text("9000 2000 300 10 0 500 0\n")  # rewritten in place: read when asked, not at the tick
    assert sampler.own_rss == 2000 * os.sysconf("SC_PAGE_SIZE")


async def test_own_rss_without_proc_comes_from_psutil(tree: pathlib.Path) -> None:
    """Without /proc/self/statm (macOS, Windows) own RSS is psutil's figure for this process, within a few pages."""
    import psutil

    sampler = tree_sampler(tree, statm_path=None)
    await sampler.tick()
    assert sampler.own_rss is not None
    assert abs(sampler.own_rss - psutil.Process().memory_info().rss) <= 64 * os.sysconf("SC_PAGE_SIZE")


# --- defect 9: a transient all-zero line in /proc/net/dev ------------------------------------


def test_a_transient_all_zero_net_dev_line_is_not_a_traffic_spike(tmp_path: pathlib.Path) -> None:
    """eth0 at 1,000,000 / 0 (a glitch) / 1,000,600 bytes, a second apart: 300 B/s at the return, not 1 MB/s."""
    (tmp_path / "net").mkdir()
    dev = tmp_path / "net/dev"
    collector = NetworkCollector(hotpath.open_reader(str(tmp_path)))
    rates = []
    for now, (rx, tx) in enumerate([(1_000_000, 5000), (0, 0), (1_000_600, 5200)]):
        dev.write_text(net_dev(rx, tx))
        sample = collector.collect(float(now))
        rates.append((sample.bytes_in, sample.bytes_out))
    assert rates == [(0.0, 0.0), (0.0, 0.0), (300.0, 100.0)]


# --- clocks: a wall-clock jump is not a monotonic gap -----------------------------------------


async def test_a_wall_clock_jump_moves_timestamps_but_not_rates(tmp_path: pathlib.Path) -> None:
    """Wall clock +1 h between ticks: timestamps jump by 1 h, the rate still covers the 1 s that passed;
    a 4 s monotonic gap gives the rate over those 4 s."""
    (tmp_path / "net").mkdir()
    dev = tmp_path / "net/dev"
    dev.write_text(net_dev(1000, 0))
    mono, wall = Clock(10.0), Clock(WALL)
    sampler = Sampler([NetworkCollector(hotpath.open_reader(str(tmp_path)))], node_id="n", monotonic=mono, wall=wall)
    first = await sampler.tick()
    mono.now += 1.0
    wall.now += 3600.0 + 1.0
    dev.write_text(net_dev(3000, 0))
    second = await sampler.tick()
    assert second.timestamp - first.timestamp == 3_601_000
    assert second.network.bytes_in == 2000.0
    mono.now += 4.0
    wall.now -= 7200.0  # the wall clock stepping back changes nothing either
    dev.write_text(net_dev(11_000, 0))
    third = await sampler.tick()
    assert third.timestamp - second.timestamp == -7_200_000
    assert third.network.bytes_in == 2000.0  # 8000 bytes over the 4 s the monotonic clock measured


# --- defect 10: garbage parses to "error", not to silent nulls ---------------------------------


def test_garbage_meminfo_is_a_memory_error_not_nulls(tmp_path: pathlib.Path) -> None:
    """A meminfo without a readable MemTotal raises the reason instead of publishing all-null memory."""
    (tmp_path / "meminfo").write_text("\x00\x01 garbage line\nMemTotal: lots kB\n")
    with pytest.raises(ValueError, match="no readable MemTotal"):
        MemoryCollector(hotpath.open_reader(str(tmp_path))).collect(0.0)


def test_garbage_net_dev_is_a_network_error_not_nulls(tmp_path: pathlib.Path) -> None:
    """A net/dev with no interface line at all (not even lo) is an error with the reason."""
    (tmp_path / "net").mkdir()
    (tmp_path / "net/dev").write_text("<html>502 Bad Gateway</html>\n")
    with pytest.raises(ValueError, match="no interface lines"):
        NetworkCollector(hotpath.open_reader(str(tmp_path))).collect(0.0)


# --- defect 11: a FIFO under --proc-root ------------------------------------------------------


def test_a_fifo_in_place_of_proc_stat_neither_hangs_nor_blocks_sigterm(
    tree: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    """The service starts, cpu is `error` saying the file is not regular, others ok, SIGTERM exits 0."""
    stat = tree / "proc/stat"
    stat.unlink()
    os.mkfifo(stat)
    service = Service([_script("tracklab-sysmon"), "serve", "--proc-root", str(tree / "proc"),
                       "--sys-root", str(tree / "sys"), "--interval", "0.1"], tmp_path / "svc.port")
    try:
        collectors = service.get("/api/health")["collectors"]
        assert collectors["cpu"]["status"] == "error"
        assert collectors["cpu"]["lastError"] == f"EINVAL: not a regular file ({stat})"
        assert {collectors[n]["status"] for n in ("memory", "disk", "network")} == {"ok"}
        code, stderr = service.stop()
        assert code == 0, stderr
    finally:
        service.kill()
