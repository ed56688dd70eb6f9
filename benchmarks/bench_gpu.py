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
means to `collector`; then the Intel GPU, RAPL and energy ledger costs at 8 devices
(bench_intel_energy.py). Run: .venv/bin/python benchmarks/bench_gpu.py

Then the fabric sources at 8 devices (BENCH_GPU_ONLY=fabric runs only these):
  nvlink         NvlinkCollector.collect, 8 GPUs x 18 links (an HGX H100 board), clock +1 s per tick
  nvlink-public  the same through pynvml's public nvmlDeviceGetFieldValues (ctypes records built per call)
  nvlink-naive   one public field-values call per link per counter, decoded field by field
  infiniband     InfinibandCollector.collect on 8 ports (the fixture's HDR port copied), clock +1 s per tick
The target is all new sources together <= 1 ms per tick at 8 devices. The fabric contenders are timed in
CPU time of the calling thread (time.thread_time_ns), so other jobs on a shared machine do not count.
Last, bench_accel_all.py ticks every new source together at 8 devices (Intel, RAPL, the ledger, TPU, NVLink,
InfiniBand) and prints the parts' and the sum's mean, median and p99 against that target.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
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


LINKS = 18


def nvlink_naive_tick(pynvml, handles: list) -> list:
    """A poller without the prepared request: per link, one call per counter, each value read off its ctypes record."""
    from tracklab_sysmon import _nvlink

    out = []
    for h in handles:
        for field_id, scope, _ in _nvlink.counter_slots(LINKS):
            (value,) = pynvml.nvmlDeviceGetFieldValues(h, [(field_id, scope)])
            out.append(value.value.ullVal if value.nvmlReturn == 0 else None)
    return out


def fabric_child() -> None:
    """Runs with the stub on LD_LIBRARY_PATH (8 GPUs, 18 links each); prints nanoseconds per contender as JSON."""
    import pynvml

    from tracklab_sysmon import _nvlink
    from tracklab_sysmon.collectors.nvlink import NvlinkCollector

    fast, public = NvlinkCollector(), NvlinkCollector()
    fast.collect(0.0)
    real_function = _nvlink._function
    _nvlink._function = lambda module: None
    public.collect(0.0)
    _nvlink._function = real_function
    pynvml.nvmlInit()
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    times: dict[str, list[int]] = {"nvlink": [], "nvlink-public": [], "nvlink-naive": []}
    perf = time.thread_time_ns
    # One contender after the other, not interleaved: the naive poller's garbage would be collected
    # on the collector's ticks and charged to it.
    for n in range(1, ROUNDS + 1):
        t0 = perf()
        fast.collect(float(n))
        times["nvlink"].append(perf() - t0)
    _nvlink._function = lambda module: None
    for n in range(1, ROUNDS + 1):
        t0 = perf()
        public.collect(float(n))
        times["nvlink-public"].append(perf() - t0)
    _nvlink._function = real_function
    for _ in range(ROUNDS):
        t0 = perf()
        nvlink_naive_tick(pynvml, handles)
        times["nvlink-naive"].append(perf() - t0)
    print(json.dumps(times))


def infiniband_times(ports: int = 8) -> list[int]:
    """Per-tick nanoseconds of the InfiniBand collector on `ports` copies of the fixture's active HDR port."""
    import shutil

    from tracklab_sysmon.collectors.infiniband import InfinibandCollector

    source = ROOT / "tests/fixtures/infiniband-hca/sys/class/infiniband/mlx5_0"
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(ports):
            shutil.copytree(source, pathlib.Path(tmp) / f"class/infiniband/mlx5_{i}")
        collector = InfinibandCollector(tmp)
        collector.collect(0.0)
        ns = []
        for n in range(1, ROUNDS + 1):
            t0 = time.thread_time_ns()
            collector.collect(float(n))
            ns.append(time.thread_time_ns() - t0)
    return ns


def fabric(lib: pathlib.Path, stub_env) -> None:
    done = subprocess.run(
        [sys.executable, __file__, "--fabric-child"], env=stub_env(lib, gpus="8", nvlink=str(LINKS)),
        capture_output=True, text=True, check=True,
    )
    times = {**json.loads(done.stdout), "infiniband": infiniband_times()}
    print(f"\nFabric sources per tick at 8 devices ({LINKS} NVLinks per GPU; 8 InfiniBand ports), {ROUNDS} ticks,"
          " ms of thread CPU time")
    print(f"{'contender':<14} {'median':>8} {'p10':>8} {'p90':>8}")
    for name, ns in times.items():
        med, p10, p90 = deciles_ms(ns)
        print(f"{name:<14} {med:8.3f} {p10:8.3f} {p90:8.3f}")
    together = [a + b for a, b in zip(times["nvlink"], times["infiniband"], strict=True)]
    med, p10, p90 = deciles_ms(together)
    mean = statistics.fmean(together) / 1e6
    print(f"{'nvlink+ib':<14} {med:8.3f} {p10:8.3f} {p90:8.3f}  mean {mean:.3f} (target <= 1 ms)")


def deciles_ms(ns: list[int]) -> tuple[float, float, float]:
    """Median, p10 and p90 of nanosecond samples, in ms (the fabric table)."""
    deciles = statistics.quantiles(ns, n=10)
    return statistics.median(ns) / 1e6, deciles[0] / 1e6, deciles[-1] / 1e6


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from nvml_stub.build import build_stub, stub_env

    with tempfile.TemporaryDirectory() as tmp:
        lib = build_stub(pathlib.Path(tmp))
        if os.environ.get("BENCH_GPU_ONLY") == "fabric":
            fabric(lib, stub_env)
            return
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
        fabric(lib, stub_env)
    print()
    from bench_intel_energy import main as intel_and_energy  # Intel GPUs, RAPL and the ledger: no stub needed

    intel_and_energy(rounds=ROUNDS)
    print()
    from bench_accel_all import run as all_together  # every new source at 8 devices, side by side with the parts

    all_together()


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    elif sys.argv[1:] == ["--fabric-child"]:
        fabric_child()
    else:
        main()
