"""Aggregating 50 peers at 1 Hz: the aggregator's CPU % of one core and the staleness of its view.

Contenders, all running at once: no peers (baseline), 50 peers followed over WebSocket, 50 peers
polled (stand-ins without a WebSocket endpoint). The stand-in peers live in two separate processes
(one per kind) and speak the service's protocol (info + metrics frames on /ws/system-metrics, the
list on /api/system/metrics) with a real snapshot's shape, stamped when each peer "samples" (its own
1 Hz timer, random phase).

Two phases, so that the bench's own requests are never counted as the aggregator's cost:
  CPU        --seconds (default 60, rounded up to whole PERIOD s: every periodic cost, the
             aggregator's 5 s pings to its peers and the peers' 10 s pings to it, is inside) with
             no request from the bench; schedstat run time of every aggregator thread, sampled each
             second: window mean, 1 s median and p99.
  staleness  afterwards, --stale-seconds of reading each aggregator's view READ_HZ times a second:
             now - timestamp of every peer entry (those reads' CPU is not reported).
Usage: bench_peers.py [--peers 50] [--seconds 60] [--stale-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import aiohttp
from aiohttp import web
from proc_usage import CpuSeries, commit, memory_mib, summary, uptime

PERIOD = 10  # s: the longest periodic cost (the stand-ins ping the aggregator every 10 s; it pings them every 5)
READ_HZ = 4  # the bench reads the aggregated view this often to measure staleness


# ---------------------------------------------------------------- stand-in peers (own process)


def _template() -> dict:
    """One real snapshot of this machine, used as every stand-in's payload."""
    out = subprocess.run([sys.executable, "-m", "tracklab_sysmon", "snapshot"], capture_output=True, check=True)
    return json.loads(out.stdout)


def _stand_in(template: dict, node_id: str, websocket: bool) -> web.Application:
    state = {"snapshot": b"null", "sockets": set()}

    async def sample(app: web.Application):
        await asyncio.sleep(random.random())  # peers tick at their own phases
        while True:
            snap = {**template, "node_id": node_id, "timestamp": int(time.time() * 1000)}
            state["snapshot"] = json.dumps(snap).encode()
            frame = b'{"type":"metrics","data":' + state["snapshot"] + b"}"
            text = frame.decode()
            for ws in tuple(state["sockets"]):
                with contextlib.suppress(ConnectionError):
                    await ws.send_str(text)
            await asyncio.sleep(1.0)

    async def ticking(app: web.Application):
        task = asyncio.create_task(sample(app))
        yield
        task.cancel()

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=b"[" + state["snapshot"] + b"]", content_type="application/json")

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=PERIOD)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"type": "info", "data": {"node_id": node_id}}))
        state["sockets"].add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            state["sockets"].discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/api/system/metrics", metrics)
    if websocket:
        app.router.add_get("/ws/system-metrics", stream)
    app.cleanup_ctx.append(ticking)
    return app


