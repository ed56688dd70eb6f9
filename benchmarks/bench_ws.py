"""WebSocket fan-out: service CPU and frame latency with 0/1/100/1,000 subscribers at 1 Hz, plus fan-out contenders.

Part 1 runs `tracklab-sysmon serve` as its own process at 1 Hz and connects N real aiohttp WebSocket
clients from two client processes (each decodes every frame with orjson; aiohttp answers the server's
pings). For each N it samples the service's CPU (schedstat run time of every thread, ns) once a second
over a window of whole heartbeat periods (20 s; default 60 s), so every client's ping round is in it,
and records, for every metrics frame, receive time minus the snapshot's `timestamp` (ms, wall clock;
both on this host). CPU: window mean, 1 s median and p99; latency: mean, p50, p99. Marginal cost per
subscriber per frame = (window CPU at N - window CPU at 0) / N, per 1 Hz frame.

Part 2 times one fan-out of a real snapshot to 1,000 connected sockets inside one process, three ways:
`shared-preframed` (this service: frame built once, the same bytes written to every transport),
`shared-send_str` (payload encoded once, aiohttp's send_str per client) and `naive-per-client`
(snapshot dict encoded per client, then send_str). Part 3 holds 200 never-reading subscribers on a
20 Hz service and watches its RSS until they are dropped (stall limit 10 s), and the latency of one
reading subscriber before and beside them (parts 2 and 3 use a minimal raw-socket RFC 6455 client, which
can stop reading). Run: `python benchmarks/bench_ws.py [--seconds S]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import aiohttp
import orjson
from proc_usage import CpuSeries, commit, memory_mib, summary, uptime

from tracklab_sysmon.server.ws import WsSettings

WS_PATH = "/ws/system-metrics"
HEARTBEAT = WsSettings().heartbeat  # the server pings every client this often: a window holds whole periods
LEVELS = (0, 1, 100, 1000)
ESTABLISHED = 1  # tcpi_state in struct tcp_info


class RawSubscriber(asyncio.Protocol):
    """The cheapest honest client: handshake, frame boundaries, pong; latency stamped on arrival."""

    def __init__(self, host: str, port: int, latencies: list[float], *, stall: bool = False) -> None:
        self.host, self.port, self.latencies, self.stall = host, port, latencies, stall
        self.ready = asyncio.get_running_loop().create_future()
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {WS_PATH} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now_ms = time.time() * 1000
        self.buffer += data
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.buffer[:end]:
                self.ready.set_exception(RuntimeError(bytes(self.buffer[:end]).decode(errors="replace")))
                return
            del self.buffer[:end + 4]
            self.upgraded = True
            self.ready.set_result(None)
            if self.stall:  # from now on read nothing: the kernel buffers fill, then the server's
                self.transport.pause_reading()
        self._frames(now_ms)

    def _frames(self, now_ms: float) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            size, offset = buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, offset = struct.unpack_from("!H", buf, 2)[0], 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, offset = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < offset + size:
                return
            opcode = buf[0] & 0x0F
            if opcode == 0x9:  # ping: answer with an empty masked pong, as every client must
                self.transport.write(b"\x8a\x80" + os.urandom(4))
            elif opcode == 0x1 and buf.startswith(b'{"type":"metrics"', offset):
                at = buf.find(b'"timestamp":', offset) + 12
                stamp = int(bytes(buf[at:buf.index(b",", at)]))
                self.latencies.append(now_ms - stamp)
            del buf[:offset + size]


def _raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _start_service(folder: str, interval: float = 1.0) -> tuple[subprocess.Popen, str, int]:
    portfile = os.path.join(folder, "port.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0", "--portfile", portfile,
         "--interval", str(interval), "--max-ws-clients", "5000"],
        preexec_fn=_raise_fd_limit, stdout=subprocess.DEVNULL,
    )
    end = time.monotonic() + 30
    while not os.path.exists(portfile):
        if proc.poll() is not None or time.monotonic() > end:
            raise SystemExit("bench_ws: the service did not start")
        time.sleep(0.05)
    with open(portfile) as handle:
        info = json.load(handle)
    return proc, info["host"], info["port"]


CLIENT_PROCESSES = 2  # readers of 100+ subscribers are split, so one Python loop is not the bottleneck


def _client_worker(host: str, port: int, count: int, seconds: float, pipe) -> None:
    """In its own process: connect `count` aiohttp clients, report ready, then latencies after `seconds`."""
    _raise_fd_limit()

    async def read(ws: aiohttp.ClientWebSocketResponse, latencies: list[float]) -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            now_ms = time.time() * 1000
            frame = orjson.loads(message.data)
            if frame["type"] == "metrics":
                latencies.append(now_ms - frame["data"]["timestamp"])

    async def run() -> list[float]:
        latencies: list[float] = []
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            sockets = [await session.ws_connect(f"http://{host}:{port}{WS_PATH}") for _ in range(count)]
            readers = [asyncio.create_task(read(ws, latencies)) for ws in sockets]
            pipe.send("ready")
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # "go": all connected, settled
            latencies.clear()
            await asyncio.sleep(seconds)
            result = list(latencies)
            for task in readers:
                task.cancel()
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return result

    pipe.send(asyncio.run(run()))


async def _measure_level(pid: int, host: str, port: int, count: int, seconds: int) -> dict:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    shares = [count // CLIENT_PROCESSES] * CLIENT_PROCESSES if count >= 100 else [count] if count else []
    workers = []
    for share in shares:
        parent, child = context.Pipe()
        proc = context.Process(target=_client_worker, args=(host, port, share, seconds + 0.5, child))
        proc.start()
        workers.append((proc, parent))
    loop = asyncio.get_running_loop()
    for _proc, pipe in workers:
        assert await loop.run_in_executor(None, pipe.recv) == "ready"
    await asyncio.sleep(2.0)  # settle: connection set-up work is not the steady state
    for _proc, pipe in workers:
        pipe.send("go")
    series = CpuSeries(pid)
    started = time.monotonic()
    for beat in range(1, seconds + 1):
        await asyncio.sleep(max(0.0, started + beat - time.monotonic()))
        series.sample()
    memory = memory_mib(pid)
    latencies: list[float] = []
    for proc, pipe in workers:
        latencies += await loop.run_in_executor(None, pipe.recv)
        proc.join(10)
    await asyncio.sleep(1.0)
    return {"n": count, "cpu": summary(series.percents), "window": series.window_percent(),
            "seconds": series.seconds(), "lat": summary(latencies), "frames": len(latencies), "memory": memory}


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


async def _part1(seconds: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as folder:
        proc, host, port = _start_service(folder)
        try:
            await asyncio.sleep(1.5)
            return [await _measure_level(proc.pid, host, port, n, seconds) for n in LEVELS]
        finally:
            proc.terminate()
            proc.wait(10)


def _print_part1(results: list[dict], seconds: int) -> None:
    base = results[0]["window"]
    print(f"\nPart 1: service process at 1 Hz, N aiohttp clients, {seconds} s windows ({seconds / HEARTBEAT:.0f} "
          f"heartbeat rounds); CPU % of one core (schedstat): window mean, 1 s median and p99")
    print(f"{'N':>6} {'CPU mean':>9} {'median':>7} {'p99':>7} {'vs N=0':>7} {'lat mean':>9} {'p50':>8} {'p99':>8}"
          f" {'frames':>7} {'Rss MiB':>8} {'us/sub/frame':>13}")
    for r in results:
        cpu, lat = r["cpu"], r["lat"]
        # below ~100 subscribers the difference from N=0 is inside the noise: no per-subscriber figure
        marginal = (r["window"] - base) / 100 * 1e6 / r["n"] if r["n"] >= 100 else float("nan")
        print(f"{r['n']:>6} {r['window']:>9.3f} {cpu['median']:>7.3f} {cpu['p99']:>7.3f} {r['window'] / base:>6.2f}x"
              f" {lat['mean']:>7.1f}ms {lat['median']:>6.1f}ms {lat['p99']:>6.1f}ms {r['frames']:>7}"
              f" {r['memory']['rss']:>8.1f} {marginal:>13.2f}")


async def _part2(count: int, repeats: int) -> dict[str, list[float]]:
    from aiohttp import web

    from tracklab_sysmon import wire
    from tracklab_sysmon.config import ServiceConfig
    from tracklab_sysmon.server import create_app, keys
    from tracklab_sysmon.server.ws import HUB

    app = create_app(ServiceConfig(interval=3600.0, max_ws_clients=count + 10))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    subs = [(await loop.create_connection(lambda: RawSubscriber("127.0.0.1", port, latencies), "127.0.0.1", port))[1]
            for _ in range(count)]
    await asyncio.gather(*(s.ready for s in subs))
    hub = app[HUB]
    while len(hub.subscribers) < count:
        await asyncio.sleep(0.05)
    sampler = app[keys.SAMPLER]
    snapshot, encoded = sampler.latest, sampler.latest_bytes
    node = snapshot.node_id
    sockets = [s.ws for s in hub.subscribers]
    shared_text = (b'{"type":"metrics","nodeId":"' + node.encode() + b'","data":' + encoded + b"}").decode()

    async def preframed() -> None:
        hub.publish(node, encoded)

    async def shared_send_str() -> None:
        await asyncio.gather(*(ws.send_str(shared_text) for ws in sockets))

    async def naive() -> None:
        await asyncio.gather(*(
            ws.send_str(orjson.dumps({"type": "metrics", "nodeId": node,
                                      "data": wire.snapshot_to_wire(snapshot)}).decode())
            for ws in sockets
        ))

    contenders = {"shared-preframed": preframed, "shared-send_str": shared_send_str, "naive-per-client": naive}
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):  # interleaved, so load drifts hit every contender alike
        for name, fan_out in contenders.items():
            started = time.perf_counter()
            await fan_out()
            times[name].append(time.perf_counter() - started)
            await asyncio.sleep(0.05)  # let the clients read everything before the next round
    for sub in subs:
        sub.transport.close()
    await runner.cleanup()
    return times


def _print_part2(times: dict[str, list[float]], count: int) -> None:
    print(f"\nPart 2: one fan-out of a real snapshot to {count} sockets, in-process (wall time of the send loop)")
    print(f"{'contender':>18} {'mean ms':>8} {'median':>7} {'p99':>7} {'us/sub':>7} {'vs preframed':>13}")
    base = statistics.median(times["shared-preframed"])
    for name, values in times.items():
        t = summary([v * 1e3 for v in values])
        print(f"{name:>18} {t['mean']:>8.2f} {t['median']:>7.2f} {t['p99']:>7.2f} {t['median'] * 1e3 / count:>7.2f}"
              f" {t['median'] / 1e3 / base:>12.1f}x")


async def _part3(count: int, seconds: int) -> dict:
    """Never-reading subscribers on a 20 Hz service: RSS over time and when they are dropped."""
    with tempfile.TemporaryDirectory() as folder:
        proc, host, port = _start_service(folder, interval=0.05)
        try:
            await asyncio.sleep(1.5)
            loop = asyncio.get_running_loop()
            reader: list[float] = []  # one subscriber that reads everything, before and beside the stalled
            await loop.create_connection(lambda: RawSubscriber(host, port, reader), host, port)
            await asyncio.sleep(5.0)
            alone = list(reader)
            before = _rss(proc.pid)
            subs = []
            for _ in range(count):
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await loop.sock_connect(sock, (host, port))
                _t, sub = await loop.create_connection(lambda: RawSubscriber(host, port, [], stall=True), sock=sock)
                subs.append(sub)
            await asyncio.gather(*(s.ready for s in subs))
            connected, peak, dropped_at = _rss(proc.pid), 0, None
            mark = len(reader)
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                await asyncio.sleep(0.5)
                peak = max(peak, _rss(proc.pid))
                if dropped_at is None and all(_closed(s) for s in subs):
                    dropped_at = time.monotonic() - started
                    beside = reader[mark:]  # the reader's latency while they were connected
            after = _rss(proc.pid)
            dropped = sum(_closed(s) for s in subs)
            for sub in subs:
                sub.transport.close()
            if dropped_at is None:
                beside = reader[mark:]
            return {"n": count, "before": before, "connected": connected, "peak": peak, "after": after,
                    "dropped": dropped, "dropped_at": dropped_at,
                    "alone": sorted(alone), "beside": sorted(beside)}
        finally:
            proc.terminate()
            proc.wait(10)


def _closed(sub: RawSubscriber) -> bool:
    """Whether the server ended this connection; a paused reader never sees the reset, its kernel does."""
    sock = sub.transport.get_extra_info("socket")
    return sock is None or sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != ESTABLISHED


def _print_part3(r: dict, seconds: int) -> None:
    mib = 2**20
    print(f"\nPart 3: {r['n']} never-reading subscribers (4 KiB receive buffer) on a 20 Hz service, {seconds} s")
    print(f"  service RSS: {r['before'] / mib:.1f} MiB before, {r['connected'] / mib:.1f} MiB connected,"
          f" {r['peak'] / mib:.1f} MiB peak, {r['after'] / mib:.1f} MiB at the end")
    print(f"  peak growth per stalled subscriber: {(r['peak'] - r['before']) / r['n'] / 1024:.1f} KiB"
          f" (user space; kernel send buffer capped by SO_SNDBUF)")
    when = f"all dropped after {r['dropped_at']:.1f} s" if r["dropped_at"] is not None else "not all dropped"
    print(f"  dropped by the server: {r['dropped']} of {r['n']} ({when})")
    for label, lat in (("alone", r["alone"]), (f"beside {r['n']} stalled", r["beside"])):
        t = summary(lat)
        print(f"  a reading subscriber, {label}: latency mean {t['mean']:.1f} ms, p50 {t['median']:.1f} ms,"
              f" p99 {t['p99']:.1f} ms,"
              f" {len(lat)} frames")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60,
                        help=f"measured seconds per subscriber count, rounded up to whole {HEARTBEAT:.0f} s heartbeat "
                             "periods so that every client's ping round is inside the window")
    parser.add_argument("--repeats", type=int, default=30, help="fan-outs per contender in part 2")
    parser.add_argument("--stall-seconds", type=int, default=40, help="how long part 3 watches stalled peers")
    args = parser.parse_args()
    seconds = int(math.ceil(args.seconds / HEARTBEAT) * HEARTBEAT)
    _raise_fd_limit()
    print(f"bench_ws: {os.cpu_count()} CPUs, python {sys.version.split()[0]}, {seconds} s per level, commit {commit()}")
    print(f"uptime before: {uptime()}")
    _print_part1(asyncio.run(_part1(seconds)), seconds)
    print(f"uptime: {uptime()}")
    _print_part2(asyncio.run(_part2(1000, args.repeats)), 1000)
    _print_part3(asyncio.run(_part3(200, args.stall_seconds)), args.stall_seconds)
    print(f"uptime after: {uptime()}")


if __name__ == "__main__":
    main()
