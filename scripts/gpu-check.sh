#!/usr/bin/env bash
# Real-GPU check: compares every field the NVIDIA collector reports with nvidia-smi, then measures
# the collector's cost per tick. Prints Markdown for docs/performance.md ("GPU collector").
# Then the fabric: each NVLink's data counters against `nvidia-smi nvlink -gt d`, each InfiniBand/RoCE
# port's data counters against `perfquery -x` (when infiniband-diags is installed), each AWS EFA port's
# against `rdma -j statistic show link` (iproute2; EFA has no PMA), and their cost.
# Usage: scripts/gpu-check.sh [TICKS]      (PYTHON=... to pick the interpreter; default .venv/bin/python)
#        scripts/gpu-check.sh intel [SECONDS]   Intel GPUs beside intel_gpu_top -J (scripts/check_intel.py)
#        scripts/gpu-check.sh rapl [SECONDS]    RAPL energy beside perf stat power/energy-* (scripts/check_rapl.py)
#        scripts/gpu-check.sh tpu|neuron|gaudi [SECONDS]   (scripts/accel-check.sh: Google TPU, AWS Neuron, Gaudi)
#        SYSMON_SYS_ROOT=... reads RDMA ports under another sysfs root
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

def nvlink_error_check(before, after):
    """Each link's error counters (field values: per-link ids on links 0-11, the scoped DL fields above)
    against NVML's own per-link call, nvmlDeviceGetNvLinkErrorCounter; errors only grow, so its answer
    must lie between ours before and after it. Returns how many disagree; ours null where the per-link
    call answers is reported as a gap, not a failure (no field id exists for it: data CRC on links 12+)."""
    import pynvml
    from tracklab_sysmon import _nvml

    handles = {d.index: d.handle for d in _nvml.devices()}
    counters = {"crc_flit": pynvml.NVML_NVLINK_ERROR_DL_CRC_FLIT, "crc_data": pynvml.NVML_NVLINK_ERROR_DL_CRC_DATA,
                "replay": pynvml.NVML_NVLINK_ERROR_DL_REPLAY, "recovery": pynvml.NVML_NVLINK_ERROR_DL_RECOVERY}
    print("\n#### NVLink error counters against `nvmlDeviceGetNvLinkErrorCounter`\n")
    print("| GPU | link | counter | collector before | NVML per-link call | collector after | agree |")
    print("|---|---|---|---|---|---|---|")
    failures = 0
    for old, new in zip(before or [], after or [], strict=False):
        for kind, counter in counters.items():
            lo, hi = getattr(old.errors, kind), getattr(new.errors, kind)
            try:
                theirs = pynvml.nvmlDeviceGetNvLinkErrorCounter(handles[old.gpu], old.link, counter)
            except pynvml.NVMLError:
                theirs = None
            if lo is None and hi is None:
                verdict = "yes (both null)" if theirs is None else "ours null (gap)"
            else:
                ok = None not in (lo, hi, theirs) and lo <= theirs <= hi
                failures += not ok
                verdict = "yes" if ok else "**NO**"
            print(f"| {old.gpu} | {old.link} | {kind} | {lo} | {theirs} | {hi} | {verdict} |")
    return failures

def perfquery_counters(tool, port):
    """PortXmitData etc. of one port from `perfquery -x` (the PMA: data in 4-byte words); {} without the tool."""
    import re, subprocess
    if not tool:
        return {}
    out = subprocess.run([tool, "-x", "-C", port.device, "-P", str(port.port)], capture_output=True, text=True).stdout
    return {name: int(m.group(1)) for name in ("PortXmitData", "PortRcvData", "PortXmitPkts", "PortRcvPkts")
            if (m := re.search(rf"^{name}:\.*(\d+)", out, re.M))}


def efa_counters(tool, port):
    """The same four counters of an EFA port from `rdma -j statistic show link DEV/PORT` (the efa driver's
    port statistics through netlink: tx_bytes, rx_bytes, tx_pkts, rx_pkts, in bytes and packets)."""
    import subprocess
    if not tool:
        return {}
    out = subprocess.run([tool, "-j", "statistic", "show", "link", f"{port.device}/{port.port}"],
                         capture_output=True, text=True).stdout
    try:
        rows = json.loads(out or "[]")
    except ValueError:
        print(f"`rdma -j statistic` printed no JSON for {port.device}/{port.port}: {out[:200]!r}")
        return {}
    row = next((r for r in rows if r.get("ifname") == port.device and int(r.get("port", -1)) == port.port), {})
    names = {"tx_bytes": "PortXmitData", "rx_bytes": "PortRcvData", "tx_pkts": "PortXmitPkts", "rx_pkts": "PortRcvPkts"}
    return {ours: int(row[theirs]) for theirs, ours in names.items() if theirs in row}