async def _serve_stand_ins(count: int, websocket: bool) -> None:
    template = _template()
    urls = []
    for index in range(count):
        runner = web.AppRunner(_stand_in(template, f"peer-{index:02d}", websocket), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    print(json.dumps(urls), flush=True)
    await asyncio.Event().wait()


# ---------------------------------------------------------------- the measurement


def _start_stand_ins(count: int, websocket: bool) -> tuple[subprocess.Popen, list[str]]:
    args = [sys.executable, __file__, "--stand-ins", str(count)] + ([] if websocket else ["--no-ws"])
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    return process, json.loads(process.stdout.readline())


def _start_aggregator(peers: list[str], folder: str) -> tuple[subprocess.Popen, str]:
    portfile = os.path.join(folder, f"agg-{len(peers)}-{time.monotonic_ns()}.port")
    args = [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--portfile", portfile,
            "--node-id", "aggregator", "--interval", "1"]
    for url in peers:
        args += ["--peer", url]
    process = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    while not os.path.exists(portfile):
        time.sleep(0.05)
    with open(portfile) as handle:
        return process, json.load(handle)["url"]


async def _wait_in_view(session: aiohttp.ClientSession, url: str, expected: int) -> int:
    deadline = time.monotonic() + 30
    while (nodes := await _count(session, url)) < expected + 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return nodes


async def _count(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url + "/api/system/metrics") as response:
            return len(await response.json())
    except aiohttp.ClientError:
        return 0


async def _cpu_window(pids: list[int], seconds: int) -> list[CpuSeries]:
    """Sample every aggregator's CPU once a second for `seconds`; the bench sends them nothing meanwhile."""
    series = [CpuSeries(pid) for pid in pids]
    start = time.monotonic()
    for beat in range(1, seconds + 1):
        await asyncio.sleep(max(0.0, start + beat - time.monotonic()))
        for s in series:
            s.sample()
    return series


async def _staleness(session: aiohttp.ClientSession, url: str, seconds: float) -> list[float]:
    """now - timestamp (ms) of every peer entry in the aggregator's view, read READ_HZ times a second."""
    stale: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        async with session.get(url + "/api/system/metrics") as response:
            body = await response.json()
        now = time.time() * 1000
        stale += [now - snap["timestamp"] for snap in body[1:]]
        await asyncio.sleep(1 / READ_HZ)
    return stale


async def _measure(contenders: list[dict], seconds: int, stale_seconds: float) -> None:
    async with aiohttp.ClientSession() as session:
        for c in contenders:  # warm up: every peer in view
            await _wait_in_view(session, c["url"], c["peers"])
        await asyncio.sleep(2.0)
        series = await _cpu_window([c["process"].pid for c in contenders], seconds)
        for c, s in zip(contenders, series, strict=True):
            c.update(cpu=summary(s.percents), window=s.window_percent(), memory=memory_mib(c["process"].pid))
        stale = await asyncio.gather(*(_staleness(session, c["url"], stale_seconds) for c in contenders))
        for c, values in zip(contenders, stale, strict=True):
            c.update(stale=summary(values) if c["peers"] else None, nodes=await _count(session, c["url"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--stale-seconds", type=float, default=20.0)
    parser.add_argument("--stand-ins", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-ws", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stand_ins:
        asyncio.run(_serve_stand_ins(args.stand_ins, not args.no_ws))
        return
    seconds = -(-args.seconds // PERIOD) * PERIOD
    before = uptime()
    processes: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as folder:
        try:
            contenders = []
            for label, peers, websocket in (("no peers (baseline)", 0, True),
                                            (f"{args.peers} peers, WebSocket", args.peers, True),
                                            (f"{args.peers} peers, polling", args.peers, False)):
                urls: list[str] = []
                if peers:
                    stand_ins, urls = _start_stand_ins(peers, websocket)
                    processes.append(stand_ins)
                aggregator, url = _start_aggregator(urls, folder)
                processes.append(aggregator)
                contenders.append({"label": label, "peers": peers, "process": aggregator, "url": url})
            asyncio.run(_measure(contenders, seconds, args.stale_seconds))
        finally:
            for process in processes:
                process.terminate()
                process.wait(10)
    _report(contenders, seconds, args.stale_seconds, before)


def _report(contenders: list[dict], seconds: int, stale_seconds: float, before: str) -> None:
    base = contenders[0]["window"]
    print(f"aggregators at 1 Hz, all at once, commit {commit()}: CPU over {seconds} s with no request from the bench"
          f" (schedstat; window mean, 1 s median and p99), then staleness over {stale_seconds:.0f} s of reads at"
          f" {READ_HZ} Hz; stand-in snapshots age 0-1000 ms at the source")
    print(f"uptime before: {before}\nuptime after:  {uptime()}")
    print(f"{'contender':<24} {'nodes':>5} {'CPU mean':>8} {'median':>7} {'p99':>7} {'x base':>7} {'- base':>7}"
          f" {'Rss MiB':>7} {'stale mean':>10} {'p50':>6} {'p99':>6} (ms)")
    for c in contenders:
        stale = c["stale"]
        cols = (f"{stale['mean']:10.0f} {stale['median']:6.0f} {stale['p99']:6.0f}" if stale else
                f"{'-':>10} {'-':>6} {'-':>6}")
        print(f"{c['label']:<24} {c['nodes']:>5} {c['window']:8.3f} {c['cpu']['median']:7.3f} {c['cpu']['p99']:7.3f}"
              f" {c['window'] / base:7.2f} {c['window'] - base:7.3f} {c['memory']['rss']:7.1f} {cols}")


if __name__ == "__main__":
    main()
