"""GET /metrics: every served node's latest snapshot as Prometheus (or OpenMetrics) text; nothing is collected at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client.aiohttp import make_aiohttp_handler
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from .. import __version__, hotpath, wire
from . import keys
from .peers import PEERS, node_snapshots
from .prometheus_container import container_metrics

PREFIX = "tracklab_sysmon_"
_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_SUCCESS = {"ok": 1.0, "error": 0.0}  # unavailable/pending collectors report no success sample

# Per-node scalars: (name, help, unit, wire path, divisor to base units; dividing rounds exactly once).
_SCALARS: tuple[tuple[str, str, str, tuple[str, ...], float], ...] = (
    ("snapshot_timestamp_seconds", "When the node took its latest snapshot.", "seconds", ("timestamp",), 1000.0),
    ("cpu_usage_ratio", "Busy share of all CPUs over the last interval.", "ratio", ("cpu", "overall"), 100.0),
    ("processes", "Live processes.", "", ("cpu", "processes"), 1.0),
    ("threads", "Threads (kernel scheduling entities).", "", ("cpu", "threads"), 1.0),
    ("cpu_temperature_celsius", "CPU package temperature.", "celsius", ("cpu", "temperature"), 1.0),
    ("memory_total_bytes", "Physical memory.", "bytes", ("memory", "total"), 1.0),
    ("memory_used_bytes", "Memory in use: total minus available.", "bytes", ("memory", "used"), 1.0),
    ("memory_available_bytes", "Memory available without swapping.", "bytes", ("memory", "available"), 1.0),
    ("swap_total_bytes", "Swap space.", "bytes", ("memory", "swap", "total"), 1.0),
    ("swap_used_bytes", "Swap in use.", "bytes", ("memory", "swap", "used"), 1.0),
    ("filesystem_size_bytes", "Size of the physical file systems, each device once.", "bytes", ("disk", "total"), 1.0),
    ("filesystem_used_bytes", "Used space of the physical file systems.", "bytes", ("disk", "used"), 1.0),
    ("tcp_connections_established", "Established TCP connections (v4 and v6).", "", ("network", "connections"), 1.0),
)

# Per-device counters: (name, help, unit, wire section, list key, label, field).
_DEVICE_COUNTERS: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("disk_read_bytes_total", "Bytes read from the whole disk.", "bytes", "disk", "devices", "device", "readBytes"),
    ("disk_written_bytes_total", "Bytes written to the whole disk.", "bytes", "disk", "devices", "device", "writeBytes"),
    ("disk_reads_completed_total", "Reads completed.", "", "disk", "devices", "device", "reads"),
    ("disk_writes_completed_total", "Writes completed.", "", "disk", "devices", "device", "writes"),
    ("network_receive_bytes_total", "Bytes received.", "bytes", "network", "interfaces", "interface", "bytesRecv"),
    ("network_transmit_bytes_total", "Bytes sent.", "bytes", "network", "interfaces", "interface", "bytesSent"),
    ("network_receive_packets_total", "Packets received.", "", "network", "interfaces", "interface", "packetsRecv"),
    ("network_transmit_packets_total", "Packets sent.", "", "network", "interfaces", "interface", "packetsSent"),
)

# Per-accelerator gauges: (name, help, unit, wire path inside the device, divisor).
_GPU_GAUGES: tuple[tuple[str, str, str, tuple[str, ...], float], ...] = (
    ("gpu_utilization_ratio", "Busy share of the device.", "ratio", ("utilization",), 100.0),
    ("gpu_memory_used_bytes", "Device memory in use.", "bytes", ("memory", "used"), 1.0),
    ("gpu_memory_total_bytes", "Device memory.", "bytes", ("memory", "total"), 1.0),
    ("gpu_power_watts", "Power draw.", "watts", ("power",), 1.0),
    ("gpu_temperature_celsius", "Device temperature.", "celsius", ("temperature",), 1.0),
)


class SnapshotCollector:
    """A prometheus-client custom collector reading the app's cached snapshots."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        snapshots = [wire.decode(body) for _, body in node_snapshots(self._app)]
        nodes = [s for s in snapshots if isinstance(s, dict)]
        yield from _local_metrics(self._app)
        yield from _scalars(nodes)
        yield _cpu_seconds(nodes)
        yield _load(nodes)
        yield from _device_counters(nodes)
        yield from _gpu_gauges(nodes)
        yield from _peer_metrics(self._app)
        # Typed, from this node's latest snapshot only: peers' container sections are not decoded here.
        latest = self._app[keys.SAMPLER].latest
        yield from container_metrics([latest] if latest is not None else [])


