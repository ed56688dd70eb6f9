"""The naive contender: aiohttp + psutil, sampling once a second, JSON built on every request.

Usage: naive_service.py --port N [--portfile F]. Binds 127.0.0.1 only. This is what a first
version of the service would look like, and what bench_overhead.py and bench_rest.py compare with.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time

import psutil
from aiohttp import web

latest: dict = {}


def sample() -> dict:
    """One psutil snapshot with the seed's sections (rates left out: only the cost matters here)."""
    memory, swap = psutil.virtual_memory(), psutil.swap_memory()
    disk = psutil.disk_usage("/")
    io = psutil.disk_io_counters()
    net = psutil.net_io_counters()
    return {
        "timestamp": int(time.time() * 1000),
        "cpu": {"overall": psutil.cpu_percent(), "cores": psutil.cpu_percent(percpu=True),
                "loadAverage": list(os.getloadavg()), "processes": len(psutil.pids())},
        "memory": {"usage": memory.percent, "used": memory.used, "total": memory.total,
                   "available": memory.available,
                   "swap": {"used": swap.used, "total": swap.total, "percentage": swap.percent}},
        "disk": {"usage": disk.percent, "used": disk.used, "total": disk.total,
                 "ioRead": io.read_bytes if io else None, "ioWrite": io.write_bytes if io else None},
        "network": {"bytesIn": net.bytes_recv, "bytesOut": net.bytes_sent,
                    "packetsIn": net.packets_recv, "packetsOut": net.packets_sent},
        "accelerators": [],
    }


async def sampling(app: web.Application):
    async def loop() -> None:
        while True:
            latest.update(sample())
            await asyncio.sleep(1.0)

    task = asyncio.create_task(loop())
    yield
    task.cancel()


async def metrics(request: web.Request) -> web.Response:
    return web.json_response([latest])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--portfile")
    args = parser.parse_args()
    app = web.Application()
    app.router.add_get("/api/system/metrics", metrics)
    app.cleanup_ctx.append(sampling)

    async def run() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", args.port)
        await site.start()
        port = runner.addresses[0][1]
        if args.portfile:
            with open(args.portfile + ".tmp", "w") as handle:
                json.dump({"port": port, "pid": os.getpid()}, handle)
            os.replace(args.portfile + ".tmp", args.portfile)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
