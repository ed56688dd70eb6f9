"""GET /metrics: every served node's latest typed snapshot as Prometheus (or OpenMetrics) text; nothing collected."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from .. import __version__, hotpath
from ..model import AcceleratorSample, CpuTimes, DiskDeviceSample, InterfaceSample, Snapshot
from ..sampler import CollectorState
from . import keys
from .peers import PEERS, served_snapshots
from .prometheus_accel import accelerator_extras
from .prometheus_container import container_metrics
from .prometheus_energy import energy_metrics
from .prometheus_fabric import fabric_metrics

PREFIX = "tracklab_sysmon_"
# A degraded collector ran and published what it could read (some values null, its lastError says
# why): as a run it succeeded, so 1, and its null values are omitted like any other. Only a run that
# raised is 0; unavailable/pending collectors report no success sample.
_SUCCESS: dict[CollectorState, float] = {"ok": 1.0, "degraded": 1.0, "error": 0.0}

Value = int | float | None  # a reading as the record holds it; None: not available (no sample)
D = TypeVar("D", DiskDeviceSample, InterfaceSample)

# Per-node scalars: (name, help, unit, getter on the snapshot, divisor to base units; dividing rounds exactly once).
_SCALARS: tuple[tuple[str, str, str, Callable[[Snapshot], Value], float], ...] = (
    ("snapshot_timestamp_seconds", "When the node took its latest snapshot.", "seconds",
     lambda s: s.timestamp, 1000.0),
    ("cpu_usage_ratio", "Busy share of all CPUs over the last interval.", "ratio",
     lambda s: s.cpu.overall if s.cpu else None, 100.0),
    ("processes", "Live processes.", "", lambda s: s.cpu.processes if s.cpu else None, 1.0),
    ("threads", "Threads (kernel scheduling entities).", "", lambda s: s.cpu.threads if s.cpu else None, 1.0),
    ("cpu_temperature_celsius", "CPU package temperature.", "celsius",
     lambda s: s.cpu.temperature if s.cpu else None, 1.0),
    ("memory_total_bytes", "Physical memory.", "bytes", lambda s: s.memory.total if s.memory else None, 1.0),
    ("memory_used_bytes", "Memory in use: total minus available.", "bytes",
     lambda s: s.memory.used if s.memory else None, 1.0),
    ("memory_available_bytes", "Memory available without swapping.", "bytes",
     lambda s: s.memory.available if s.memory else None, 1.0),
    ("swap_total_bytes", "Swap space.", "bytes", lambda s: s.memory.swap.total if s.memory else None, 1.0),
    ("swap_used_bytes", "Swap in use.", "bytes", lambda s: s.memory.swap.used if s.memory else None, 1.0),
    ("filesystem_size_bytes", "Size of the physical file systems, each device once.", "bytes",
     lambda s: s.disk.total if s.disk else None, 1.0),
    ("filesystem_used_bytes", "Used space of the physical file systems.", "bytes",
     lambda s: s.disk.used if s.disk else None, 1.0),
    ("tcp_connections_established", "Established TCP connections (v4 and v6).", "",
     lambda s: s.network.connections if s.network else None, 1.0),
)

# CPU modes: (mode label, getter on the core's times).
_MODES: tuple[tuple[str, Callable[[CpuTimes], float]], ...] = (
    ("user", lambda t: t.user), ("nice", lambda t: t.nice), ("system", lambda t: t.system),
    ("idle", lambda t: t.idle), ("iowait", lambda t: t.iowait), ("irq", lambda t: t.irq),
    ("softirq", lambda t: t.softirq), ("steal", lambda t: t.steal),
)

# Per-device counters: (name, help, unit, getter on the device).
_DISK_COUNTERS: tuple[tuple[str, str, str, Callable[[DiskDeviceSample], Value]], ...] = (
    ("disk_read_bytes_total", "Bytes read from the whole disk.", "bytes", lambda d: d.read_bytes),
    ("disk_written_bytes_total", "Bytes written to the whole disk.", "bytes", lambda d: d.write_bytes),
    ("disk_reads_completed_total", "Reads completed.", "", lambda d: d.reads),
    ("disk_writes_completed_total", "Writes completed.", "", lambda d: d.writes),
)
_INTERFACE_COUNTERS: tuple[tuple[str, str, str, Callable[[InterfaceSample], Value]], ...] = (
    ("network_receive_bytes_total", "Bytes received.", "bytes", lambda i: i.bytes_recv),
    ("network_transmit_bytes_total", "Bytes sent.", "bytes", lambda i: i.bytes_sent),
    ("network_receive_packets_total", "Packets received.", "", lambda i: i.packets_recv),
    ("network_transmit_packets_total", "Packets sent.", "", lambda i: i.packets_sent),
)

# Per-accelerator gauges: (name, help, unit, getter on the device, divisor).
_GPU_GAUGES: tuple[tuple[str, str, str, Callable[[AcceleratorSample], Value], float], ...] = (
    ("gpu_utilization_ratio", "Busy share of the device.", "ratio", lambda a: a.utilization, 100.0),
    ("gpu_memory_used_bytes", "Device memory in use.", "bytes", lambda a: a.memory.used, 1.0),
    ("gpu_memory_total_bytes", "Device memory.", "bytes", lambda a: a.memory.total, 1.0),
    ("gpu_power_watts", "Power draw.", "watts", lambda a: a.power, 1.0),
    ("gpu_temperature_celsius", "Device temperature.", "celsius", lambda a: a.temperature, 1.0),
)


class SnapshotCollector:
    """A prometheus-client custom collector reading the served nodes' latest typed snapshots (nothing decoded)."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        nodes = served_snapshots(self._app)
        yield from _local_metrics(self._app)
        yield from _scalars(nodes)
        yield _cpu_seconds(nodes)
        yield _load(nodes)
        yield from _device_counters(nodes, _DISK_COUNTERS, "device", lambda s: s.disk.devices if s.disk else ())
        yield from _device_counters(
            nodes, _INTERFACE_COUNTERS, "interface", lambda s: s.network.interfaces if s.network else ()
        )
        yield from _gpu_gauges(nodes)
        yield from accelerator_extras(nodes)  # NeuronCore use, Neuron and Gaudi ECC counters
        yield from _peer_metrics(self._app)
        # Typed, from this node's latest snapshot only: peers' container sections are not decoded here.
        latest = self._app[keys.SAMPLER].latest
        yield from container_metrics([latest] if latest is not None else [])
        yield from energy_metrics(nodes)  # every served node: its energy ledger and Intel engines
        yield from fabric_metrics(nodes)  # every served node: the fabric section round-trips from peers