def _dig(value: Any, path: tuple[str, ...]) -> float | None:
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


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


def _scalars(nodes: list[dict[str, Any]]) -> Iterator[Metric]:
    for name, doc, unit, path, divisor in _SCALARS:
        family = GaugeMetricFamily(PREFIX + name, doc, labels=["node_id"], unit=unit)
        for snap in nodes:
            value = _dig(snap, path)
            if value is not None:
                family.add_metric([snap["node_id"]], _scaled(value, divisor))
        yield family


def _cpu_seconds(nodes: list[dict[str, Any]]) -> Metric:
    family = CounterMetricFamily(PREFIX + "cpu_seconds_total", "Seconds each CPU spent in each mode.",
                                 labels=["node_id", "cpu", "mode"], unit="seconds")
    for snap in nodes:
        for core in (snap.get("cpu") or {}).get("cores") or ():
            for mode in _MODES:
                value = _dig(core, ("times", mode))
                if value is not None:
                    family.add_metric([snap["node_id"], str(core.get("id")), mode], value)
    return family


def _load(nodes: list[dict[str, Any]]) -> Metric:
    family = GaugeMetricFamily(PREFIX + "load_average", "Run-queue load average over 1, 5 and 15 minutes.",
                               labels=["node_id", "window"])
    for snap in nodes:
        loads = (snap.get("cpu") or {}).get("loadAverage") or ()
        for window, value in zip(("1m", "5m", "15m"), loads, strict=False):
            if isinstance(value, int | float):
                family.add_metric([snap["node_id"], window], float(value))
    return family


def _device_counters(nodes: list[dict[str, Any]]) -> Iterator[Metric]:
    for name, doc, unit, section, key, label, field in _DEVICE_COUNTERS:
        family = CounterMetricFamily(PREFIX + name, doc, labels=["node_id", label], unit=unit)
        for snap in nodes:
            for device in (snap.get(section) or {}).get(key) or ():
                value = _dig(device, (field,))
                if value is not None:
                    family.add_metric([snap["node_id"], str(device.get("name"))], value)
        yield family


def _gpu_gauges(nodes: list[dict[str, Any]]) -> Iterator[Metric]:
    for name, doc, unit, path, divisor in _GPU_GAUGES:
        family = GaugeMetricFamily(PREFIX + name, doc, labels=["node_id", "gpu", "uuid"], unit=unit)
        for snap in nodes:
            for device in snap.get("accelerators") or ():
                value = _dig(device, path)
                if value is not None:
                    family.add_metric([snap["node_id"], str(device.get("id")), device.get("uuid") or ""],
                                      _scaled(value, divisor))
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

EXPOSE = web.AppKey("prometheus_handler", Handler)


def setup_prometheus(app: web.Application) -> CollectorRegistry:
    """A private registry (no process/GC globals) holding one SnapshotCollector for this app."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(app))
    app[EXPOSE] = make_aiohttp_handler(registry)
    return registry


async def metrics(request: web.Request) -> web.StreamResponse:
    """GET /metrics; prometheus-client picks text or OpenMetrics from the Accept header."""
    return await request.app[EXPOSE](request)
