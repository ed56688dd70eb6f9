"""Memory per held HTTP connection: half-sent heads (slowloris) and idle kept-alive ones, by RSS and tracemalloc.

A child process serves the service's app (`create_app`, default config, this host's /proc) through its own
`GuardedRunner` (the connection path of `tracklab-sysmon serve`) on loopback; this process opens N connections and
either sends half a request head (`half-head`) or asks `/api/health` once and reads the answer (`kept-alive`),
then asks the child, once it counts N open connections, for its RSS (`/proc/self/statm`) and, in a second
child started with tracemalloc, for the bytes Python has allocated. Per connection = (with N held - before any) / N.
Run:
`python benchmarks/bench_held_connections.py [--connections N]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import subprocess
import sys
import textwrap
import time

CHILD = textwrap.dedent("""
    import asyncio, gc, json, os, resource, sys, tracemalloc
    from aiohttp import web
    from tracklab_sysmon.config import ServiceConfig
    from tracklab_sysmon.server.app import create_app
    from tracklab_sysmon.server.connections import ConnectionLimits, GuardedRunner

    traced = sys.argv[1] == "traced"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    def rss():
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    async def main():
        app = create_app(ServiceConfig(host="127.0.0.1", port=0))
        runner = GuardedRunner(app, limits=ConnectionLimits(max_connections=100000, header_timeout=600),
                               handle_signals=False, access_log=None, keepalive_timeout=600)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        gc.freeze()
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        if traced:
            tracemalloc.start()
        print(runner.addresses[0][1], flush=True)
        while line := await reader.readline():
            wanted = int(line)
            while runner.server.open_connections != wanted:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # let the last connections' callbacks and tasks settle
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] if traced else 0
            print(json.dumps({"rss": rss(), "traced": used}), flush=True)
        await runner.cleanup()

    asyncio.run(main())
""")

HALF_HEAD = b"GET /api/system/metrics HTTP/1.1\r\nHost: 127."
REQUEST = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _hold(port: int, count: int, kept_alive: bool) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        if kept_alive:
            sock.sendall(REQUEST)
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.endswith(b"}"):
                answer += sock.recv(4096)
        else:
            sock.sendall(HALF_HEAD)
        held.append(sock)
    return held


def measure(kind: str, count: int, traced: bool) -> dict[str, float]:
    """Bytes of RSS or traced Python memory per held connection of `kind` in a fresh child."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, "traced" if traced else "plain"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        port = int(child.stdout.readline())

        def sample(open_now: int) -> dict[str, int]:
            child.stdin.write(f"{open_now}\n")
            child.stdin.flush()
            return json.loads(child.stdout.readline())

        warm = _hold(port, 50, kept_alive=True)  # the first requests import and allocate what later ones reuse
        for sock in warm:
            sock.close()
        before = sample(0)
        held = _hold(port, count, kept_alive=kind == "kept-alive")
        after = sample(count)
        for sock in held:
            sock.close()
        key = "traced" if traced else "rss"
        return {"before": before[key], "after": after[key], "each": (after[key] - before[key]) / count}
    finally:
        child.stdin.close()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--kind", choices=("half-head", "kept-alive"), action="append")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"| held connections ({args.connections}) | RSS before MiB | RSS with them MiB | RSS per connection"
          " | tracemalloc per connection |")
    print("|---|---|---|---|---|")
    for kind in args.kind or ("half-head", "kept-alive"):
        time.sleep(0.5)
        rss = measure(kind, args.connections, traced=False)
        traced = measure(kind, args.connections, traced=True)
        print(f"| {kind} | {rss['before'] / 2**20:.1f} | {rss['after'] / 2**20:.1f} | {rss['each'] / 1024:.2f} KiB"
              f" | {traced['each'] / 1024:.2f} KiB |")


if __name__ == "__main__":
    main()
