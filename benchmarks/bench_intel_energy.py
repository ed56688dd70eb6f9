"""Per-tick cost of the Intel GPU collector, the RAPL collector and the energy ledger at 8 devices.

Builds a tree in a temporary folder: 8 xe cards laid out as tests/fixtures/intel-xe's card0 (hwmon, freq0,
engines, VRAM size), the two-socket RAPL zones of tests/fixtures/rapl, and a /proc of PROCESSES x FDS fds
with `fd/N` links (as a live /proc), 8 of the processes holding one xe client each. Contenders, each timed
over ROUNDS ticks with the clock advancing 1 s per tick:
  intel        IntelCollector.collect between fd walks (the known DRM fds re-read)
  intel-busy   the same where everything moves each tick, as on a host whose GPUs work: every client's render
               cycles and GPU clock, every card's energy and actual frequency are rewritten before each tick
               (untimed), so no record of the tick before can be reused
  intel-walk   IntelCollector.collect on a tick that walks every process's fds (once per 10 s by default)
  rapl         RaplCollector.collect (6 zones)
  ledger       EnergyLedger.complete on a snapshot of 8 Intel GPUs and 6 zones
  encode       the energy section to JSON (wire.energy_to_wire + orjson)
Prints median, p10 and p90 in ms and the amortised total per 1 s tick: intel, one intel-walk per walk
period (10 s, or longer where a walk costs more than WALK_SHARE of a core), rapl, ledger and encode.
Usage: bench_intel_energy.py [--processes 300] [--fds 10] [--rounds 2000]
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import time
from collections.abc import Callable

from proc_usage import filesystem, memory_tmpdir

from tracklab_sysmon import wire
from tracklab_sysmon.collectors.drm_clients import FD_WALK_SECONDS
from tracklab_sysmon.collectors.intel import IntelCollector
from tracklab_sysmon.collectors.intel_engines import WALK_SHARE
from tracklab_sysmon.collectors.rapl import RaplCollector
from tracklab_sysmon.energy import EnergyLedger

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CARDS = 8
REGULAR = "pos:\t0\nflags:\t0100002\nmnt_id:\t25\nino:\t{ino}\n"


def build_tree(root: pathlib.Path, processes: int, fds: int) -> None:
    card = FIXTURES / "intel-xe/sys/class/drm/card0"
    client = (FIXTURES / "intel-xe/proc/700/fdinfo/9").read_text()
    for n in range(CARDS):
        target = root / f"sys/class/drm/card{n}"
        shutil.copytree(card, target)
        slot = f"0000:{0x10 + n:02x}:00.0"
        uevent = target / "device/uevent"
        uevent.write_text(uevent.read_text().replace("0000:03:00.0", slot))
        pid_dir = root / f"proc/{5000 + n}"
        (pid_dir / "fdinfo").mkdir(parents=True)
        (pid_dir / "fd").mkdir()
        (pid_dir / "fdinfo/3").write_text(client.replace("0000:03:00.0", slot))
        os.symlink("/dev/dri/renderD128", pid_dir / "fd/3")
    shutil.copytree(FIXTURES / "rapl/sys", root / "sys", dirs_exist_ok=True)
    for p in range(processes):
        pid_dir = root / f"proc/{1000 + p}"
        (pid_dir / "fdinfo").mkdir(parents=True)
        (pid_dir / "fd").mkdir()
        for fd in range(fds):
            (pid_dir / f"fdinfo/{fd}").write_text(REGULAR.format(ino=fd))
            os.symlink(f"socket:[{p * fds + fd}]", pid_dir / f"fd/{fd}")


def time_ticks(tick: Callable[[float], object], rounds: int,
               before: Callable[[int], object] = lambda n: None) -> list[int]:
    tick(0.0)  # discovery and first readings
    ns = []
    for n in range(1, rounds + 1):
        before(n)
        t0 = time.perf_counter_ns()
        tick(float(n))
        ns.append(time.perf_counter_ns() - t0)
    return ns


def mover(root: pathlib.Path) -> Callable[[int], None]:
    """Rewrites, for tick n, each client's render cycles and GPU clock and each card's energy and frequency."""
    clients = [root / f"proc/{5000 + n}/fdinfo/3" for n in range(CARDS)]
    texts = [path.read_text() for path in clients]
    device = [root / f"sys/class/drm/card{n}/device" for n in range(CARDS)]

    def move(n: int) -> None:
        for k, (path, text) in enumerate(zip(clients, texts, strict=True)):
            text = text.replace("drm-cycles-rcs:\t28257900", f"drm-cycles-rcs:\t{28257900 + n * 10**6 * (k + 1)}")
            path.write_text(text.replace("7655183225", str(7655183225 + n * 10**8)))
        for k, folder in enumerate(device):
            (folder / "hwmon/hwmon2/energy1_input").write_text(f"{52000000 + n * (10**6 + k)}\n")
            (folder / "tile0/gt0/freq0/act_freq").write_text(f"{1000 + (n * 50 + k) % 1800}\n")
    return move


def summary(ns: list[int]) -> tuple[float, float, float]:
    deciles = statistics.quantiles(ns, n=10)
    return statistics.median(ns) / 1e6, deciles[0] / 1e6, deciles[-1] / 1e6


def main(processes: int = 300, fds: int = 10, rounds: int = 2000) -> None:
    with memory_tmpdir() as tmp:  # in memory, as sysfs and /proc are (proc_usage.memory_tmpdir)
        root, tree = pathlib.Path(tmp), filesystem(tmp)
        build_tree(root, processes, fds)
        sys_root, proc_root = str(root / "sys"), str(root / "proc")
        between = IntelCollector(sys_root, proc_root, fd_walk_seconds=1e9)
        walking = IntelCollector(sys_root, proc_root, fd_walk_seconds=0.0, walk_share=None)
        rapl = RaplCollector(sys_root)
        ledger = EnergyLedger()
        gpus, zones = between.collect(0.0), rapl.collect(0.0)
        cpu = zones if not hasattr(zones, "reason") else None
        energy = ledger.section(cpu, gpus, 0.0)
        assert energy is not None and len(energy.gpus) == CARDS and len(energy.cpu) == 6
        times = {
            "intel": time_ticks(between.collect, rounds),
            "intel-busy": time_ticks(IntelCollector(sys_root, proc_root, fd_walk_seconds=1e9).collect, rounds,
                                     mover(root)),
            "intel-walk": time_ticks(walking.collect, max(rounds // 20, 20)),
            "rapl": time_ticks(rapl.collect, rounds),
            "ledger": time_ticks(lambda now: ledger.section(cpu, gpus, now), rounds),
            "encode": time_ticks(lambda now: wire.encode(wire.energy_to_wire(energy)), rounds),
        }
    print(f"Intel GPUs ({CARDS} xe cards), RAPL (6 zones) and the energy ledger per tick; "
          f"/proc of {processes} processes x {fds} fds, tree on {tree}; ms")
    print(f"{'contender':<12} {'median':>8} {'p10':>8} {'p90':>8}")
    medians = {}
    for name, ns in times.items():
        med, p10, p90 = summary(ns)
        medians[name] = med
        print(f"{name:<12} {med:8.3f} {p10:8.3f} {p90:8.3f}")
    # The collector walks every FD_WALK_SECONDS, or less often when a walk costs more than WALK_SHARE of a core.
    period = max(FD_WALK_SECONDS, medians["intel-walk"] / 1e3 / WALK_SHARE)
    total = (medians["intel"] * (1 - 1 / period) + medians["intel-walk"] / period
             + medians["rapl"] + medians["ledger"] + medians["encode"])
    print(f"amortised per 1 s tick (one walk per {period:.0f} s): {total:.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=300)
    parser.add_argument("--fds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    main(args.processes, args.fds, args.rounds)
