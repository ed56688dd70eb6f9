"""Idle cost of the supervised vendor tools (neuron-monitor, hl-smi) and of the TPU collector's ticks.

1. Idle cost: `tracklab-sysmon serve` at 1 Hz for WINDOW seconds, once with no tool on PATH and once
   with the stand-in neuron-monitor and hl-smi on PATH (tests/fixtures/*: they print recorded output
   once a second, as the real tools would with the service's interval), CPU time read from
   /proc/PID/task/*/schedstat (nanoseconds on CPU, all threads). The service's difference is what
   supervising two children costs it (reader threads, parsing each report); each stand-in's own CPU
   is printed too, but a real tool's cost has to be measured on real hardware (scripts/gpu-check.sh).
2. Per-tick cost of `collect` for each source at 8 devices, the tools and a stand-in gRPC service
   running (Neuron: an 8-device report; Gaudi: 8 rows; TPU: 8 devices over loopback gRPC).

Run: .venv/bin/python benchmarks/bench_children.py [WINDOW_SECONDS]   (default 30)
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
WINDOW = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "--ticks" else 30.0
sys.path.insert(0, str(ROOT / "tests"))
# The stand-in TPU metrics service with 8 devices in a process of its own (as libtpu's is); prints its address.
SERVE_TPU = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tpu_standin import GIB, StandInServer, StandInService
from tracklab_sysmon import _tpu
eight = {_tpu.MEMORY_USED: {d: GIB for d in range(8)}, _tpu.MEMORY_TOTAL: {d: 16 * GIB for d in range(8)},
         _tpu.DUTY_CYCLE: {d: 50.0 for d in range(8)}}
server = StandInServer(StandInService(eight)).start()  # kept: a server nothing refers to is stopped
print(server.address, flush=True)
time.sleep(3600)
"""


def cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of every thread of `pid` (schedstat's first field), 0 once it is gone."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return 0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
                total += int(handle.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def idle_run(with_tools: bool, folder: pathlib.Path) -> dict[str, float]:
    """CPU % of one core over WINDOW s: the service, and each tool child it started."""
    env = dict(os.environ)
    pids = {"neuron-monitor": folder / "neuron-pids", "hl-smi": folder / "hlsmi-pids"}
    if with_tools:
        env["PATH"] = f"{FIXTURES / 'neuron-monitor'}:{FIXTURES / 'hl-smi'}:{env['PATH']}"
        env["NEURON_STANDIN_PIDS"], env["HLSMI_STANDIN_PIDS"] = str(pids["neuron-monitor"]), str(pids["hl-smi"])
    else:
        env["PATH"] = "/usr/bin:/bin"  # no neuron-monitor, no hl-smi
    portfile = folder / f"port-{with_tools}.json"
    service = subprocess.Popen([sys.executable, "-m", "tracklab_sysmon", "serve", "--rest-api-port", "0",
                                "--portfile", str(portfile)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        while not portfile.exists():
            time.sleep(0.1)
        time.sleep(3.0)  # start-up, the first reports and the first GC are not idle
        children = {name: int(path.read_text().split()[0]) for name, path in pids.items() if with_tools}
        before = {"service": cpu_ns(service.pid), **{n: cpu_ns(p) for n, p in children.items()}}
        started = time.monotonic()
        time.sleep(WINDOW)
        elapsed = time.monotonic() - started
        after = {"service": cpu_ns(service.pid), **{n: cpu_ns(p) for n, p in children.items()}}
        return {name: 100.0 * (after[name] - before[name]) / 1e9 / elapsed for name in before}
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(10)


def tick_costs() -> dict[str, tuple[float, float]]:
    """(median wall µs, mean CPU µs of this process) of collect() per source at 8 devices."""
    from test_supervise import wait_for

    from tracklab_sysmon.collectors.gaudi import GaudiCollector
    from tracklab_sysmon.collectors.neuron import NeuronCollector
    from tracklab_sysmon.collectors.tpu import TpuCollector

    report = json.loads((FIXTURES / "neuron-monitor" / "reports-inf2.jsonl").read_text().splitlines()[0])
    report["neuron_hardware_info"]["neuron_device_count"] = 8
    with tempfile.TemporaryDirectory() as tmp:
        tool = pathlib.Path(tmp) / "neuron-monitor"
        tool.write_text(f"#!/bin/sh\nwhile :; do echo '{json.dumps(report)}'; sleep 1; done\n")
        tool.chmod(0o755)
        os.environ["PATH"] = f"{tmp}:{FIXTURES / 'hl-smi'}:{os.environ['PATH']}"
        server = subprocess.Popen(  # the stand-in service in its own process, as libtpu's is
            [sys.executable, "-c", SERVE_TPU, str(ROOT / "tests")], stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        address = server.stdout.readline().strip()
        sources = {"tpu (gRPC, 1 call)": TpuCollector("/nonexistent", address=address),
                   "neuron": NeuronCollector(), "gaudi": GaudiCollector()}
        costs = {}
        try:
            for name, collector in sources.items():
                def ready(c=collector) -> bool:
                    try:
                        return len(c.collect(0.0)) == 8
                    except Exception:
                        return False

                wait_for(ready, name)
                samples, rounds = [], 2000 if "tpu" not in name else 500
                cpu = time.process_time_ns()
                for _ in range(rounds):
                    t0 = time.perf_counter_ns()
                    collector.collect(0.0)
                    samples.append(time.perf_counter_ns() - t0)
                costs[name] = (statistics.median(samples) / 1000, (time.process_time_ns() - cpu) / rounds / 1000)
        finally:
            for collector in sources.values():
                collector.close()
            server.kill()
            server.wait()
    return costs


def main() -> None:
    if sys.argv[1:] == ["--ticks"]:  # only the per-tick costs
        for name, (wall, cpu) in tick_costs().items():
            print(f"  {name:22} {wall:8.1f} {cpu:8.1f}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        bare = idle_run(False, folder)
        tools = idle_run(True, folder)
    print(f"Idle CPU over {WINDOW:g} s at 1 Hz (% of one core):")
    print(f"  service, no tool on PATH             {bare['service']:.3f}")
    print(f"  service, neuron-monitor + hl-smi     {tools['service']:.3f}  (+{tools['service'] - bare['service']:.3f})")
    for name in ("neuron-monitor", "hl-smi"):
        print(f"  {name} stand-in child{' ' * (18 - len(name))}{tools[name]:.3f}")
    print("collect() per tick at 8 devices (µs): median wall, mean CPU of the service's process")
    for name, (wall, cpu) in tick_costs().items():
        print(f"  {name:22} {wall:8.1f} {cpu:8.1f}")


if __name__ == "__main__":
    main()
