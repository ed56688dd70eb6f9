"""Per-tick CPU of every new accelerator and fabric source together at 8 devices, beside each part.

One child process, on the stand-in libnvidia-ml.so (8 GPUs x 18 NVLinks), ticks in turn, with the clock
advancing 1 s per tick:
  intel       IntelCollector.collect on 8 xe cards (bench_intel_energy's tree: /proc of PROCESSES x 10 fds,
              and dev/dri/card0-7 and renderD128-135 as plain files, its dev_root where the collector takes
              one), fd walks when they really come (after an open of a node, and timed: 10 s stretched by the
              walk or safety share), so walks are in the mean; nothing opens a node during these ticks
  rapl        RaplCollector.collect (6 zones)
  ledger      EnergyLedger.complete on that tick's 8 Intel GPUs and 6 zones
  tpu         TpuCollector.collect against the stand-in metrics service (8 devices) in a process of its own:
              one gRPC call a tick (duty cycle), used HBM every 5 s, total HBM every 60 s
  nvlink      NvlinkCollector.collect, 8 GPUs x 18 links (state, speed and errors on their 5 s tier)
  infiniband  InfinibandCollector.collect on 8 copies of the fixture's HDR port (5 s and 30 s tiers)
  together    the sum of the parts on the same tick
Busy by default, as a working node is: before each tick (untimed) every Intel client's engine time and GPU clock,
every card's energy and frequency, every RAPL zone's energy and every InfiniBand port's data counters are rewritten
in place, and the TPU stand-in moves its duty cycles and used HBM on every call (NVLink's stand-in counters move on
every read anyway), so no record of the tick before is reused where it would not be on real hardware (an xe
client's fdinfo text changes every tick, busy or not: drm-total-cycles is the GPU clock). --idle leaves everything
as it is (what this measured before commit 0055942: records kept while their inputs repeat, the best case).
Each part is timed by the calling thread's CPU clock (CLOCK_THREAD_CPUTIME_ID, ns); ROUNDS is a multiple of
60 s, so every slow tier runs a whole number of periods and the mean is what a tick costs on average.
`process` is the child's CPU over all the ticks, per tick: any thread a source's library runs is included (grpcio's
event-engine threads did, before the TPU client spoke HTTP/2 itself), which the thread clock leaves out. The target:
together <= 1 ms at 8 devices.
Then `latency`: the Intel collector alone, on the same tree, over ROUNDS ticks in which a new client comes
every ARRIVAL_TICKS (a process with a DRM fd and its fdinfo, then an open of its card's render node, between
two ticks): how many ticks after its open each client is first counted in its card's memory (1: the next).
Usage: bench_accel_all.py [--processes 300] [--rounds 1200] [--walk-share S] [--cadence S] [--idle] [--profile];
bench_gpu.py runs it at its end. --cadence S sleeps S seconds between ticks, as the service does (1 s): each part
then runs with cold caches, and `process` counts what helper threads spend between the ticks too (back to back by
default, which measures what each part itself costs when hot). --walk-share sets IntelCollector's walk share
(CPU seconds of fd walks per second; intel_engines.WALK_SHARE by default), which bounds what the walks add to the
mean on a host of many fds; the walk period it led to (how late a new GPU client may be seen) is printed.
--profile runs the ticks once more with the collect calls under cProfile (the rewrites left out) and prints the
functions that took the most time (BENCH_SORT: pstats' sort key, tottime by default; BENCH_TOP: how many, 20).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from proc_usage import commit, filesystem, memory_tmpdir, summary, uptime

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEVICES = 8
LINKS = 18
PARTS = ("intel", "rapl", "ledger", "tpu", "nvlink", "infiniband")
ARRIVAL_TICKS = 37  # prime: the arrivals fall at every phase of a timed walk's period


def build_tree(root: pathlib.Path, processes: int) -> None:
    """8 xe cards, the RAPL zones and a /proc (bench_intel_energy), and 8 InfiniBand ports under one sys root."""
    from bench_intel_energy import build_tree as intel_tree

    intel_tree(root, processes, 10)
    (root / "dev/dri").mkdir(parents=True)
    for n in range(DEVICES):  # plain files: opens of them are told by inotify as those of device nodes
        (root / f"dev/dri/card{n}").write_bytes(b"")
        (root / f"dev/dri/renderD{128 + n}").write_bytes(b"")
    source = ROOT / "tests/fixtures/infiniband-hca/sys/class/infiniband/mlx5_0"
    for i in range(DEVICES):
        shutil.copytree(source, root / f"sys/class/infiniband/mlx5_{i}")


def child(root: str, address: str, rounds: int, walk_share: float, cadence: float = 0.0, profile: bool = False,
          busy: bool = True) -> None:
    """Runs on the stand-in NVML; prints each part's per-tick thread-CPU ns and the process's CPU as JSON."""
    from tracklab_sysmon.collectors.infiniband import InfinibandCollector
    from tracklab_sysmon.collectors.nvlink import NvlinkCollector
    from tracklab_sysmon.collectors.rapl import RaplCollector
    from tracklab_sysmon.collectors.tpu import TpuCollector
    from tracklab_sysmon.energy import EnergyLedger
    from tracklab_sysmon.model import EnergySample, Snapshot

    sys_root = f"{root}/sys"
    intel = intel_collector(root, walk_share)
    rapl, ledger = RaplCollector(sys_root), EnergyLedger()
    tpu, nvlink, infiniband = TpuCollector("/nonexistent", address=address), NvlinkCollector(), \
        InfinibandCollector(sys_root)
    out: dict[str, object] = {}

    def energy(now: float) -> object:
        zones = out["rapl"]
        zones = zones if isinstance(zones, EnergySample) else None
        if hasattr(ledger, "section"):  # the sampler's call since it builds the snapshot once
            return ledger.section(zones, out["intel"], now)  # type: ignore[arg-type]
        return ledger.complete(Snapshot("n", 0, accelerators=out["intel"], energy=zones), now)  # type: ignore

    calls: dict[str, Callable[[float], object]] = {
        "intel": intel.collect, "rapl": rapl.collect, "ledger": energy, "tpu": tpu.collect,
        "nvlink": nvlink.collect, "infiniband": infiniband.collect,
    }
    for name, call in calls.items():  # discovery, first readings, the TPU channel's connection
        out[name] = call(0.0)
    assert len(out["intel"]) == DEVICES and len(out["tpu"]) == DEVICES  # type: ignore[arg-type]
    assert len(out["nvlink"].links) == DEVICES * LINKS  # type: ignore[attr-defined]
    assert len(out["infiniband"].ports) == DEVICES  # type: ignore[attr-defined]
    times: dict[str, list[int]] = {name: [] for name in calls}
    move = mover(pathlib.Path(root)) if busy else None
    clock = time.thread_time_ns
    moved = 0  # ns of process CPU the untimed rewrites took: left out of `process`
    process0 = time.process_time_ns()
    walks: list[int] = []  # the Intel ticks that walked every process's fds
    for n in range(1, rounds + 1):
        if cadence:
            time.sleep(cadence)
        if move is not None:
            m0 = time.process_time_ns()
            move(n)
            moved += time.process_time_ns() - m0
        for name, call in calls.items():
            t0 = clock()
            out[name] = call(float(n))
            times[name].append(clock() - t0)
        if intel._meter.walk._walked_at == float(n):
            walks.append(times["intel"][-1])
    process = (time.process_time_ns() - process0 - moved) / rounds
    period = intel._meter.walk.period  # after the last walk: its CPU cost / the walk share (10 s at least)
    if profile:  # the same ticks again, under the profiler (its overhead inflates small calls): on stderr
        import cProfile
        import pstats

        profiler = cProfile.Profile(time.thread_time)  # CPU of this thread, as the table; the rewrites left out
        for n in range(rounds + 1, 2 * rounds + 1):
            if move is not None:
                move(n)
            profiler.enable()
            for call in calls.values():
                call(float(n))
            profiler.disable()
        listing = pstats.Stats(profiler, stream=sys.stderr).sort_stats(os.environ.get("BENCH_SORT", "tottime"))
        listing.print_stats(int(os.environ.get("BENCH_TOP", "20")))
    tpu.close()
    print(json.dumps({"times": times, "process": process, "period": period, "walks": walks}))


def mover(root: pathlib.Path) -> Callable[[int], None]:
    """Rewrites, before tick n (untimed), what moves on a working node: each Intel client's engine time and GPU
    clock, each card's energy and frequency (bench_intel_energy's mover), each RAPL zone's energy and each
    InfiniBand port's data counters (in place, as the kernel's files change), so that no record of the tick before
    can be reused. NVLink's stand-in counters move on every read, and the TPU stand-in runs --busy."""
    from bench_intel_energy import mover as intel_mover

    intel = intel_mover(root)
    zones = [(path, int((path.parent / "max_energy_range_uj").read_text()))
             for path in sorted(root.glob("sys/class/powercap/intel-rapl*/energy_uj"))]
    counters = [port / "counters" / name for port in sorted(root.glob("sys/class/infiniband/*/ports/*"))
                for name in ("port_xmit_data", "port_rcv_data", "port_xmit_packets", "port_rcv_packets")]
    starts = [int(path.read_text()) for path in counters]

    def move(n: int) -> None:
        intel(n)
        for k, (path, wrap) in enumerate(zones):  # each wraps at its own range (a DRAM zone's is a quarter)
            path.write_text(f"{(10**9 + n * 37_000_000 * (k + 1)) % wrap}\n")
        for k, (path, start) in enumerate(zip(counters, starts, strict=True)):
            path.write_text(f"{start + n * (10**7 if k % 4 < 2 else 10**4) * (k // 4 + 1)}\n")
    return move


