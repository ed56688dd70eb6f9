"""REST throughput and latency of /api/system/metrics under wrk (concurrency 10), side by side:
tracklab-sysmon (C helper and Python twin) and the naive aiohttp + psutil service, all running,
wrk aimed at one at a time in rotating order so machine noise spreads over all of them.

Also reads tracklab-sysmon's own per-collector tick durations from /api/health while idle and
while wrk runs, to show whether readers make a tick dearer. Needs wrk (Debian: apt-get install wrk).
Usage: bench_rest_wrk.py [--seconds 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
OUT = HERE.parent / "out"
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def start(name: str, argv: list[str], portfile: str, env: dict) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([*argv, "--portfile", portfile],
                            env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        if os.path.exists(portfile):
            with open(portfile) as handle:
                port = json.load(handle)["port"]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/system/metrics", timeout=2).read()
                return proc, port
            except OSError:
                pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{name} did not come up")


def run_wrk(wrk: str, url: str, seconds: float) -> dict:
    out = subprocess.run([wrk, "-t2", "-c10", f"-d{seconds:.0f}s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {p: float(v) * UNITS[u] for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": latency.get("50"), "p99_ms": latency.get("99"),
            "non_2xx": int(errors.group(1)) if errors else 0}


def tick_ms(port: int) -> float | None:
    """Sum of the collectors' last durations, as the service itself reports them."""
    try:
        health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5))
    except OSError:
        return None
    return sum(c.get("lastDurationMs") or 0.0 for c in health.get("collectors", {}).values())


def sample_ticks(port: int, seconds: float, into: list[float]) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = tick_ms(port)
        if value is not None:
            into.append(value)
        time.sleep(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    wrk = shutil.which("wrk")
    if wrk is None:  # say so and let `make bench` go on with the other benchmarks
        print("bench_rest_wrk: skipped, wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return
    sysmon = [sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0"]
    contenders = {
        "tracklab-sysmon (cffi)": (sysmon, {"TRACKLAB_SYSMON_NATIVE": "require"}),
        "tracklab-sysmon (python)": (sysmon, {"TRACKLAB_SYSMON_NATIVE": "off"}),
        "naive aiohttp+psutil": ([sys.executable, str(HERE / "naive_service.py"), "--port", "0"], {}),
    }
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        running = {}
        try:
            for name, (argv, env) in contenders.items():  # all up at once; wrk visits them in turn
                running[name] = start(name, argv, os.path.join(tmp, f"{len(running)}.json"), env)
            for name, (_, port) in running.items():
                idle: list[float] = []
                sample_ticks(port, 3, idle)
                results[name] = {"runs": [], "tick_ms_idle": idle, "tick_ms_loaded": []}
            names = list(running)
            for round_no in range(args.rounds):
                for name in names[round_no % len(names):] + names[: round_no % len(names)]:
                    port = running[name][1]
                    sampler = threading.Thread(target=sample_ticks,
                                               args=(port, args.seconds - 1, results[name]["tick_ms_loaded"]))
                    sampler.start()
                    results[name]["runs"].append(
                        run_wrk(wrk, f"http://127.0.0.1:{port}/api/system/metrics", args.seconds))
                    sampler.join()
        finally:
            for proc, _ in running.values():
                proc.terminate()
                proc.wait(10)
    report(results, args)


def report(results: dict[str, dict], args) -> None:
    print(f"/api/system/metrics under wrk -t2 -c10, {args.rounds} x {args.seconds:.0f} s, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"{'contender':28} {'req/s median':>12} {'min-max':>15} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'tick ms idle':>12} {'tick ms loaded':>14}")
    for name, r in results.items():
        rps = [run["rps"] for run in r["runs"]]
        p50 = statistics.median(run["p50_ms"] for run in r["runs"])
        p99 = statistics.median(run["p99_ms"] for run in r["runs"])
        idle = f"{statistics.median(r['tick_ms_idle']):.3f}" if r["tick_ms_idle"] else "-"
        loaded = f"{statistics.median(r['tick_ms_loaded']):.3f}" if r["tick_ms_loaded"] else "-"
        print(f"{name:28} {statistics.median(rps):12.0f} {min(rps):7.0f}-{max(rps):<7.0f} {p50:7.2f} {p99:7.2f} "
              f"{idle:>12} {loaded:>14}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_rest_wrk.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
