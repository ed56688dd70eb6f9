"""The service's memory over time and what it imports: smaps_rollup of live services, -X importtime of each.

Contenders, all at once for --minutes (default 10), each `tracklab-sysmon serve` at 1 Hz started with
`python -X importtime`: polled (GET /api/system/metrics once a second), polled + scraped (also GET
/metrics every 15 s, as a Prometheus server would: prometheus-client loads on the first scrape), and the
same two under MALLOC_ARENA_MAX=2 (glibc: at most two malloc arenas, instead of one per thread that
allocates). Every minute: Rss, Pss and Anonymous from /proc/PID/smaps_rollup, and the thread count.
At the end, per contender: top-level packages imported and the cumulative import time of its main module
(from the -X importtime log), and the GET /api/system/processes route exercised once a minute so that
its worker threads exist. Writes out/bench_memory.json.

`--startup N [--src DIR]`: instead, start the service N times one after another, each alone (so imports
are not slowed by the others), and report its import time and memory 8 s after start; --src puts another
checkout's `src` first on PYTHONPATH (an older commit, for a before/after figure).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import aiohttp
from proc_usage import commit, memory_mib, uptime

OUT = pathlib.Path(__file__).resolve().parent.parent / "out"
SCRAPE_EVERY = 15


class Service:
    def __init__(self, name: str, folder: str, *, scraped: bool = False, env: dict[str, str] | None = None) -> None:
        self.name, self.scraped = name, scraped
        self.portfile = os.path.join(folder, f"{len(name)}-{time.monotonic_ns()}.json")
        self.log = os.path.join(folder, f"{time.monotonic_ns()}.log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-X", "importtime", "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0",
                 "--portfile", self.portfile], env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=log)
        self.rows: list[dict] = []

    def url(self) -> str:
        deadline = time.monotonic() + 60
        while not os.path.exists(self.portfile):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.1)
        with open(self.portfile) as handle:
            return str(json.load(handle)["url"])

    def record(self, minute: float) -> None:
        threads = len(os.listdir(f"/proc/{self.proc.pid}/task"))
        self.rows.append({"minute": minute, "threads": threads, **memory_mib(self.proc.pid)})

    def imports(self) -> dict:
        """Top-level packages in the -X importtime log of the serving image, and the time of all imports of
        both images (the sum of the outermost ones' cumulative times: start-up and lazy imports alike).
        `serve` parses its flags in one image and re-executes itself to serve: each image's log starts
        with the header line, so the packages are those after the last header."""
        packages, total_us = set(), 0
        with open(self.log, errors="replace") as handle:
            for line in handle:
                if line.rstrip().endswith("imported package"):
                    packages = set()  # a new image: what the one before loaded is gone
                    continue
                if not line.startswith("import time:"):
                    continue
                _self_us, cumulative, raw = line.rstrip("\n").split("|")
                name = raw.strip()
                packages.add(name.split(".")[0])
                if raw == " " + name:  # no indentation: imported by our code, not by another import
                    total_us += int(cumulative)
        return {"packages": sorted(packages), "import_ms": total_us / 1000}


async def drive(services: list[Service], minutes: float) -> None:
    urls = [s.url() for s in services]
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        beat = 0
        while beat <= minutes * 60:
            for service, url in zip(services, urls, strict=True):
                async with session.get(url + "/api/system/metrics") as response:
                    await response.read()
                if service.scraped and beat % SCRAPE_EVERY == 0:
                    async with session.get(url + "/metrics") as response:
                        await response.read()
                if beat % 60 == 30:  # the process list: its worker threads (and their malloc arenas)
                    async with session.get(url + "/api/system/processes") as response:
                        await response.read()
            if beat % 60 == 0:
                for service in services:
                    service.record(beat / 60)
            beat += 1
            await asyncio.sleep(max(0.0, start + beat - time.monotonic()))


def startup(runs: int, src: str | None) -> None:
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))} if src else {}
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(runs):
            service = Service("alone", folder, env=env)
            try:
                service.url()
                time.sleep(8.0)
                service.record(0)
            finally:
                service.proc.terminate()
                service.proc.wait(10)
            rows.append({**service.rows[0], **service.imports()})
    print(f"service start-up, {runs} runs one at a time, {'src ' + src if src else 'this checkout'}, commit {commit()}")
    print(f"uptime: {uptime()}")
    for row in rows:
        optional = [p for p in row["packages"] if p in ("click", "rich", "psutil", "pynvml", "prometheus_client")]
        print(f"imports {row['import_ms']:6.0f} ms, {len(row['packages'])} top-level packages, optional {optional};"
              f" Rss {row['rss']:.1f} Pss {row['pss']:.1f} Anon {row['anonymous']:.1f} MiB, {row['threads']} threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--startup", type=int, help="start-up runs, one at a time (see the module docstring)")
    parser.add_argument("--src", help="with --startup: another checkout's src folder, first on PYTHONPATH")
    args = parser.parse_args()
    if args.startup:
        startup(args.startup, args.src)
        return
    before = uptime()
    with tempfile.TemporaryDirectory() as folder:
        services = [
            Service("polled", folder, scraped=False, env={}),
            Service("polled + scraped", folder, scraped=True, env={}),
            Service("polled, MALLOC_ARENA_MAX=2", folder, scraped=False, env={"MALLOC_ARENA_MAX": "2"}),
            Service("polled + scraped, MALLOC_ARENA_MAX=2", folder, scraped=True, env={"MALLOC_ARENA_MAX": "2"}),
        ]
        try:
            asyncio.run(drive(services, args.minutes))
            imports = {s.name: s.imports() for s in services}
        finally:
            for s in services:
                s.proc.terminate()
                s.proc.wait(10)
    print(f"service memory over {args.minutes:.0f} min at 1 Hz, commit {commit()}")
    print(f"uptime before: {before}\nuptime after:  {uptime()}")
    print(f"{'contender':40} {'minute':>6} {'threads':>7} {'Rss':>6} {'Pss':>6} {'Anon':>6}  (MiB)")
    for s in services:
        for row in s.rows:
            if row["minute"] in (0, 1, 5) or row is s.rows[-1]:
                print(f"{s.name:40} {row['minute']:6.0f} {row['threads']:7} {row['rss']:6.1f} {row['pss']:6.1f}"
                      f" {row['anonymous']:6.1f}")
    for name, found in imports.items():
        print(f"{name}: imports {found['import_ms']:.0f} ms in all; top-level packages "
              f"{len(found['packages'])}, of them optional: "
              f"{[p for p in found['packages'] if p in ('click', 'rich', 'psutil', 'pynvml', 'prometheus_client')]}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_memory.json").write_text(json.dumps(
        {"meta": {"commit": commit(), "uptime_before": before}, "rows": {s.name: s.rows for s in services},
         "imports": imports}, indent=1))


if __name__ == "__main__":
    main()
