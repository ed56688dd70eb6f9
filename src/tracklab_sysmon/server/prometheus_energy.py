"""The energy ledger and Intel GPU engines and clocks as Prometheus families, in base units, from typed snapshots."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..model import IntelDetails, Snapshot

PREFIX = "tracklab_sysmon_"
_GPU_LABELS = ["node_id", "gpu", "uuid", "vendor"]


def energy_metrics(snapshots: Iterable[Snapshot]) -> Iterator[Metric]:
    """Joule counters of every GPU and RAPL zone, and the Intel engine and clock gauges (families always declared)."""
    snaps = list(snapshots)
    gpu = CounterMetricFamily(PREFIX + "gpu_energy_joules_total",
                              "Energy the GPU used, as its driver counts it (NVML: since the driver loaded).",
                              labels=_GPU_LABELS, unit="joules")
    rapl = CounterMetricFamily(PREFIX + "rapl_energy_joules_total",
                               "Energy of a RAPL zone (package, core, uncore, dram, psys); zones nest: sum only "
                               "the package and dram domains.", labels=["node_id", "zone", "domain"], unit="joules")
    for snap in snaps:
        for g in snap.energy.gpus if snap.energy else ():
            gpu.add_metric([snap.node_id, str(g.id), g.uuid or "", g.vendor or ""], g.joules)
        for z in snap.energy.cpu if snap.energy else ():
            rapl.add_metric([snap.node_id, z.zone, z.domain], z.joules)
    yield gpu
    yield rapl
    yield from _intel_gauges(snaps)


def _intel_gauges(snaps: list[Snapshot]) -> Iterator[Metric]:
    engines = GaugeMetricFamily(PREFIX + "gpu_engine_utilization_ratio",
                                "Busy share of one engine class over the last interval, summed over DRM clients.",
                                labels=[*_GPU_LABELS, "engine"], unit="ratio")
    clocks = GaugeMetricFamily(PREFIX + "gpu_frequency_hertz",
                               "Graphics clock: the one it runs at (actual) and the highest allowed (max).",
                               labels=[*_GPU_LABELS, "kind"], unit="hertz")
    for snap in snaps:
        for acc in snap.accelerators:
            details = acc.details
            if not isinstance(details, IntelDetails) or details.readings is None:
                continue
            labels = [snap.node_id, str(acc.id), acc.uuid or "", acc.vendor or ""]
            for use in details.readings.engines:
                if use.utilization is not None:
                    engines.add_metric([*labels, use.engine], round(use.utilization / 100, 9))
            frequency = details.readings.frequency
            for kind, mhz in (("actual", frequency.actual), ("max", frequency.max)):
                if mhz is not None:
                    clocks.add_metric([*labels, kind], mhz * 1e6)
    yield engines
    yield clocks
