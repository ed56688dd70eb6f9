"""Prometheus families for what AWS Neuron and Intel Gaudi devices add to the seed's keys: per-core use and ECC."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..model import EccErrors, HabanaDetails, NeuronDetails, Snapshot

PREFIX = "tracklab_sysmon_"


def accelerator_extras(nodes: list[Snapshot]) -> Iterator[Metric]:
    """`neuroncore_utilization_ratio` per NeuronCore and `accelerator_ecc_errors_total` per device, memory and kind."""
    cores = GaugeMetricFamily(PREFIX + "neuroncore_utilization_ratio", "Busy share of one NeuronCore.",
                              labels=["node_id", "gpu", "core"], unit="ratio")
    ecc = CounterMetricFamily(PREFIX + "accelerator_ecc_errors", "ECC errors the driver counted on the device.",
                              labels=["node_id", "gpu", "vendor", "memory", "kind"])
    for snap in nodes:
        for device in snap.accelerators:
            details, labels = device.details, [snap.node_id, str(device.id)]
            if isinstance(details, NeuronDetails):
                for core in details.cores:
                    if core.utilization is not None:
                        cores.add_metric([*labels, str(core.index)], round(core.utilization / 100.0, 9))
                _add_ecc(ecc, [*labels, "aws", "dram"], details.ecc_errors)
                _add_ecc(ecc, [*labels, "aws", "sram"], details.sram_ecc_errors)
            elif isinstance(details, HabanaDetails):
                _add_ecc(ecc, [*labels, "habana", "hbm"], details.ecc_errors)
    yield cores
    yield ecc


def _add_ecc(family: CounterMetricFamily, labels: list[str], errors: EccErrors) -> None:
    for kind, value in (("corrected", errors.corrected), ("uncorrected", errors.uncorrected)):
        if value is not None:
            family.add_metric([*labels, kind], float(value))
