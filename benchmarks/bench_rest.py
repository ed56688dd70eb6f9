"""REST cost per request: the cached tick bytes against encoding or collecting on every request.

Contenders, served side by side by one real service process (port 0) and asked in interleaved
rounds over keep-alive connections from this process:
  cached   GET /api/system/metrics          the real route: the bytes encoded once per tick
  encode   GET /bench/encode-per-request    the same snapshot, encoded again for every request
  collect  GET /bench/collect-per-request   a full collection + encode for every request
Reported per contender: requests/s seen by the client and the server's CPU time per request
(user + system of the server process, from /proc via psutil). Medians over rounds, min-max
spread, and ratios to `cached`. Usage: bench_rest.py [--rounds 7] [--requests 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import aiohttp
import psutil
from aiohttp import web

CONTENDERS = {
    "cached": "/api/system/metrics",
    "encode": "/bench/encode-per-request",
    "collect": "/bench/collect-per-request",
}


# ---------------------------------------------------------------- the service (own process)


def _serve() -> None:
    from tracklab_sysmon import wire
    from tracklab_sysmon.collectors import default_collectors
    from tracklab_sysmon.config import ServiceConfig
    from tracklab_sysmon.sampler import Sampler
    from tracklab_sysmon.server import create_app, keys

    app = create_app(ServiceConfig(port=0, interval=1.0))
    per_request = Sampler(default_collectors(), node_id="bench")

    async def encode(request: web.Request) -> web.Response:
        snapshot = request.app[keys.SAMPLER].latest
        body = b"[" + wire.encode(wire.snapshot_to_wire(snapshot)) + b"]"
        return web.Response(body=body, content_type="application/json")

    async def collect(request: web.Request) -> web.Response:
        await per_request.tick()
        return web.Response(body=b"[" + per_request.latest_bytes + b"]", content_type="application/json")

    app.router.add_get(CONTENDERS["encode"], encode)
    app.router.add_get(CONTENDERS["collect"], collect)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(runner.addresses[0][1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
        await runner.cleanup()

    asyncio.run(main())


# ---------------------------------------------------------------- the client (this process)


async def _round(session: aiohttp.ClientSession, url: str, requests: int, concurrency: int) -> float:
    """Seconds for `requests` GETs, `concurrency` at a time; every body is read in full."""
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            async with session.get(url) as response:
                assert response.status == 200
                await response.read()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def _measure(port: int, server: psutil.Process, args: argparse.Namespace) -> dict[str, list]:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CONTENDERS}
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector) as session:
        for path in CONTENDERS.values():  # warm up: connections, first collection, caches
            await _round(session, path, 50, args.concurrency)
        for _ in range(args.rounds):
            for name, path in CONTENDERS.items():
                before = sum(server.cpu_times()[:2])
                seconds = await _round(session, path, args.requests, args.concurrency)
                cpu = sum(server.cpu_times()[:2]) - before
                results[name].append((args.requests / seconds, 1e6 * cpu / args.requests))
    return results


def _report(results: dict[str, list], args: argparse.Namespace) -> None:
    print(f"{args.rounds} rounds x {args.requests} requests, {args.concurrency} concurrent, keep-alive")
    print(f"{'contender':<10}{'req/s median':>14}{'(min-max)':>18}{'server us/req':>15}{'(min-max)':>14}"
          f"{'x cached us':>13}")
    base = statistics.median(us for _, us in results["cached"])
    for name, rounds in results.items():
        rates, costs = [r for r, _ in rounds], [c for _, c in rounds]
        rate, cost = statistics.median(rates), statistics.median(costs)
        print(f"{name:<10}{rate:>14.0f}{f'({min(rates):.0f}-{max(rates):.0f})':>18}{cost:>15.1f}"
              f"{f'({min(costs):.0f}-{max(costs):.0f})':>14}{cost / base:>13.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return _serve()
    proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline())
        results = asyncio.run(_measure(port, psutil.Process(proc.pid), args))
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    _report(results, args)


if __name__ == "__main__":
    main()
