"""Per-tick cost of the NVIDIA collector at 1 and 8 GPUs through the stand-in libnvidia-ml.so.

Contenders, interleaved in one child process per GPU count (the stub is found through
LD_LIBRARY_PATH, exactly as pynvml finds the real library):
  collector   NvidiaCollector.collect, clock advancing 1 s per tick (slow tier every 5th tick)
  slow-tick   NvidiaCollector.collect on a tick where the slow tier is due (PCIe, ECC, processes, MIG)
  naive       every field of every GPU through pynvml each tick, handles and names re-read,
              no caching (what a simple poller does)
Each contender's cost per tick is the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID, ns; the
machine's other load does not count) and its wall time. ROUNDS is a multiple of 5, so the `collector`
rows hold every fifth, slow-tier tick: their mean is the real average per tick, the median hides the
slow tick and the p99 shows it. Prints mean, median and p99 (CPU) and the mean wall time, with ratios of
means to `collector`. Run: .venv/bin/python benchmarks/bench_gpu.py
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from proc_usage import commit, summary, uptime

ROOT = pathlib.Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("BENCH_GPU_ROUNDS", "2000")) // 5 * 5  # whole slow-tier periods


def field_calls(pynvml, h) -> dict:
    """Every field a simple poller reads for one GPU, each as a call; a function so each lambda keeps its own `h`."""
    return {
        "name": lambda: pynvml.nvmlDeviceGetName(h),
        "uuid": lambda: pynvml.nvmlDeviceGetUUID(h),
        "pci": lambda: pynvml.nvmlDeviceGetPciInfo(h).busId,
        "util": lambda: pynvml.nvmlDeviceGetUtilizationRates(h).gpu,
        "mem": lambda: pynvml.nvmlDeviceGetMemoryInfo(h).used,
        "temp": lambda: pynvml.nvmlDeviceGetTemperature(h, 0),
        "power": lambda: pynvml.nvmlDeviceGetPowerUsage(h),
        "limit": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(h),
        "energy": lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h),
        "fan": lambda: pynvml.nvmlDeviceGetFanSpeed(h),
        "sm": lambda: pynvml.nvmlDeviceGetClockInfo(h, 1),
        "memclk": lambda: pynvml.nvmlDeviceGetClockInfo(h, 2),
        "enc": lambda: pynvml.nvmlDeviceGetEncoderUtilization(h),
        "dec": lambda: pynvml.nvmlDeviceGetDecoderUtilization(h),
        "tx": lambda: pynvml.nvmlDeviceGetPcieThroughput(h, 0),
        "rx": lambda: pynvml.nvmlDeviceGetPcieThroughput(h, 1),
        "ecc": lambda: pynvml.nvmlDeviceGetTotalEccErrors(h, 0, 0),
        "throttle": lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(h),
        "pstate": lambda: pynvml.nvmlDeviceGetPerformanceState(h),
        "procs": lambda: [pynvml.nvmlSystemGetProcessName(p.pid)
                          for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)],
        "mig": lambda: pynvml.nvmlDeviceGetMigMode(h),
    }


def naive_tick(pynvml) -> list[dict]:
    """A poller without caching: handle, name, uuid and every field, each tick."""
    out = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        row = {}
        for key, call in field_calls(pynvml, h).items():
            try:
                row[key] = call()
            except pynvml.NVMLError:
                row[key] = None
        out.append(row)
    return out


def child() -> None:
    """Runs with the stub on LD_LIBRARY_PATH; prints per-tick nanoseconds per contender as JSON."""
    import pynvml

    from tracklab_sysmon.collectors.nvidia import SLOW_SECONDS, NvidiaCollector

    collector, slow = NvidiaCollector(), NvidiaCollector()
    collector.collect(0.0)
    slow.collect(0.0)
    pynvml.nvmlInit()
    naive_tick(pynvml)
    cpu: dict[str, list[int]] = {"collector": [], "slow-tick": [], "naive": []}
    wall: dict[str, list[int]] = {name: [] for name in cpu}
    calls = {"collector": lambda n: collector.collect(float(n)), "slow-tick": lambda n: slow.collect(n * SLOW_SECONDS),
             "naive": lambda n: naive_tick(pynvml)}
    clock, perf = time.thread_time_ns, time.perf_counter_ns
    for n in range(1, ROUNDS + 1):
        for name, call in calls.items():
            c0, w0 = clock(), perf()
            call(n)
            w1, c1 = perf(), clock()
            cpu[name].append(c1 - c0)
            wall[name].append(w1 - w0)
    print(json.dumps({"cpu": cpu, "wall": wall}))


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from nvml_stub.build import build_stub, stub_env

    with tempfile.TemporaryDirectory() as tmp:
        lib = build_stub(pathlib.Path(tmp))
        print(f"NVIDIA collector per tick through the stand-in NVML, {ROUNDS} ticks each, ms; commit {commit()}")
        print(f"uptime before: {uptime()}")
        print(f"{'GPUs':>4}  {'contender':<10} {'CPU mean':>8} {'median':>8} {'p99':>8} {'wall mean':>9}  ratio")
        for gpus in (1, 8):
            done = subprocess.run(
                [sys.executable, __file__, "--child"], env=stub_env(lib, gpus=str(gpus)),
                capture_output=True, text=True, check=True,
            )
            times = json.loads(done.stdout)
            base = summary(times["cpu"]["collector"])["mean"]
            for name, ns in times["cpu"].items():
                t = summary([v / 1e6 for v in ns])
                w = summary([v / 1e6 for v in times["wall"][name]])
                print(f"{gpus:>4}  {name:<10} {t['mean']:8.3f} {t['median']:8.3f} {t['p99']:8.3f} {w['mean']:9.3f}"
                      f"  {t['mean'] * 1e6 / base:5.2f}x")
        print(f"uptime after: {uptime()}")


if __name__ == "__main__":
    child() if sys.argv[1:] == ["--child"] else main()
