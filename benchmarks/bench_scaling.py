"""How the per-tick cost grows with cores and disks, on generated trees, for both backends.

Trees of 2/64/256/1024 CPUs (with 4 disks) and 4/64/1024 disks (with 2 CPUs) are written under
out/trees/; each round times the hot reader's seven reads and one whole sampler tick per tree and
backend, in rotating order. Usage: bench_scaling.py [--rounds 5] [--samples 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_hotpath import make_sampler, reader_sample

from tracklab_sysmon import hotpath
from tracklab_sysmon._hotpath_py import PyHotReader

OUT = pathlib.Path(__file__).resolve().parent.parent / "out"
SHAPES = [(2, 4), (64, 4), (256, 4), (1024, 4), (2, 64), (2, 1024)]


def write_tree(root: pathlib.Path, cpus: int, disks: int) -> tuple[str, str]:
    """A /proc and /sys pair: `cpus` cores with cpufreq, `disks` whole disks with 2 partitions each."""
    proc, sys_root = root / "proc", root / "sys"
    (proc / "net").mkdir(parents=True, exist_ok=True)
    (sys_root / "block").mkdir(parents=True, exist_ok=True)
    lines = [f"cpu  {cpus * 1000} 10 {cpus * 300} {cpus * 9000} 20 0 10 0 0 0"]
    lines += [f"cpu{i} {1000 + i} 1 {300 + i} {9000 + i} 2 0 1 0 0 0" for i in range(cpus)]
    (proc / "stat").write_text("\n".join(lines) + "\nintr 1\nctxt 2\nbtime 1700000000\nprocesses 3\n")
    for i in range(cpus):  # real hosts have cpufreq: one more file per core and tick
        freq = sys_root / "devices/system/cpu" / f"cpu{i}" / "cpufreq"
        freq.mkdir(parents=True, exist_ok=True)
        (freq / "scaling_cur_freq").write_text(f"{2000000 + i}\n")
    disk_lines = []
    for d in range(disks):
        name = f"nvme{d}n1"
        (sys_root / "block" / name).mkdir(exist_ok=True)
        for part, suffix in enumerate(("", "p1", "p2")):
            disk_lines.append(f" 259 {3 * d + part} {name}{suffix} {d} 0 {8 * d} 0 {d} 0 {8 * d} 0 0 0 0 0 0 0 0 0 0")
    (proc / "diskstats").write_text("\n".join(disk_lines) + "\n")
    (proc / "net/dev").write_text(
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n"
        "    lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n  eth0: 100 2 0 0 0 0 0 0 200 3 0 0 0 0 0 0\n")
    (proc / "meminfo").write_text("MemTotal: 16000000 kB\nMemFree: 8000000 kB\nMemAvailable: 12000000 kB\n"
                                  "SwapTotal: 0 kB\nSwapFree: 0 kB\n")
    (proc / "loadavg").write_text("0.50 0.40 0.30 2/300 12345\n")
    (proc / "net/snmp").write_text("Tcp: RtoAlgorithm CurrEstab\nTcp: 1 5\n")
    for pid in (1, 2, 3):
        (proc / str(pid)).mkdir(exist_ok=True)
    return str(proc), str(sys_root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=50)
    args = parser.parse_args()
    backends = {"python": PyHotReader}
    try:
        backends["cffi"] = hotpath.select_backend("require")[0]
    except hotpath.BackendUnavailable as exc:
        print(f"note: {exc}", file=sys.stderr)
    loop = asyncio.new_event_loop()
    runs = {}
    for cpus, disks in SHAPES:
        proc, sys_root = write_tree(OUT / "trees" / f"{cpus}cpu-{disks}disk", cpus, disks)
        for name, cls in sorted(backends.items()):
            sample = reader_sample(cls(proc))
            sampler = make_sampler(cls(proc), proc, sys_root)
            loop.run_until_complete(sampler.prime())
            runs[(cpus, disks, name, "reads")] = lambda n, s=sample: timed(lambda: [s() for _ in range(n)], n)
            runs[(cpus, disks, name, "tick")] = lambda n, s=sampler: timed(
                lambda: loop.run_until_complete(ticks(s, n)), n)
    results: dict = {key: [] for key in runs}
    keys = list(runs)
    for round_no in range(args.rounds):
        for key in keys[round_no % len(keys):] + keys[: round_no % len(keys)]:
            results[key].append(runs[key](args.samples))
    loop.close()
    report(results, backends, args)


async def ticks(sampler, n: int) -> None:
    for _ in range(n):
        await sampler.tick()


def timed(call, n: int) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) / n * 1e6


def report(results: dict, backends: dict, args) -> None:
    print(f"per-tick cost by tree size, median (min-max) us over {args.rounds} rounds x {args.samples}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    names = sorted(backends)
    header = "".join(f"{n + ' ' + part:>24}" for n in names for part in ("reads", "tick"))
    print(f"{'cpus':>5} {'disks':>5}{header}{'tick py/c':>10}")
    for cpus, disks in SHAPES:
        cells, medians = "", {}
        for name in names:
            for part in ("reads", "tick"):
                values = results[(cpus, disks, name, part)]
                medians[(name, part)] = statistics.median(values)
                cells += f"{medians[(name, part)]:>10.0f} ({min(values):.0f}-{max(values):.0f})".rjust(24)
        ratio = (medians[("python", "tick")] / medians[("cffi", "tick")]) if "cffi" in names else float("nan")
        print(f"{cpus:>5} {disks:>5}{cells}{ratio:>10.2f}")
    OUT.mkdir(exist_ok=True)
    (OUT / "bench_scaling.json").write_text(json.dumps({"|".join(map(str, k)): v for k, v in results.items()},
                                                       indent=1))


if __name__ == "__main__":
    main()