def _scaled(value: float, divisor: float) -> float:
    """value / divisor without binary noise (0.346 ms is 0.000346 s, not 0.00034599999999999995):
    wire values carry at most 3 decimals and divisors are at most 1000, so 9 decimals keep every digit."""
    return value if divisor == 1.0 else round(value / divisor, 9)


def _local_metrics(app: web.Application) -> Iterator[Metric]:
    sampler = app[keys.SAMPLER]
    node = sampler.node_id
    info = InfoMetricFamily(PREFIX + "build", "Version and hot-path backend of this node's service.",
                            labels=["node_id"])
    info.add_metric([node], {"version": __version__, "backend": hotpath.BACKEND})
    yield info
    success = GaugeMetricFamily(PREFIX + "collector_success", "1 if the collector's last run succeeded.",
                                labels=["node_id", "collector"])
    duration = GaugeMetricFamily(PREFIX + "collector_duration_seconds", "Duration of the collector's last run.",
                                 labels=["node_id", "collector"], unit="seconds")
    for name, status in sampler.status.items():
        if status.state in _SUCCESS:
            success.add_metric([node, name], _SUCCESS[status.state])
        if status.last_duration_ms is not None:
            duration.add_metric([node, name], _scaled(status.last_duration_ms, 1000.0))
    yield success
    yield duration