def intel_collector(root: str, walk_share: float) -> Any:
    """The Intel collector on the tree, watching its dev/dri where this version of it takes a dev_root."""
    from tracklab_sysmon.collectors.intel import IntelCollector

    watched = {"dev_root": f"{root}/dev"} if "dev_root" in inspect.signature(IntelCollector).parameters else {}
    return IntelCollector(f"{root}/sys", f"{root}/proc", walk_share=walk_share, **watched)


def latency_child(root: str, rounds: int, walk_share: float) -> None:
    """Prints, as JSON, the ticks from each new client's open to its first count, and the walks made."""
    from bench_intel_energy import FIXTURES

    intel = intel_collector(root, walk_share)
    client = (FIXTURES / "intel-xe/proc/700/fdinfo/9").read_text()

    def used(samples: Any) -> int:
        return sum(a.memory.used or 0 for a in samples)

    counted, opened, latencies, walks = used(intel.collect(0.0)), None, [], 0
    for n in range(1, rounds + 1):
        if n % ARRIVAL_TICKS == 0 and opened is None:  # a process opens card k's node and holds a client
            k = n // ARRIVAL_TICKS % DEVICES
            process = pathlib.Path(root, f"proc/{90000 + n}")
            (process / "fdinfo").mkdir(parents=True)
            (process / "fd").mkdir()
            text = client.replace("0000:03:00.0", f"0000:{0x10 + k:02x}:00.0")
            (process / "fdinfo/3").write_text(text.replace("drm-client-id:\t11", f"drm-client-id:\t{n}"))
            (process / "fd/3").symlink_to(f"/dev/dri/renderD{128 + k}")
            os.close(os.open(f"{root}/dev/dri/renderD{128 + k}", os.O_RDONLY))
            opened = n
        now = used(intel.collect(float(n)))
        walks += intel._meter.walk._walked_at == float(n)
        if opened is not None and now > counted:
            latencies.append(n - opened + 1)  # opened between ticks n - 1 and n: counted at n is the next tick
            counted, opened = now, None
    print(json.dumps({"latencies": latencies, "walks": walks}))


