#!/usr/bin/env bash
# Real-GPU check: compares every field the NVIDIA collector reports with nvidia-smi, then measures
# the collector's cost per tick. Prints Markdown for docs/performance.md ("GPU collector").
# Usage: scripts/gpu-check.sh [TICKS]      (PYTHON=... to pick the interpreter; default .venv/bin/python)
#        scripts/gpu-check.sh intel [SECONDS]   Intel GPUs beside intel_gpu_top -J (scripts/check_intel.py)
#        scripts/gpu-check.sh rapl [SECONDS]    RAPL energy beside perf stat power/energy-* (scripts/check_rapl.py)
#        scripts/gpu-check.sh tpu|neuron|gaudi [SECONDS]   (scripts/accel-check.sh: Google TPU, AWS Neuron, Gaudi)
# Exit status: 0 all stable fields agree, 1 a field disagrees, 2 no NVIDIA GPU / nvidia-smi here.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in  # TPU, Neuron and Gaudi have their own checks
  tpu|neuron|gaudi) exec scripts/accel-check.sh "$@" ;;
esac
PYTHON=${PYTHON:-.venv/bin/python}
case "${1:-}" in
  intel|rapl) exec "$PYTHON" "scripts/check_$1.py" "${@:2}" ;;
esac
TICKS=${1:-300}
if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "gpu-check: nvidia-smi not found; run this on a machine with NVIDIA GPUs and their driver" >&2
  exit 2
fi
FIELDS=index,name,uuid,pci.bus_id,utilization.gpu,utilization.memory,memory.used,memory.total,temperature.gpu
FIELDS=$FIELDS,power.draw,enforced.power.limit,fan.speed,clocks.sm,clocks.mem,pstate,mig.mode.current
FIELDS=$FIELDS,ecc.errors.corrected.volatile.total,ecc.errors.uncorrected.volatile.total
SMI_CSV=$(nvidia-smi --query-gpu="$FIELDS" --format=csv,noheader,nounits)
SMI_VERSION=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)
export SMI_CSV SMI_VERSION FIELDS TICKS
exec "$PYTHON" - <<'EOF'
import json, os, platform, statistics, sys, time

from tracklab_sysmon import wire
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.collectors.nvidia import NvidiaCollector

fields = os.environ["FIELDS"].split(",")
smi = [dict(zip(fields, (v.strip() for v in line.split(",")))) for line in os.environ["SMI_CSV"].splitlines() if line.strip()]
collector = NvidiaCollector()
try:
    ours = {a.id: wire.accelerator_to_wire(a) for a in collector.collect(time.monotonic())}
except Unavailable as exc:
    print(f"gpu-check: the collector says NVIDIA is unavailable: {exc}", file=sys.stderr)
    sys.exit(2)


def num(text):
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def close(a, b, rel=0.0, absolute=0.0):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= max(absolute, rel * max(abs(a), abs(b)))


