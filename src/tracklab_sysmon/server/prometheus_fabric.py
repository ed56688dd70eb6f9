"""The fabric section (NVLink, InfiniBand/RoCE) and MIG profiling as Prometheus families, in base units.

Data and errors are `*_total` counters (rates are PromQL's job, as for network interfaces); link speed
and port rate are gauges in bytes per second (the snapshot keeps bits per second, as the hardware
is rated); state is a 0/1 gauge. Every family is declared even when no node has the source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from ..model import InfinibandErrors, InfinibandPort, MigProfiling, NvlinkErrors, NvlinkLink, NvmlDetails, Snapshot

PREFIX = "tracklab_sysmon_"
_NVLINK = ["node_id", "gpu", "uuid", "link"]
_PORT = ["node_id", "device", "port"]
_MIG = ["node_id", "gpu", "uuid", "mig_uuid", "gpu_instance_id"]

_NVLINK_COUNTERS: tuple[tuple[str, str, Callable[[NvlinkLink], int | None]], ...] = (
    ("nvlink_transmit_bytes_total", "Payload bytes sent over the NVLink.", lambda n: n.tx_bytes),
    ("nvlink_receive_bytes_total", "Payload bytes received over the NVLink.", lambda n: n.rx_bytes),
)
_PORT_COUNTERS: tuple[tuple[str, str, str, Callable[[InfinibandPort], int | None]], ...] = (
    ("infiniband_transmit_bytes_total", "Bytes sent by the port (port_xmit_data x 4).", "bytes",
     lambda p: p.tx_bytes),
    ("infiniband_receive_bytes_total", "Bytes received by the port (port_rcv_data x 4).", "bytes",
     lambda p: p.rx_bytes),
    ("infiniband_transmit_packets_total", "Packets sent by the port.", "", lambda p: p.tx_packets),
    ("infiniband_receive_packets_total", "Packets received by the port.", "", lambda p: p.rx_packets),
)
_MIG_GAUGES = (
    ("gpu_mig_graphics_active_ratio", "Share of time the MIG GPU instance's graphics engine was busy (DCGM).",
     "graphics_active"),
    ("gpu_mig_sm_active_ratio", "Share of time at least one warp was active on the instance's SMs (DCGM).",
     "sm_active"),
    ("gpu_mig_dram_active_ratio", "Share of cycles the instance's memory interface was busy (DCGM).", "dram_active"),
)


def fabric_metrics(snapshots: Iterable[Snapshot]) -> Iterator[Metric]:
    """Every NVLink, InfiniBand and MIG family for these snapshots."""
    snaps = list(snapshots)
    links = [(s.node_id, n) for s in snaps if s.fabric and s.fabric.nvlink for n in s.fabric.nvlink.links]
    ports = [(s.node_id, p) for s in snaps if s.fabric and s.fabric.infiniband for p in s.fabric.infiniband.ports]
    yield from _nvlink(links)
    yield from _infiniband(ports)
    yield from _mig(snaps)


def _nvlink(links: list[tuple[str, NvlinkLink]]) -> Iterator[Metric]:
    def labels(node: str, n: NvlinkLink) -> list[str]:
        return [node, str(n.gpu), n.uuid or "", str(n.link)]

    for name, doc, get in _NVLINK_COUNTERS:
        family = CounterMetricFamily(PREFIX + name, doc, labels=_NVLINK, unit="bytes")
        for node, link in links:
            _add(family, labels(node, link), get(link))
        yield family
    errors = CounterMetricFamily(PREFIX + "nvlink_errors_total", "NVLink errors by kind since the driver loaded.",
                                 labels=[*_NVLINK, "error"])
    up = GaugeMetricFamily(PREFIX + "nvlink_up", "1 while the NVLink is active, 0 when inactive or asleep.",
                           labels=_NVLINK)
    speed = GaugeMetricFamily(PREFIX + "nvlink_speed_bytes_per_second", "NVLink speed per direction.",
                              labels=_NVLINK)
    for node, link in links:
        for kind in fields(NvlinkErrors):
            _add(errors, [*labels(node, link), kind.name], getattr(link.errors, kind.name))
        _add(up, labels(node, link), None if link.state is None else float(link.state == "active"))
        _add(speed, labels(node, link), link.speed / 8 if link.speed is not None else None)
    yield from (errors, up, speed)


def _infiniband(ports: list[tuple[str, InfinibandPort]]) -> Iterator[Metric]:
    def labels(node: str, p: InfinibandPort) -> list[str]:
        return [node, p.device, str(p.port)]

    for name, doc, unit, get in _PORT_COUNTERS:
        family = CounterMetricFamily(PREFIX + name, doc, labels=_PORT, unit=unit)
        for node, port in ports:
            _add(family, labels(node, port), get(port))
        yield family
    errors = CounterMetricFamily(PREFIX + "infiniband_port_errors_total",
                                 "The port's error counters (counters/ files), by counter.", labels=[*_PORT, "error"])
    hw = CounterMetricFamily(PREFIX + "infiniband_hw_events_total",
                             "The driver's own port counters (hw_counters/), under the driver's names.",
                             labels=[*_PORT, "counter"])
    up = GaugeMetricFamily(PREFIX + "infiniband_port_up", "1 while the port's state is ACTIVE, else 0.", labels=_PORT)
    rate = GaugeMetricFamily(PREFIX + "infiniband_rate_bytes_per_second",
                             "The port's link rate (active width x active speed).", labels=_PORT)
    info = InfoMetricFamily(PREFIX + "infiniband_port", "Link layer and states of the port.", labels=_PORT)
    for node, port in ports:
        for kind in fields(InfinibandErrors):
            _add(errors, [*labels(node, port), kind.name], getattr(port.errors, kind.name))
        for counter in port.hw_counters:
            _add(hw, [*labels(node, port), counter.name], counter.value)
        _add(up, labels(node, port), None if port.state is None else float(port.state == "active"))
        _add(rate, labels(node, port), port.rate / 8 if port.rate is not None else None)
        info.add_metric(labels(node, port), {"link_layer": port.link_layer or "", "state": port.state or "",
                                             "physical_state": port.physical_state or ""})
    yield from (errors, hw, up, rate, info)


def _mig(snaps: list[Snapshot]) -> Iterator[Metric]:
    rows: list[tuple[list[str], MigProfiling]] = [
        ([s.node_id, str(a.id), a.uuid or "", i.uuid or "", _text(i.gpu_instance_id)], i.profiling)
        for s in snaps for a in s.accelerators
        if isinstance(a.details, NvmlDetails) and a.details.readings and a.details.readings.mig
        for i in a.details.readings.mig.instances if i.profiling is not None
    ]
    for name, doc, key in _MIG_GAUGES:
        family = GaugeMetricFamily(PREFIX + name, doc, labels=_MIG, unit="ratio")
        for labels, profiling in rows:
            value = getattr(profiling, key)
            _add(family, labels, round(value / 100, 9) if value is not None else None)
        yield family


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def _add(family: CounterMetricFamily | GaugeMetricFamily, labels: list[str], value: float | int | None) -> None:
    if value is not None:
        family.add_metric(labels, float(value))
