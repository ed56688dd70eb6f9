"""Service overhead at 1 Hz, side by side: tracklab-sysmon idle and polled, a naive aiohttp + psutil
service idle and polled, and prometheus-node-exporter (5 collectors, and defaults) scraped 1/s.

All contenders run at the same time for --seconds (default 120) after a warm-up, so machine noise
hits them all alike. CPU is % of one core from /proc/PID/stat (utime + stime, all threads) and,
finer, from the schedstat run time of the live threads; RSS from /proc/PID/status at the end.
Needs prometheus-node-exporter for its rows (Debian: apt-get install prometheus-node-exporter).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "out"
TICKS = os.sysconf("SC_CLK_TCK")
NODE_EXPORTER_MINIMAL = ["cpu", "diskstats", "netdev", "meminfo", "loadavg"]


class Contender:
    def __init__(self, name: str, argv: list[str], *, url_path: str, polled: bool, env=None,
                 portfile: str | None = None, port: int | None = None) -> None:
        self.name, self.argv, self.url_path, self.polled = name, argv, url_path, polled
        self.portfile, self.port = portfile, port
        self.proc = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.start_cpu = self.start_ns = self.start_at = 0.0

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {' '.join(self.argv)}")
            if self.port is None and self.portfile and os.path.exists(self.portfile):
                with open(self.portfile) as handle:
                    self.port = json.load(handle)["port"]
            if self.port is not None:
                try:
                    urllib.request.urlopen(self.url, timeout=2).read()
                    return
                except OSError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not come up in {timeout:.0f} s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.url_path}"

    def cpu_seconds(self) -> float:
        stat = pathlib.Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def run_ns(self) -> int:
        total = 0
        for task in pathlib.Path(f"/proc/{self.proc.pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):  # thread gone between listing and reading
                total += int((task / "schedstat").read_text().split()[0])
        return total

    def rss_mib(self) -> float:
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def mark(self) -> None:
        self.start_cpu, self.start_ns, self.start_at = self.cpu_seconds(), self.run_ns(), time.monotonic()

    def result(self) -> dict:
        elapsed = time.monotonic() - self.start_at
        return {
            "cpu_percent": 100 * (self.cpu_seconds() - self.start_cpu) / elapsed,
            "cpu_percent_schedstat": 100 * (self.run_ns() - self.start_ns) / 1e9 / elapsed,
            "rss_mib": self.rss_mib(),
            "seconds": elapsed,
        }

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


def start_all(tmp: str) -> list[Contender]:
    sysmon = [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0"]
    naive = [sys.executable, str(HERE / "naive_service.py"), "--port", "0"]
    found = []
    for polled in (False, True):
        label = "polled 1/s" if polled else "idle"
        for backend in (["cffi", "python"] if polled else ["cffi"]):
            pf = os.path.join(tmp, f"sysmon-{polled}-{backend}.json")
            found.append(Contender(f"tracklab-sysmon ({backend}) {label}", [*sysmon, "--portfile", pf],
                                   url_path="/api/system/metrics", polled=polled, portfile=pf,
                                   env={"TRACKLAB_SYSMON_NATIVE": "require" if backend == "cffi" else "off"}))
        pf = os.path.join(tmp, f"naive-{polled}.json")
        found.append(Contender(f"naive aiohttp+psutil {label}", [*naive, "--portfile", pf],
                               url_path="/api/system/metrics", polled=polled, portfile=pf))
    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if exporter is None:
        print("note: prometheus-node-exporter is missing, so its rows are left out "
              "(Debian: apt-get install prometheus-node-exporter)", file=sys.stderr)
        return found
    for label, flags in (("5 collectors", ["--collector.disable-defaults"]
                          + [f"--collector.{c}" for c in NODE_EXPORTER_MINIMAL]), ("defaults", [])):
        port = free_port()
        argv = [exporter, f"--web.listen-address=127.0.0.1:{port}", "--log.level=error", *flags]
        found.append(Contender(f"node_exporter {label} scraped 1/s", argv, url_path="/metrics",
                               polled=True, port=port))
    return found


async def poll(contenders: list[Contender], seconds: float) -> None:
    """GET every polled contender once a second, on a fixed schedule."""
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        beat = 0
        while time.monotonic() - start < seconds:
            for c in contenders:
                if c.polled:
                    async with session.get(c.url) as response:
                        await response.read()
            beat += 1
            await asyncio.sleep(max(0.0, start + beat - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        contenders = start_all(tmp)
        try:
            for c in contenders:
                c.wait_ready()
            asyncio.run(poll(contenders, args.warmup))
            for c in contenders:
                c.mark()
            asyncio.run(poll(contenders, args.seconds))
            results = {c.name: c.result() for c in contenders}
        finally:
            for c in contenders:
                c.stop()
    report(results, args)


def report(results: dict[str, dict], args) -> None:
    load = os.getloadavg()
    print(f"service overhead over {args.seconds:.0f} s at 1 Hz, {os.cpu_count()} CPUs, "
          f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    base = results.get("tracklab-sysmon (cffi) polled 1/s", {}).get("cpu_percent_schedstat")
    print(f"{'contender':40} {'CPU % (stat)':>12} {'CPU % (sched)':>13} {'RSS MiB':>8} {'x sysmon':>8}")
    for name, r in results.items():
        ratio = f"{r['cpu_percent_schedstat'] / base:8.1f}" if base else "       -"
        print(f"{name:40} {r['cpu_percent']:12.3f} {r['cpu_percent_schedstat']:13.3f} {r['rss_mib']:8.1f} {ratio}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_overhead.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
