"""Service overhead at 1 Hz, side by side, against the floor of this stack: every contender idle and polled.

Contenders, all running at the same time for --seconds (default 120) after a warm-up, so machine noise
hits them alike: tracklab-sysmon with the C helper and with its Python twin (TRACKLAB_SYSMON_NATIVE=off),
the naive aiohttp + psutil service (naive_service.py), the floor (floor_service.py: an aiohttp app that
preads the same /proc files through kept descriptors once a second and answers one cached GET), and
prometheus-node-exporter when installed (5 collectors; and its defaults, scraped only). Each runs twice:
idle, and polled once a second by one client on a fixed schedule.

CPU is % of one core from the schedstat run time of every thread (ns, not 10 ms ticks), sampled every
second: mean, median and p99 of the 1 s samples; ratios are of means, to the floor and to the naive
service in the same mode. Memory: Rss, Pss and Anonymous from smaps_rollup at the window's end.
Writes out/bench_overhead.json. Debian: apt-get install prometheus-node-exporter for its rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import aiohttp
from proc_usage import CpuSeries, commit, memory_mib, summary, uptime

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "out"
NODE_EXPORTER_MINIMAL = ["cpu", "diskstats", "netdev", "meminfo", "loadavg"]
MODES = ("idle", "polled")


class Contender:
    def __init__(self, kind: str, mode: str, argv: list[str], *, url_path: str, env: dict[str, str] | None = None,
                 portfile: str | None = None, port: int | None = None) -> None:
        self.kind, self.mode, self.argv, self.url_path = kind, mode, argv, url_path
        self.portfile, self.port = portfile, port
        self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.series: CpuSeries | None = None

    @property
    def name(self) -> str:
        return f"{self.kind}, {self.mode}"

    @property
    def polled(self) -> bool:
        return self.mode == "polled"

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {' '.join(self.argv)}")
            if self.port is None and self.portfile and os.path.exists(self.portfile):
                with open(self.portfile) as handle:
                    self.port = json.load(handle)["port"]
            if self.port is not None:
                try:
                    urllib.request.urlopen(self.url, timeout=2).read()  # once, idle ones too: same start
                    return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not come up in {timeout:.0f} s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.url_path}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_all(tmp: str, only: set[str] | None, tree: tuple[str, str] | None = None) -> list[Contender]:
    sysmon = [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0"]
    if tree is not None:  # a generated big machine: only the two backends read it, so only they run
        sysmon += ["--proc-root", tree[0], "--sys-root", tree[1]]
        only = {"tracklab-sysmon"}
    python_apps = {
        "tracklab-sysmon (C helper)": (sysmon, {"TRACKLAB_SYSMON_NATIVE": "require"}),
        "tracklab-sysmon (Python twin)": (sysmon, {"TRACKLAB_SYSMON_NATIVE": "off"}),
        "naive aiohttp+psutil": ([sys.executable, str(HERE / "naive_service.py"), "--port", "0"], {}),
        "floor": ([sys.executable, str(HERE / "floor_service.py"), "--port", "0"], {}),
    }
    found = []
    for kind, (argv, env) in python_apps.items():
        if only and kind.split()[0] not in only:
            continue
        for mode in MODES:
            pf = os.path.join(tmp, f"{len(found)}.json")
            found.append(Contender(kind, mode, [*argv, "--portfile", pf], url_path="/api/system/metrics",
                                   env=env, portfile=pf))
    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if only and "node_exporter" not in only:
        return found
    if exporter is None:
        print("note: prometheus-node-exporter is missing, so its rows are left out "
              "(Debian: apt-get install prometheus-node-exporter)", file=sys.stderr)
        return found
    minimal = ["--collector.disable-defaults"] + [f"--collector.{c}" for c in NODE_EXPORTER_MINIMAL]
    for kind, flags, modes in (("node_exporter (5 collectors)", minimal, MODES),
                               ("node_exporter (defaults)", [], ("polled",))):
        for mode in modes:
            port = free_port()
            argv = [exporter, f"--web.listen-address=127.0.0.1:{port}", "--log.level=error", *flags]
            found.append(Contender(kind, mode, argv, url_path="/metrics", port=port))
    return found


async def run_window(contenders: list[Contender], seconds: float, measure: bool) -> None:
    """GET every polled contender once a second on a fixed schedule; with `measure`, sample every
    contender's CPU at each beat (after the polls, so each 1 s sample holds one poll and one tick)."""
    async with aiohttp.ClientSession() as session:
        if measure:
            for c in contenders:
                c.series = CpuSeries(c.proc.pid)
        start = time.monotonic()
        beat = 0
        while time.monotonic() - start < seconds:
            for c in contenders:
                if c.polled:
                    async with session.get(c.url) as response:
                        await response.read()
            beat += 1
            await asyncio.sleep(max(0.0, start + beat - time.monotonic()))
            if measure:
                for c in contenders:
                    c.series.sample()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--only", help="comma-separated first words of the contenders to run (tracklab-sysmon, "
                                       "naive, floor, node_exporter): for trying the script out")
    parser.add_argument("--tree", metavar="CPUS,DISKS",
                        help="serve a generated tree of this many CPUs and whole disks (bench_scaling's) instead "
                             "of this host: the C helper against its Python twin on a big machine")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    before = uptime()
    with tempfile.TemporaryDirectory() as tmp:
        tree = None
        if args.tree:
            from bench_scaling import write_tree  # the scaling bench's trees: cpufreq per CPU, 2 partitions per disk

            cpus, disks = (int(n) for n in args.tree.split(","))
            tree = write_tree(pathlib.Path(tmp, "tree"), cpus, disks)
        contenders = start_all(tmp, only, tree)
        try:
            for c in contenders:
                c.wait_ready()
            asyncio.run(run_window(contenders, args.warmup, measure=False))
            asyncio.run(run_window(contenders, args.seconds, measure=True))
            results = {c.name: result(c) for c in contenders}
        finally:
            for c in contenders:
                c.stop()
    report(results, args, before, uptime())


