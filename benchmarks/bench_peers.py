"""Aggregating 50 peers at 1 Hz: the aggregator's CPU % of one core and the staleness of its view.

Contenders, run one after another against the same stand-ins: no peers (baseline), 50 peers
followed over WebSocket, 50 peers polled (stand-ins without a WebSocket endpoint). The stand-in
peers live in one separate process and speak the service's protocol (info + metrics frames on
/ws/system-metrics, the list on /api/system/metrics) with a real snapshot's shape, stamped when
each peer "samples" (its own 1 Hz timer, random phase). Usage: bench_peers.py [--peers 50] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import aiohttp
import psutil
from aiohttp import web

WINDOW = 5.0  # seconds per CPU window; the median over windows is reported
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
        ws = web.WebSocketResponse(heartbeat=10)
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


async def _measure(pid: int, url: str, expected: int, seconds: float) -> tuple[list[float], list[float], int]:
    """CPU % of one core per window, staleness (ms) of every peer entry read, and nodes in view."""
    proc = psutil.Process(pid)
    staleness: list[float] = []
    cpu: list[float] = []
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + 30
        while await _count(session, url) < expected + 1:  # warm up: every peer in view
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
        windows = max(1, int(seconds // WINDOW))
        nodes = 0
        for _ in range(windows):
            start_t, start_cpu = time.monotonic(), sum(proc.cpu_times()[:2])
            while time.monotonic() - start_t < WINDOW:
                async with session.get(url + "/api/system/metrics") as response:
                    body = await response.json()
                now = time.time() * 1000
                staleness += [now - snap["timestamp"] for snap in body[1:]]
                nodes = len(body)
                await asyncio.sleep(1 / READ_HZ)
            used = sum(proc.cpu_times()[:2]) - start_cpu
            cpu.append(100 * used / (time.monotonic() - start_t))
    return cpu, staleness, nodes


async def _count(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url + "/api/system/metrics") as response:
            return len(await response.json())
    except aiohttp.ClientError:
        return 0


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _run(label: str, peers: int, websocket: bool, seconds: float, folder: str) -> dict:
    stand_ins, urls = _start_stand_ins(peers, websocket) if peers else (None, [])
    aggregator, url = _start_aggregator(urls, folder)
    try:
        cpu, stale, nodes = asyncio.run(_measure(aggregator.pid, url, peers, seconds))
    finally:
        for process in (aggregator, stand_ins):
            if process:
                process.terminate()
                process.wait(10)
    return {"label": label, "cpu": cpu, "stale": stale, "nodes": nodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--stand-ins", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-ws", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stand_ins:
        asyncio.run(_serve_stand_ins(args.stand_ins, not args.no_ws))
        return
    with tempfile.TemporaryDirectory() as folder:
        results = [
            _run("no peers (baseline)", 0, True, args.seconds, folder),
            _run(f"{args.peers} peers, WebSocket", args.peers, True, args.seconds, folder),
            _run(f"{args.peers} peers, polling", args.peers, False, args.seconds, folder),
        ]
    base = statistics.median(results[0]["cpu"])
    print(f"aggregator at 1 Hz, {args.seconds:.0f} s per contender in {WINDOW:.0f} s windows; "
          f"view read at {READ_HZ} Hz; stand-in snapshots age 0-1000 ms at the source")
    print(f"{'contender':<24} {'nodes':>5} {'CPU% median':>11} {'min-max':>13} {'x base':>7} "
          f"{'stale p50':>9} {'p95':>6} {'max':>6} (ms)")
    for r in results:
        med = statistics.median(r["cpu"])
        spread = f"{min(r['cpu']):.1f}-{max(r['cpu']):.1f}"
        stale = r["stale"]
        cols = (f"{_pct(stale, .5):9.0f} {_pct(stale, .95):6.0f} {max(stale):6.0f}" if stale else
                f"{'-':>9} {'-':>6} {'-':>6}")
        ratio = med / base if base else float("nan")
        print(f"{r['label']:<24} {r['nodes']:>5} {med:11.2f} {spread:>13} {ratio:7.1f} {cols}")


if __name__ == "__main__":
    main()
