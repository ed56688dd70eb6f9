"""Real-Intel-GPU check (`scripts/gpu-check.sh intel [SECONDS]`): the Intel collector beside `intel_gpu_top -J`.

Samples every i915/xe card for SECONDS (default 5) while `intel_gpu_top -J` (igt-gpu-tools, usually root)
samples the same card; prints a Markdown table per card. Stable check: the engine classes both list.
Volatile (reported, never failing): busy % per class, the actual GT clock, power.
Exit status: 0 agree, 1 a stable field disagrees, 2 no Intel GPU. SYSMON_SYS_ROOT / SYSMON_PROC_ROOT point
it at another tree (the tests do).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.intel import IntelCollector
from tracklab_sysmon.collectors.pci_ids import find_pci_ids
from tracklab_sysmon.errors import Unavailable

# intel_gpu_top's engine names -> the wire's engine classes.
CLASSES = {"Render/3D": "render", "Blitter": "copy", "Video": "video", "VideoEnhance": "videoEnhance",
           "Compute": "compute"}


def json_objects(text: str) -> list[dict[str, Any]]:
    """The top-level objects of intel_gpu_top's JSON stream, which may end unterminated when it is stopped."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i] in "[], \t\r\n":
            i += 1
            continue
        try:
            value, i = decoder.raw_decode(text, i)
        except ValueError:
            break
        if isinstance(value, dict):
            found.append(value)
    return found


def top_classes(sample: dict[str, Any]) -> dict[str, float]:
    """Mean busy % per class over its engine instances (our class share is the same mean)."""
    per_class: dict[str, list[float]] = {}
    for name, engine in (sample.get("engines") or {}).items():
        cls = CLASSES.get(name.rsplit("/", 1)[0])
        if cls is not None and isinstance(engine, dict):
            per_class.setdefault(cls, []).append(float(engine.get("busy", 0.0)))
    return {cls: statistics.fmean(values) for cls, values in per_class.items()}


def run_top(bus_id: str, seconds: float) -> subprocess.Popen[str] | None:
    tool = shutil.which("intel_gpu_top")
    if tool is None:
        return None
    return subprocess.Popen([tool, "-J", "-s", "1000", "-d", f"pci:slot={bus_id}"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)


def mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 3) if values else None


def close(a: float | None, b: float | None, absolute: float, rel: float = 0.0) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= max(absolute, rel * max(abs(a), abs(b)))


def main() -> int:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    sys_root, proc_root = os.environ.get("SYSMON_SYS_ROOT", "/sys"), os.environ.get("SYSMON_PROC_ROOT", "/proc")
    collector = IntelCollector(sys_root, proc_root, pci_ids=find_pci_ids(), fd_walk_seconds=1.0)
    try:
        first = collector.collect(time.monotonic())
    except Unavailable as exc:
        print(f"gpu-check intel: {exc}", file=sys.stderr)
        return 2
    # intel_gpu_top wakes a card it samples: a runtime-suspended one is left asleep and not compared.
    tops = {a.id: run_top(wire.accelerator_to_wire(a)["busId"], seconds) for a in first
            if wire.accelerator_to_wire(a)["runtimeStatus"] != "suspended"}
    samples: list[list[dict[str, Any]]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(1.0)
        samples.append([wire.accelerator_to_wire(a) for a in collector.collect(time.monotonic())])
    bad = 0
    for gpu in samples[-1] if samples else []:
        bad += report(gpu, [s[gpu["id"]] for s in samples], tops.get(gpu["id"]))
    print(f"\n{bad} stable field(s) disagree")
    return 1 if bad else 0


def report(gpu: dict[str, Any], ours: list[dict[str, Any]], top: subprocess.Popen[str] | None) -> int:
    """One card's table; the number of stable fields that disagree."""
    theirs: list[dict[str, Any]] = []
    if top is not None:
        top.terminate()
        theirs = json_objects(top.communicate(timeout=10)[0])[1:]  # the first sample covers start-up
    print(f"\n### {gpu['name']} ({gpu['driver']}, {gpu['busId']}), {len(ours)} samples; "
          f"intel_gpu_top: {len(theirs) if top is not None else 'not found'}\n")
    print(f"Ours: frequency {gpu.get('frequency')}, energy {gpu.get('energy')} J, power {gpu['power']} W, "
          f"memory {gpu['memory']}, temperatures {gpu.get('temperatures')}")
    if not theirs or gpu["runtimeStatus"] == "suspended":
        return 0
    their_classes = [top_classes(s) for s in theirs]
    engines = {cls for s in their_classes for cls in s}
    our_engines = {cls for s in ours for cls in (s.get("engines") or {})}
    rows = [("engine classes", sorted(our_engines), sorted(engines), our_engines == engines, True)]
    for cls in sorted(engines & our_engines):
        a = mean([s["engines"][cls] for s in ours if s.get("engines", {}).get(cls) is not None])
        b = mean([s[cls] for s in their_classes if cls in s])
        rows.append((f"{cls} busy %", a, b, close(a, b, absolute=15.0), False))
    act = mean([s["frequency"]["actual"] for s in ours if (s.get("frequency") or {}).get("actual") is not None])
    top_act = mean([float(s["frequency"]["actual"]) for s in theirs if "frequency" in s])
    rows.append(("frequency.actual MHz", act, top_act, close(act, top_act, absolute=50.0, rel=0.2), False))
    power = mean([s["power"] for s in ours if s["power"] is not None])
    top_power = mean([float(s["power"]["GPU"]) for s in theirs if "GPU" in (s.get("power") or {})])
    rows.append(("power W", power, top_power, close(power, top_power, absolute=5.0, rel=0.25), False))
    print("\n| field | collector | intel_gpu_top | agree |\n|---|---|---|---|")
    for label, a, b, ok, stable in rows:
        print(f"| {label} | {a} | {b} | {'yes' if ok else ('**NO**' if stable else 'no (volatile)')} |")
    return sum(1 for *_, ok, stable in rows if stable and not ok)


if __name__ == "__main__":
    sys.exit(main())