def result(c: Contender) -> dict:
    assert c.series is not None
    return {"kind": c.kind, "mode": c.mode, "window_percent": c.series.window_percent(),
            "seconds": c.series.seconds(), **summary(c.series.percents), "samples": c.series.percents,
            "memory_mib": memory_mib(c.proc.pid)}


def report(results: dict[str, dict], args: argparse.Namespace, before: str, after: str) -> None:
    served = f"a generated tree of {args.tree} CPUs,disks" if args.tree else "this host"
    print(f"service overhead, {args.seconds:.0f} s at 1 Hz after {args.warmup:.0f} s warm-up, {os.cpu_count()} CPUs, "
          f"serving {served}, commit {commit()}")
    print(f"uptime before: {before}\nuptime after:  {after}")
    print("CPU: % of one core, schedstat, 1 s samples; ratios of means to the floor and the naive service, same mode")
    head = (f"{'contender':44} {'mean':>6} {'median':>6} {'p99':>6} {'Rss':>6} {'Pss':>6} {'Anon':>6}"
            f" {'x floor':>7} {'x naive':>7}")
    print(head)
    for mode in MODES:
        floor = results.get(f"floor, {mode}", {}).get("mean")
        naive = results.get(f"naive aiohttp+psutil, {mode}", {}).get("mean")
        for name, r in results.items():
            if r["mode"] != mode:
                continue
            m = r["memory_mib"]
            ratios = "".join(f" {r['mean'] / base:7.2f}" if base else f" {'-':>7}" for base in (floor, naive))
            print(f"{name:44} {r['mean']:6.3f} {r['median']:6.3f} {r['p99']:6.3f} {m['rss']:6.1f} {m['pss']:6.1f}"
                  f" {m['anonymous']:6.1f}{ratios}")
    targets(results)
    OUT.mkdir(exist_ok=True)
    meta = {"commit": commit(), "uptime_before": before, "uptime_after": after, "seconds": args.seconds}
    (OUT / "bench_overhead.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))


def targets(results: dict[str, dict]) -> None:
    """Issue 12's targets, read off this run: met or missed, with the ratio."""
    def mean(name: str) -> float | None:
        return results.get(name, {}).get("mean")

    checks = (
        ("polled <= 1.5x floor", "tracklab-sysmon (C helper), polled", "floor, polled", 1.5),
        ("polled <= 0.5x naive", "tracklab-sysmon (C helper), polled", "naive aiohttp+psutil, polled", 0.5),
        ("idle <= 1.3x floor", "tracklab-sysmon (C helper), idle", "floor, idle", 1.3),
        ("C helper <= 0.7x Python twin, polled", "tracklab-sysmon (C helper), polled",
         "tracklab-sysmon (Python twin), polled", 0.7),
    )
    for label, ours, other, limit in checks:
        a, b = mean(ours), mean(other)
        if a is None or not b:
            continue
        print(f"target {label}: {a / b:.2f}x -> {'met' if a / b <= limit else 'missed'}")


if __name__ == "__main__":
    main()