MIB = 1024 * 1024
# (label, ours, nvidia-smi, agree?, stable?) per GPU: volatile readings get tolerances, identities must match.
rows, bad = [], 0
for row in smi:
    i = int(row["index"])
    g = ours.get(i)
    if g is None:
        rows.append((i, "present", "missing", row["name"], False, True))
        bad += 1
        continue
    pstate = row["pstate"][1:] if row["pstate"].startswith("P") else None
    mig = row["mig.mode.current"]
    checks = [
        ("name", g["name"], row["name"], g["name"] == row["name"], True),
        ("uuid", g["uuid"], row["uuid"], g["uuid"] == row["uuid"], True),
        ("busId", g["busId"], row["pci.bus_id"], (g["busId"] or "").lower() == row["pci.bus_id"].lower(), True),
        ("memory.total MiB", (g["memory"]["total"] or 0) / MIB, num(row["memory.total"]),
         close((g["memory"]["total"] or 0) / MIB, num(row["memory.total"]), absolute=1), True),
        ("memory.used MiB", (g["memory"]["used"] or 0) / MIB, num(row["memory.used"]),
         close((g["memory"]["used"] or 0) / MIB, num(row["memory.used"]), rel=0.05, absolute=64), False),
        ("utilization %", g["utilization"], num(row["utilization.gpu"]),
         close(g["utilization"], num(row["utilization.gpu"]), absolute=15), False),
        ("memoryUtilization %", g["memoryUtilization"], num(row["utilization.memory"]),
         close(g["memoryUtilization"], num(row["utilization.memory"]), absolute=15), False),
        ("temperature C", g["temperature"], num(row["temperature.gpu"]),
         close(g["temperature"], num(row["temperature.gpu"]), absolute=3), False),
        ("power W", g["power"], num(row["power.draw"]), close(g["power"], num(row["power.draw"]), rel=0.2, absolute=5), False),
        ("powerLimit W", g["powerLimit"], num(row["enforced.power.limit"]),
         close(g["powerLimit"], num(row["enforced.power.limit"]), absolute=1), True),
        ("fanSpeed %", g["fanSpeed"], num(row["fan.speed"]), close(g["fanSpeed"], num(row["fan.speed"]), absolute=5), False),
        ("clocks.sm MHz", g["clocks"]["sm"], num(row["clocks.sm"]),
         close(g["clocks"]["sm"], num(row["clocks.sm"]), rel=0.2), False),
        ("clocks.memory MHz", g["clocks"]["memory"], num(row["clocks.mem"]),
         close(g["clocks"]["memory"], num(row["clocks.mem"]), rel=0.2), False),
        ("performanceState", g["performanceState"], row["pstate"],
         g["performanceState"] == (int(pstate) if pstate and pstate.isdigit() else None), False),
        ("mig.enabled", (g["mig"] or {}).get("enabled"), mig,
         (g["mig"] or {}).get("enabled") == ({"Enabled": True, "Disabled": False}.get(mig)), True),
        ("eccErrors.corrected", g["eccErrors"]["corrected"], row["ecc.errors.corrected.volatile.total"],
         close(g["eccErrors"]["corrected"], num(row["ecc.errors.corrected.volatile.total"])), True),
        ("eccErrors.uncorrected", g["eccErrors"]["uncorrected"], row["ecc.errors.uncorrected.volatile.total"],
         close(g["eccErrors"]["uncorrected"], num(row["ecc.errors.uncorrected.volatile.total"])), True),
    ]
    for label, a, b, ok, stable in checks:
        rows.append((i, label, a, b, ok, stable))
        bad += (not ok) and stable

# Cost per tick, profiling off and (where DCGM or GPM answers) on.
def cost(c, ticks):
    c.collect(0.0)
    ns = []
    for n in range(1, ticks + 1):
        t0 = time.perf_counter_ns()
        c.collect(float(n))
        ns.append(time.perf_counter_ns() - t0)
    q = statistics.quantiles(ns, n=10)
    return statistics.median(ns) / 1e6, q[0] / 1e6, q[-1] / 1e6

ticks = int(os.environ["TICKS"])
plain = cost(NvidiaCollector(), ticks)
prof_collector = NvidiaCollector(enable_dcgm=True)
prof = cost(prof_collector, ticks)
status = prof_collector.profiling_status()

print(f"### gpu-check on {platform.node()} ({len(smi)} GPU(s): {smi[0]['name'] if smi else '-'}, driver {os.environ['SMI_VERSION']})\n")
print("| GPU | field | collector | nvidia-smi | agree |")
print("|---|---|---|---|---|")
for i, label, a, b, ok, stable in rows:
    verdict = "yes" if ok else ("**NO**" if stable else "no (volatile)")
    print(f"| {i} | {label} | {a} | {b} | {verdict} |")
print(f"\nExtra fields of GPU 0 (not in nvidia-smi's CSV): " + json.dumps(
    {k: ours[0].get(k) for k in ("energy", "pcie", "throttleReasons", "encoderUtilization", "decoderUtilization",
                                 "processes", "mig")} if 0 in ours else {}))
print(f"\nCost per tick over {ticks} ticks (ms): profiling off median {plain[0]:.3f} (p10 {plain[1]:.3f}, p90 {plain[2]:.3f}); "
      f"profiling on median {prof[0]:.3f} (p10 {prof[1]:.3f}, p90 {prof[2]:.3f}); profiling source {status['source']}"
      f"{'' if status['source'] else ' (' + str(status['reason']) + ')'}")
print(f"\n{bad} stable field(s) disagree")
sys.exit(1 if bad else 0)
EOF
