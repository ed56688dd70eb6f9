"""Per-tick CPU of every new accelerator and fabric source together at 8 devices, beside each part.

One child process, on the stand-in libnvidia-ml.so (8 GPUs x 18 NVLinks), ticks in turn, with the clock
advancing 1 s per tick:
  intel       IntelCollector.collect on 8 xe cards (bench_intel_energy's tree: /proc of PROCESSES x 10 fds),
              fd walks at their real period (10 s, stretched by the walk share), so walks are in the mean
  rapl        RaplCollector.collect (6 zones)
  ledger      EnergyLedger.complete on that tick's 8 Intel GPUs and 6 zones
  tpu         TpuCollector.collect against the stand-in metrics service (8 devices) in a process of its own:
              one gRPC call a tick (duty cycle), used HBM every 5 s, total HBM every 60 s
  nvlink      NvlinkCollector.collect, 8 GPUs x 18 links (state, speed and errors on their 5 s tier)
  infiniband  InfinibandCollector.collect on 8 copies of the fixture's HDR port (5 s and 30 s tiers)
  together    the sum of the parts on the same tick
Each part is timed by the calling thread's CPU clock (CLOCK_THREAD_CPUTIME_ID, ns); ROUNDS is a multiple of
60 s, so every slow tier runs a whole number of periods and the mean is what a tick costs on average.
`process` is the child's CPU over all the ticks, per tick: gRPC's own threads included (the TPU's calls
wake its poller thread), which the thread clock leaves out. The target: together <= 1 ms at 8 devices.
Usage: bench_accel_all.py [--processes 300] [--rounds 1200] [--walk-share S] [--profile]; bench_gpu.py runs
it at its end. --walk-share sets IntelCollector's walk share (CPU seconds of fd walks per second;
intel_engines.WALK_SHARE by default), which bounds what the walks add to the mean on a host of many fds; the walk
period it led to (how late a new GPU client may be seen) is printed.
--profile runs the ticks once more under cProfile and prints the functions that took the most time.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from proc_usage import commit, summary, uptime

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEVICES = 8
LINKS = 18
PARTS = ("intel", "rapl", "ledger", "tpu", "nvlink", "infiniband")


def build_tree(root: pathlib.Path, processes: int) -> None:
    """8 xe cards, the RAPL zones and a /proc (bench_intel_energy), and 8 InfiniBand ports under one sys root."""
    from bench_intel_energy import build_tree as intel_tree

    intel_tree(root, processes, 10)
    source = ROOT / "tests/fixtures/infiniband-hca/sys/class/infiniband/mlx5_0"
    for i in range(DEVICES):
        shutil.copytree(source, root / f"sys/class/infiniband/mlx5_{i}")


def child(root: str, address: str, rounds: int, walk_share: float, profile: bool = False) -> None:
    """Runs on the stand-in NVML; prints each part's per-tick thread-CPU ns and the process's CPU as JSON."""
    from tracklab_sysmon.collectors.infiniband import InfinibandCollector
    from tracklab_sysmon.collectors.intel import IntelCollector
    from tracklab_sysmon.collectors.nvlink import NvlinkCollector
    from tracklab_sysmon.collectors.rapl import RaplCollector
    from tracklab_sysmon.collectors.tpu import TpuCollector
    from tracklab_sysmon.energy import EnergyLedger
    from tracklab_sysmon.model import EnergySample, Snapshot

    sys_root, proc_root = f"{root}/sys", f"{root}/proc"
    intel = IntelCollector(sys_root, proc_root, walk_share=walk_share)
    rapl, ledger = RaplCollector(sys_root), EnergyLedger()
    tpu, nvlink, infiniband = TpuCollector("/nonexistent", address=address), NvlinkCollector(), \
        InfinibandCollector(sys_root)
    out: dict[str, object] = {}

    def energy(now: float) -> object:
        zones = out["rapl"]
        snapshot = Snapshot("n", 0, accelerators=out["intel"],  # type: ignore[arg-type]
                            energy=zones if isinstance(zones, EnergySample) else None)
        return ledger.complete(snapshot, now)

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
    clock = time.thread_time_ns
    process0 = time.process_time_ns()
    walks: list[int] = []  # the Intel ticks that walked every process's fds
    for n in range(1, rounds + 1):
        for name, call in calls.items():
            t0 = clock()
            out[name] = call(float(n))
            times[name].append(clock() - t0)
        if intel._meter.walk._walked_at == float(n):
            walks.append(times["intel"][-1])
    process = (time.process_time_ns() - process0) / rounds
    period = intel._meter.walk.period  # after the last walk: its CPU cost / the walk share (10 s at least)
    if profile:  # the same ticks again, under the profiler (its overhead inflates small calls): on stderr
        import cProfile
        import pstats

        with cProfile.Profile(time.thread_time) as profiler:  # CPU of this thread, as the table
            for n in range(rounds + 1, 2 * rounds + 1):
                for call in calls.values():
                    call(float(n))
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)
    tpu.close()
    print(json.dumps({"times": times, "process": process, "period": period, "walks": walks}))


def run(processes: int = 300, rounds: int = 1200, walk_share: float | None = None, profile: bool = False) -> None:
    from tracklab_sysmon.collectors.intel_engines import WALK_SHARE

    walk_share = WALK_SHARE if walk_share is None else walk_share
    sys.path.insert(0, str(ROOT / "tests"))
    from nvml_stub.build import build_stub, stub_env

    rounds = max(60, rounds // 60 * 60)  # whole minutes: the slowest tier (total HBM) runs every 60 s
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        build_tree(root, processes)
        lib = build_stub(root / "nvml")
        server = subprocess.Popen([sys.executable, str(ROOT / "tests/tpu_standin.py"), str(DEVICES)],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            address = server.stdout.readline().strip()
            before = uptime()
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(root), address, str(rounds), str(walk_share),
                 *(["--profile"] * profile)],
                env=stub_env(lib, gpus=str(DEVICES), nvlink=str(LINKS)), capture_output=True, text=True, check=True,
            )
        finally:
            server.kill()
            server.wait()
    result = json.loads(done.stdout)
    if profile:
        print(done.stderr)
    report(result["times"], result["process"], rounds, f"{processes} processes x 10 fds, walk share {walk_share}",
           before)
    walks = result["walks"]
    print(f"Intel fd walks: {len(walks)}, {summary(walks)['mean'] / 1e6 if walks else 0:.3f} ms per walking tick "
          f"(mean); period after the last walk {result['period']:.1f} s")


def report(times: dict[str, list[int]], process: float, rounds: int, host: str, before: str) -> None:
    print(f"All new sources at {DEVICES} devices, {rounds} ticks (1 s apart), ms of thread CPU per tick; "
          f"/proc of {host}; commit {commit()}")
    print(f"uptime before: {before}")
    print(f"{'part':<11} {'mean':>7} {'median':>7} {'p99':>7}")
    together = [sum(tick) for tick in zip(*times.values(), strict=True)]
    for name, ns in [*times.items(), ("together", together)]:
        s = summary([v / 1e6 for v in ns])
        print(f"{name:<11} {s['mean']:7.3f} {s['median']:7.3f} {s['p99']:7.3f}")
    mean = summary(together)["mean"] / 1e6
    verdict = "met" if mean <= 1.0 else f"missed by {mean - 1.0:.3f} ms"
    print(f"process CPU per tick (gRPC threads included): {process / 1e6:.3f} ms")
    print(f"target together <= 1 ms (mean): {verdict}")
    print(f"uptime after: {uptime()}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6:] == ["--profile"])
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--processes", type=int, default=300)
        parser.add_argument("--rounds", type=int, default=1200)
        parser.add_argument("--walk-share", type=float, default=None)
        parser.add_argument("--profile", action="store_true")
        args = parser.parse_args()
        run(args.processes, args.rounds, args.walk_share, args.profile)
