"""Real-RAPL check (`scripts/gpu-check.sh rapl [SECONDS]`): the RAPL collector beside `perf stat -e power/...`.

Reads every zone, waits SECONDS (default 5) while `perf stat -a -e power/energy-pkg/,power/energy-ram/` counts
the same interval, reads again, and compares the joules used: the package zones summed with energy-pkg, the
dram zones with energy-ram (within 10 % + 0.5 J: the two intervals start a few ms apart). Without perf it
prints the collector's figures only. Exit status: 0 agree (or nothing to compare), 1 disagree, 2 no RAPL zone
(or unreadable: not root). SYSMON_SYS_ROOT points it at another tree (the tests do).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

from tracklab_sysmon.collectors.base import Partial
from tracklab_sysmon.collectors.rapl import RaplCollector
from tracklab_sysmon.errors import Unavailable
from tracklab_sysmon.model import EnergySample

EVENTS = {"power/energy-pkg/": "package", "power/energy-ram/": "dram"}


def perf_joules(stderr: str) -> dict[str, float]:
    """Joules per domain from `perf stat -x,` lines (`12.34,Joules,power/energy-pkg/,...`)."""
    found: dict[str, float] = {}
    for line in stderr.splitlines():
        fields = line.split(",")
        if len(fields) >= 3 and fields[2] in EVENTS:
            try:
                found[EVENTS[fields[2]]] = float(fields[0])
            except ValueError:
                continue  # "<not supported>", "<not counted>"
    return found


def by_domain(sample: EnergySample | Partial[EnergySample]) -> dict[str, float]:
    value = sample.value if isinstance(sample, Partial) else sample
    totals: dict[str, float] = {}
    for zone in value.cpu:
        totals[zone.domain] = totals.get(zone.domain, 0.0) + zone.joules
    return totals


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    rapl = RaplCollector(os.environ.get("SYSMON_SYS_ROOT", "/sys"))
    try:
        before, started = by_domain(rapl.collect(time.monotonic())), time.monotonic()
    except Unavailable as exc:
        print(f"gpu-check rapl: {exc}", file=sys.stderr)
        return 2
    perf = shutil.which("perf")
    theirs: dict[str, float] = {}
    if perf is not None:
        done = subprocess.run([perf, "stat", "-a", "-x,", "-e", ",".join(EVENTS), "sleep", f"{seconds:g}"],
                              capture_output=True, text=True, timeout=seconds + 30, check=False)
        theirs = perf_joules(done.stderr)
    else:
        time.sleep(seconds)
    after, elapsed = by_domain(rapl.collect(time.monotonic())), time.monotonic() - started
    print(f"### RAPL over {elapsed:.2f} s; perf: {'not found' if perf is None else (theirs or 'no power events')}\n")
    print("| domain | collector J | collector W | perf J | agree |\n|---|---|---|---|---|")
    bad = 0
    for domain in sorted(after):
        used = round(after[domain] - before.get(domain, 0.0), 6)
        other = theirs.get(domain)
        ok = other is None or abs(used - other) <= max(0.5, 0.1 * max(used, other))
        bad += not ok
        verdict = "-" if other is None else ("yes" if ok else "**NO**")
        print(f"| {domain} | {used} | {used / elapsed:.2f} | {other if other is not None else '-'} | {verdict} |")
    print(f"\n{bad} domain(s) disagree")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