def fabric_checks(ticks, cost):
    """NVLink and InfiniBand data counters against the vendor tools; each counter only grows, so the tool's
    reading must lie between ours just before and just after it. Returns how many disagree."""
    import re, shutil, subprocess
    from tracklab_sysmon.collectors.base import Partial
    from tracklab_sysmon.collectors.infiniband import InfinibandCollector
    from tracklab_sysmon.collectors.nvlink import NvlinkCollector

    def section(collector, attr):
        try:
            value = collector.collect(time.monotonic())
        except Exception as exc:  # Unavailable says why; anything else is reported as it is
            return None, f"{type(exc).__name__}: {exc}"
        value = value.value if isinstance(value, Partial) else value
        return getattr(value, attr), None

    failures = 0
    print("\n#### NVLink against `nvidia-smi nvlink -gt d` (KiB)\n")
    nvlink = NvlinkCollector()
    before, why = section(nvlink, "links")
    if before is None:
        print(f"NVLink not checked: {why}")
    else:
        smi = subprocess.run(["nvidia-smi", "nvlink", "-gt", "d"], capture_output=True, text=True).stdout
        after, _ = section(nvlink, "links")
        seen, gpu = {}, None
        for line in smi.splitlines():
            if m := re.match(r"GPU (\d+):", line.strip()):
                gpu = int(m.group(1))
            elif gpu is not None and (m := re.search(r"Link (\d+): Data (Tx|Rx): (\d+) KiB", line)):
                seen[(gpu, int(m.group(1)), m.group(2).lower())] = int(m.group(3))
        if not seen:  # a layout this parser does not know: show it, so the parser can be fixed
            print("nvidia-smi printed no `Link N: Data Tx/Rx: K KiB` lines; its first lines:\n```\n"
                  + "\n".join(smi.splitlines()[:8]) + "\n```\n")
        print("| GPU | link | state | direction | collector before | nvidia-smi | collector after | agree |")
        print("|---|---|---|---|---|---|---|---|")
        for old, new in zip(before or [], after or [], strict=False):
            for d in ("tx", "rx"):
                lo, hi = getattr(old, f"{d}_bytes"), getattr(new, f"{d}_bytes")
                theirs = seen.get((old.gpu, old.link, d))
                ok = None not in (lo, hi, theirs) and lo // 1024 <= theirs <= hi // 1024
                failures += not ok
                print(f"| {old.gpu} | {old.link} | {old.state} | {d} | {lo} B | {theirs} KiB | {hi} B | "
                      f"{'yes' if ok else '**NO**'} |")
        failures += nvlink_error_check(before, after)
        print(f"\nCost per tick: median {cost(NvlinkCollector(), ticks)[0]:.3f} ms")
    print("\n#### InfiniBand / RoCE against `perfquery -x` (4-byte words)\n")
    ib = InfinibandCollector(os.environ.get("SYSMON_SYS_ROOT", "/sys"))
    ports, why = section(ib, "ports")
    if ports is None:
        print(f"InfiniBand not checked: {why}")
        return failures
    sys_root = os.environ.get("SYSMON_SYS_ROOT", "/sys")
    tools = {"perfquery": shutil.which("perfquery"), "rdma": shutil.which("rdma")}
    print("EFA ports (no `counters/`, no PMA for perfquery) are checked against iproute2's "
          "`rdma -j statistic show link` (netlink, not sysfs), in bytes.\n")
    print("| port | layer | state | rate b/s | counter | collector before | tool | collector after | agree |")
    print("|---|---|---|---|---|---|---|---|---|")
    for port in ports:
        efa = not os.path.isdir(f"{sys_root}/class/infiniband/{port.device}/ports/{port.port}/counters")
        tool_name = "rdma" if efa else "perfquery"
        tool = tools[tool_name]
        theirs_of = efa_counters(tool, port) if efa else perfquery_counters(tool, port)
        later = {(p.device, p.port): p for p in (section(ib, "ports")[0] or [])}.get((port.device, port.port))
        data_words = 1 if efa else 4  # EFA's hw_counters count bytes; the PMA's data counters 4-byte words
        for name, attr, words in (("PortXmitData", "tx_bytes", data_words), ("PortRcvData", "rx_bytes", data_words),
                                  ("PortXmitPkts", "tx_packets", 1), ("PortRcvPkts", "rx_packets", 1)):
            theirs = theirs_of.get(name)
            lo, hi = getattr(port, attr), getattr(later, attr) if later else None
            ok = None not in (lo, hi, theirs) and lo // words <= theirs <= hi // words
            failures += bool(tool) and not ok
            verdict = ("yes" if ok else "**NO**") if tool else f"{tool_name} not installed"
            print(f"| {port.device}/{port.port} | {port.link_layer} | {port.state} | {port.rate} | {name} | {lo} | "
                  f"{theirs} | {hi} | {verdict} |")
    print(f"\nCost per tick: median {cost(InfinibandCollector(os.environ.get('SYSMON_SYS_ROOT', '/sys')), ticks)[0]:.3f}"
          " ms")
    return failures


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
bad += fabric_checks(ticks, cost)
print(f"\nMIG instances with DCGM figures: {status.get('mig')}")
print(f"\n{bad} stable field(s) disagree")
sys.exit(1 if bad else 0)
EOF