def _scalars(nodes: list[Snapshot]) -> Iterator[Metric]:
    for name, doc, unit, get, divisor in _SCALARS:
        family = GaugeMetricFamily(PREFIX + name, doc, labels=["node_id"], unit=unit)
        for snap in nodes:
            value = get(snap)
            if value is not None:
                family.add_metric([snap.node_id], _scaled(float(value), divisor))
        yield family


def _cpu_seconds(nodes: list[Snapshot]) -> Metric:
    family = CounterMetricFamily(PREFIX + "cpu_seconds_total", "Seconds each CPU spent in each mode.",
                                 labels=["node_id", "cpu", "mode"], unit="seconds")
    for snap in nodes:
        for core in snap.cpu.cores if snap.cpu else ():
            for mode, get in _MODES:
                family.add_metric([snap.node_id, str(core.id), mode], float(get(core.times)))
    return family


def _load(nodes: list[Snapshot]) -> Metric:
    family = GaugeMetricFamily(PREFIX + "load_average", "Run-queue load average over 1, 5 and 15 minutes.",
                               labels=["node_id", "window"])
    for snap in nodes:
        loads = (snap.cpu.load_average if snap.cpu else None) or ()
        for window, value in zip(("1m", "5m", "15m"), loads, strict=False):
            family.add_metric([snap.node_id, window], float(value))
    return family


def _device_counters(
    nodes: list[Snapshot],
    table: tuple[tuple[str, str, str, Callable[[D], Value]], ...],
    label: str,
    devices: Callable[[Snapshot], Iterable[D]],
) -> Iterator[Metric]:
    for name, doc, unit, get in table:
        family = CounterMetricFamily(PREFIX + name, doc, labels=["node_id", label], unit=unit)
        for snap in nodes:
            for device in devices(snap):
                value = get(device)
                if value is not None:
                    family.add_metric([snap.node_id, device.name], float(value))
        yield family


def _gpu_gauges(nodes: list[Snapshot]) -> Iterator[Metric]:
    for name, doc, unit, get, divisor in _GPU_GAUGES:
        # `vendor` tells apart devices that share an index (NVIDIA 0, TPU 0, Gaudi 0 on one node).
        family = GaugeMetricFamily(PREFIX + name, doc, labels=["node_id", "gpu", "uuid", "vendor"], unit=unit)
        for snap in nodes:
            for device in snap.accelerators:
                value = get(device)
                if value is not None:
                    family.add_metric([snap.node_id, str(device.id), device.uuid or "", device.vendor or ""],
                                      _scaled(float(value), divisor))
        yield family


def _peer_metrics(app: web.Application) -> Iterator[Metric]:
    peers = app[PEERS].peers if PEERS in app else []
    if not peers:
        return
    up = GaugeMetricFamily(PREFIX + "peer_up", "1 while this node receives the peer's snapshots.",
                           labels=["node_id", "url"])
    seen = GaugeMetricFamily(PREFIX + "peer_last_seen_timestamp_seconds", "When the peer's last snapshot arrived.",
                             labels=["node_id", "url"], unit="seconds")
    for peer in peers:
        labels = [peer.node_id or "", peer.url]  # never the URL with its credentials
        up.add_metric(labels, 1.0 if peer.status == "up" else 0.0)
        if peer.last_seen is not None:
            seen.add_metric(labels, _scaled(peer.last_seen, 1000.0))
    yield up
    yield seen


# ---------------------------------------------------------------- app wiring


def exposition_handler(app: web.Application) -> Handler:
    """The /metrics handler over a private registry (no process/GC globals) holding one SnapshotCollector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(app))
    return make_aiohttp_handler(registry)
