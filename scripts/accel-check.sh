#!/usr/bin/env bash
# Real-hardware check for Google TPU, AWS Neuron and Intel Gaudi (scripts/gpu-check.sh tpu|neuron|gaudi runs it).
# For the vendor given it: reads the devices through the collector and prints them; keeps the tool's raw
# output (RAW_OUT, default accel-check-<vendor>.raw) to become a test fixture; checks that the tool's rows
# arrive through a pipe without waiting for a 4 KB buffer; measures the tool's idle CPU over SECONDS and
# the collector's cost per tick. Prints Markdown for docs/gpu.md and docs/performance.md.
# Usage: scripts/accel-check.sh tpu|neuron|gaudi [SECONDS]   (PYTHON=..., TPU_ADDR=host:port for the TPU)
# Exit status: 0 devices read, 1 the collector failed on a present source, 2 the vendor's tool/service is not here.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
VENDOR=${1:?usage: scripts/accel-check.sh tpu|neuron|gaudi [SECONDS]}
SECONDS_IDLE=${2:-30}
RAW_OUT=${RAW_OUT:-accel-check-$VENDOR.raw}
case "$VENDOR" in
  tpu) ;;
  neuron) command -v neuron-monitor >/dev/null 2>&1 || [ -x /opt/aws/neuron/bin/neuron-monitor ] || {
            echo "accel-check: neuron-monitor not found; run this on a Trainium/Inferentia instance" >&2; exit 2; } ;;
  gaudi) command -v hl-smi >/dev/null 2>&1 || { echo "accel-check: hl-smi not found; run this on a Gaudi host" >&2; exit 2; } ;;
  *) echo "accel-check: vendor must be tpu, neuron or gaudi, not $VENDOR" >&2; exit 2 ;;
esac
export VENDOR SECONDS_IDLE RAW_OUT
exec "$PYTHON" - <<'EOF'
import os, platform, statistics, sys, time

from tracklab_sysmon import wire
from tracklab_sysmon.errors import SourceError, Unavailable

vendor, idle_seconds, raw_out = os.environ["VENDOR"], float(os.environ["SECONDS_IDLE"]), os.environ["RAW_OUT"]


def first_devices(collector, wait=30.0):
    """The collector's first devices (a tool needs a period or two for its first output)."""
    end = time.monotonic() + wait
    while True:
        try:
            return collector.collect(time.monotonic())
        except Unavailable as exc:
            if "waiting for its first output" not in str(exc) or time.monotonic() > end:
                print(f"accel-check: {vendor} is unavailable: {exc}", file=sys.stderr)
                sys.exit(2)
        except SourceError as exc:
            print(f"accel-check: {vendor} failed: {exc}", file=sys.stderr)
            sys.exit(1)
        time.sleep(0.2)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/schedstat") as handle:
        return int(handle.read().split()[0]) / 1e9


def tick_cost(collector, ticks=200):
    ns = []
    for _ in range(ticks):
        t0 = time.perf_counter_ns()
        collector.collect(time.monotonic())
        ns.append(time.perf_counter_ns() - t0)
    return statistics.median(ns) / 1e3


if vendor == "tpu":
    from tracklab_sysmon.collectors.tpu import TpuCollector
    collector = TpuCollector(address=os.environ.get("TPU_ADDR") or None)
else:
    from tracklab_sysmon.collectors.gaudi import GaudiCollector
    from tracklab_sysmon.collectors.neuron import NeuronCollector
    collector = NeuronCollector() if vendor == "neuron" else GaudiCollector()
    raw = open(raw_out, "w")
    source = collector._source
    parse = source._parse
    source._parse = lambda line: (raw.write(line + "\n"), raw.flush(), parse(line))[2]  # keep the tool's own words
started = time.monotonic()
devices = first_devices(collector)
first_after = time.monotonic() - started
print(f"### accel-check {vendor} on {platform.node()} ({len(devices)} device(s))\n")
print("| id | name | utilization % | memory used | memory total | power W | temperature C | details |")
print("|---|---|---|---|---|---|---|---|")
for d in devices:
    body = wire.accelerator_to_wire(d)
    extra = {k: v for k, v in body.items() if k not in ("id", "type", "name", "vendor", "uuid", "utilization",
                                                         "memory", "temperature", "power", "fanSpeed")}
    print(f"| {d.id} | {d.name} | {d.utilization} | {d.memory.used} | {d.memory.total} | {d.power} | "
          f"{d.temperature} | {wire.encode(extra).decode()[:200]} |")
print(f"\nFirst devices {first_after:.1f} s after start (a tool that does not flush into a pipe shows up late here).")
if vendor != "tpu":
    child = collector._source._child
    pid = child.state().pid
    before, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(idle_seconds)
    used = cpu_seconds(pid) - before
    print(f"\n{child.name} (pid {pid}, argv {' '.join(child.argv)}): {100 * used / (time.monotonic() - t0):.3f} % "
          f"of one core over {idle_seconds:g} s; raw output kept in {raw_out}")
print(f"\ncollect() per tick: median {tick_cost(collector):.1f} µs")
collector.close()
EOF
