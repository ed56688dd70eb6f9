"""Soak (slow tier): a real service at --interval 0.1, 50 WebSocket clients and a history poller; RSS and fds stay flat.

The duration is TRACKLAB_SYSMON_SOAK_SECONDS (default 600, the figure the hardening issue asks for);
set it lower while developing. The RSS slope is fitted by least squares over the samples taken
after the history ring is full, and printed with the other figures (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp
import pytest

from tracklab_sysmon.protocol import WS_PATH

DURATION = float(os.environ.get("TRACKLAB_SYSMON_SOAK_SECONDS", "600"))
INTERVAL = 0.1
HISTORY = 200  # full after 20 s, so nearly the whole soak runs with a full ring
CLIENTS = 50
SAMPLE_EVERY = 2.0  # seconds between RSS / fd samples
WARM_UP = 2 * HISTORY * INTERVAL  # the ring is full and allocator pools are grown well before this
# Bound on the RSS trend after warm-up: 2 KiB/s is 7 MB an hour, which a leak of one small object per
# frame or per poll (500 frames/s, 2 polls/s) would pass within minutes; allocator noise stays far below.
MAX_SLOPE_BYTES_PER_S = 2048
MAX_FD_SPREAD = 2  # the poller's keep-alive connection may be replaced once in a while
START_DEADLINE = 30.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(int(DURATION) + 180)]


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    den = sum((x - mean_x) ** 2 for x, _ in points)
    return num / den


def test_slope_fits_a_line():
    """The fit the soak relies on: exact on a line, zero on a constant."""
    assert slope([(0, 1.0), (1, 3.0), (2, 5.0)]) == pytest.approx(2.0)
    assert slope([(0, 7.0), (5, 7.0), (9, 7.0)]) == 0.0


@pytest.fixture
def service(tmp_path):
    portfile = tmp_path / "port.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--portfile", str(portfile),
         "--interval", str(INTERVAL), "--history", str(HISTORY), "--node-id", "soak",
         "--max-ws-clients", str(CLIENTS + 5)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        end = time.monotonic() + START_DEADLINE
        while not portfile.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < end, "the service never wrote its portfile"
            time.sleep(0.05)
        yield proc, json.loads(portfile.read_text())["url"]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        proc.stderr.close()


async def _subscriber(session: aiohttp.ClientSession, url: str, counts: list[int], index: int, stop: asyncio.Event):
    async with session.ws_connect(url + WS_PATH) as conn:
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(conn.receive(), 1.0)
            except TimeoutError:
                continue
            assert message.type is aiohttp.WSMsgType.TEXT, message
            counts[index] += 1


async def _poller(session: aiohttp.ClientSession, url: str, polls: list[int], stop: asyncio.Event):
    while not stop.is_set():
        async with session.get(url + "/api/system/metrics/history") as response:
            assert response.status == 200
            await response.read()
        polls[0] += 1
        await asyncio.sleep(0.5)


async def test_soak_rss_and_fds_stay_flat(service):
    """Over the soak, after the ring fills, the service's RSS has no upward trend and its open fds do not change; every
    client keeps receiving.
    """
    proc, url = service
    pid = proc.pid
    counts, polls = [0] * CLIENTS, [0]
    stop = asyncio.Event()
    samples: list[tuple[float, int, int]] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        tasks = [asyncio.create_task(_subscriber(session, url, counts, i, stop)) for i in range(CLIENTS)]
        tasks.append(asyncio.create_task(_poller(session, url, polls, stop)))
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < DURATION:
            for task in tasks:
                if task.done():
                    task.result()  # a client that failed fails the soak, with its reason
            samples.append((elapsed, _rss(pid), _fds(pid)))
            await asyncio.sleep(SAMPLE_EVERY)
        at_end = list(counts)
        await asyncio.sleep(3 * INTERVAL + 1.0)
        stop.set()
        await asyncio.gather(*tasks)
    steady = [(t, rss, fds) for t, rss, fds in samples if t >= WARM_UP]
    assert len(steady) >= 5, f"soak too short for a trend: {len(samples)} samples, warm-up {WARM_UP} s"
    rss_slope = slope([(t, float(rss)) for t, rss, _ in steady])
    fd_counts = sorted({fds for _, _, fds in steady})
    print(f"\nsoak {DURATION:.0f} s, {CLIENTS} clients, interval {INTERVAL}, history {HISTORY}: "
          f"RSS {samples[0][1] / 2**20:.1f} MiB at start, {steady[0][1] / 2**20:.1f} after warm-up, "
          f"{steady[-1][1] / 2**20:.1f} at end, max {max(r for _, r, _ in steady) / 2**20:.1f}; "
          f"slope {rss_slope:.1f} B/s over {len(steady)} samples; fds {fd_counts}; "
          f"frames per client {min(counts)}-{max(counts)}; history polls {polls[0]}; RSS MiB by fifths of the "
          f"steady part: {[round(steady[i * (len(steady) - 1) // 5][1] / 2**20, 2) for i in range(6)]}")
    assert rss_slope < MAX_SLOPE_BYTES_PER_S
    assert fd_counts[-1] - fd_counts[0] <= MAX_FD_SPREAD
    assert all(after > before for after, before in zip(counts, at_end, strict=True))  # still streaming at the end
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