def run(processes: int = 300, rounds: int = 1200, walk_share: float | None = None, profile: bool = False,
        cadence: float = 0.0, busy: bool = True) -> None:
    from tracklab_sysmon.collectors.intel_engines import WALK_SHARE

    walk_share = WALK_SHARE if walk_share is None else walk_share
    sys.path.insert(0, str(ROOT / "tests"))
    from nvml_stub.build import build_stub, stub_env

    rounds = max(60, rounds // 60 * 60)  # whole minutes: the slowest tier (total HBM) runs every 60 s
    with memory_tmpdir() as tmp:  # in memory, as sysfs and /proc are (proc_usage.memory_tmpdir)
        root, tree = pathlib.Path(tmp), filesystem(tmp)
        build_tree(root, processes)
        lib = build_stub(root / "nvml")
        server = subprocess.Popen([sys.executable, str(ROOT / "tests/tpu_standin.py"), str(DEVICES),
                                   *(["--busy"] * busy)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            address = server.stdout.readline().strip()
            before = uptime()
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(root), address, str(rounds), str(walk_share), str(cadence),
                 "busy" if busy else "idle", *(["--profile"] * profile)],
                env=stub_env(lib, gpus=str(DEVICES), nvlink=str(LINKS)), capture_output=True, text=True, check=True,
            )
        finally:
            server.kill()
            server.wait()
        arrivals = json.loads(subprocess.run(
            [sys.executable, __file__, "--latency", str(root), str(rounds), str(walk_share)],
            capture_output=True, text=True, check=True).stdout)
    result = json.loads(done.stdout)
    if profile:
        print(done.stderr)
    report(result["times"], result["process"], rounds,
           f"{processes} processes x 10 fds, walk share {walk_share}, tree on {tree}", before, cadence, busy)
    walks = result["walks"]
    print(f"Intel fd walks: {len(walks)}, {summary(walks)['mean'] / 1e6 if walks else 0:.3f} ms per walking tick "
          f"(mean); period after the last walk {result['period']:.1f} s")
    ticks = arrivals["latencies"]
    print(f"discovery: {len(ticks)} new clients (one every {ARRIVAL_TICKS} ticks), ticks from the open to the first "
          f"count (1: the next tick): mean {statistics.mean(ticks):.1f}, median {statistics.median(ticks):g}, max "
          f"{max(ticks)}; {arrivals['walks']} walks in {rounds} ticks")
    print(f"measured: {pathlib.Path(sys.modules['tracklab_sysmon'].__file__ or '').parent}")


def report(times: dict[str, list[int]], process: float, rounds: int, host: str, before: str, cadence: float,
           busy: bool) -> None:
    pace = f"{cadence:g} s of real time apart" if cadence else "back to back"
    pace += ", every source's values moving each tick" if busy else ", idle (values repeat)"
    print(f"All new sources at {DEVICES} devices, {rounds} ticks (1 s apart on their clock, {pace}), ms of thread CPU "
          f"per tick; /proc of {host}; commit {commit()}")
    print(f"uptime before: {before}")
    print(f"{'part':<11} {'mean':>7} {'median':>7} {'p99':>7}")
    together = [sum(tick) for tick in zip(*times.values(), strict=True)]
    for name, ns in [*times.items(), ("together", together)]:
        s = summary([v / 1e6 for v in ns])
        print(f"{name:<11} {s['mean']:7.3f} {s['median']:7.3f} {s['p99']:7.3f}")
    mean = summary(together)["mean"] / 1e6
    verdict = "met" if mean <= 1.0 else f"missed by {mean - 1.0:.3f} ms"
    between = ", and between the ticks" if cadence else ""
    print(f"process CPU per tick (every thread{between}): {process / 1e6:.3f} ms")
    print(f"target together <= 1 ms (mean): {verdict}")
    print(f"uptime after: {uptime()}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), float(sys.argv[6]),
              sys.argv[8:] == ["--profile"], sys.argv[7] == "busy")
    elif sys.argv[1:2] == ["--latency"]:
        latency_child(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--processes", type=int, default=300)
        parser.add_argument("--rounds", type=int, default=1200)
        parser.add_argument("--walk-share", type=float, default=None)
        parser.add_argument("--cadence", type=float, default=0.0)
        parser.add_argument("--profile", action="store_true")
        parser.add_argument("--idle", action="store_true", help="nothing moves between ticks (records are reused)")
        args = parser.parse_args()
        run(args.processes, args.rounds, args.walk_share, args.profile, args.cadence, not args.idle)
