"""What the container section (and host PSI) adds to a tick: container+pressure collect() vs a whole tick.

Each round times N ticks of a sampler without the two collectors, N ticks with them, N calls of the two
collectors alone and N JSON encodings of their two sections, in rotating order so machine noise lands on all;
the table gives the median per call over rounds and the spread. The share printed at the end is the direct
cost (collect, and collect + JSON) over a whole tick; the difference of the two tick rows says the same more
noisily. Usage: bench_container.py [--rounds 9] [--samples 300] [--cgroup auto|self|PATH]
[--tree DIR (a fixture tree with proc/ and sys/; default: this machine)]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Callable

from tracklab_sysmon import wire
from tracklab_sysmon.collectors import Collector, default_collectors
from tracklab_sysmon.collectors.container import ContainerCollector, HostPressureCollector
from tracklab_sysmon.sampler import Sampler


def _sampler(collectors: tuple[Collector, ...]) -> Sampler:
    sampler = Sampler(collectors, node_id="bench", interval=3600.0)
    asyncio.run(sampler.prime())
    return sampler


def _ticks(sampler: Sampler, samples: int) -> Callable[[], float]:
    async def run() -> float:
        started = time.perf_counter()
        for _ in range(samples):
            await sampler.tick()
        return (time.perf_counter() - started) / samples

    return lambda: asyncio.run(run())


def _collects(collectors: tuple[Collector, ...], samples: int) -> Callable[[], float]:
    def run() -> float:
        started = time.perf_counter()
        for i in range(samples):
            for collector in collectors:
                collector.collect(float(i))
        return (time.perf_counter() - started) / samples

    return run


def _encodes(sampler: Sampler, samples: int) -> Callable[[], float]:
    """JSON of the two sections alone: what the tick spends on them after collecting."""
    snap = sampler.latest
    assert snap is not None and snap.container is not None

    def run() -> float:
        started = time.perf_counter()
        for _ in range(samples):
            wire.encode({"container": wire.container_to_wire(snap.container),
                         "pressure": wire.pressure_to_wire(snap.pressure) if snap.pressure else None})
        return (time.perf_counter() - started) / samples

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--cgroup", default="auto")
    parser.add_argument("--tree", help="a captured tree (proc/ and sys/) instead of this machine")
    args = parser.parse_args()
    proc, sys_root = ("/proc", "/sys")
    if args.tree:
        proc, sys_root = os.path.join(args.tree, "proc"), os.path.join(args.tree, "sys")
    every = default_collectors(proc, sys_root, statvfs=os.statvfs if not args.tree else None,
                               host_gpus=False, cgroup=args.cgroup)
    base = tuple(c for c in every if not isinstance(c, ContainerCollector | HostPressureCollector))
    extra: tuple[Collector, ...] = (ContainerCollector(proc, sys_root, args.cgroup), HostPressureCollector(proc))
    for collector in extra:
        collector.collect(0.0)  # fails here, loudly, if the tree has no cgroup or no PSI to describe
    with_sections = _sampler(every)
    asyncio.run(with_sections.tick())
    contenders = {
        "tick without container/pressure": _ticks(_sampler(base), args.samples),
        "tick with container/pressure": _ticks(with_sections, args.samples),
        "container+pressure collect() alone": _collects(extra, args.samples),
        "container+pressure JSON alone": _encodes(with_sections, args.samples),
    }
    results: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_no in range(args.rounds):
        for name in names[round_no % len(names):] + names[:round_no % len(names)]:
            results[name].append(contenders[name]() * 1e6)
    print(f"{'contender':38} {'median µs':>10} {'min-max µs':>16}")
    for name, values in results.items():
        print(f"{name:38} {statistics.median(values):10.1f} {min(values):7.1f}-{max(values):<8.1f}")
    alone = statistics.median(results["container+pressure collect() alone"])
    encoded = statistics.median(results["container+pressure JSON alone"])
    tick = statistics.median(results["tick with container/pressure"])
    print(f"container+pressure share of a tick: {100 * alone / tick:.1f} % collecting, "
          f"{100 * (alone + encoded) / tick:.1f} % with their JSON")


if __name__ == "__main__":
    main()
