"""The floor contender: the least a 1 Hz aiohttp metrics service can do, for bench_overhead.py.

Usage: floor_service.py --port N [--portfile F]. Binds 127.0.0.1 only. Once a second it preads the
six /proc files the service's hot path reads (stat, meminfo, loadavg, diskstats, net/dev,
net/snmp) through descriptors kept open, parses nothing, and keeps their bytes; GET
/api/system/metrics answers those cached bytes. It does not list /proc (the service's process
count), decode anything or keep history: every cost above this one is the service's own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time

from aiohttp import web

FILES = ("stat", "meminfo", "loadavg", "diskstats", "net/dev", "net/snmp")
CHUNK = 65536


class Reads:
    """The kept descriptors and the bytes of the last read."""

    def __init__(self, proc_root: str) -> None:
        self.fds = [os.open(os.path.join(proc_root, name), os.O_RDONLY | os.O_CLOEXEC) for name in FILES]
        self.body = b""

    def read(self) -> None:
        parts = []
        for fd in self.fds:
            offset = 0
            while chunk := os.pread(fd, CHUNK, offset):  # a short read is not the end of a seq_file
                parts.append(chunk)
                offset += len(chunk)
        self.body = b"".join(parts)


async def ticking(app: web.Application):
    reads = app["reads"]

    async def loop() -> None:
        start = time.monotonic()
        beat = 0
        while True:
            reads.read()
            beat += 1
            await asyncio.sleep(max(0.0, start + beat - time.monotonic()))

    task = asyncio.create_task(loop())
    yield
    task.cancel()


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app["reads"].body, content_type="text/plain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--portfile")
    parser.add_argument("--proc-root", default="/proc")
    args = parser.parse_args()
    app = web.Application()
    app["reads"] = Reads(args.proc_root)
    app.router.add_get("/api/system/metrics", metrics)
    app.cleanup_ctx.append(ticking)

    async def run() -> None:
        runner = web.AppRunner(app, access_log=None)
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
