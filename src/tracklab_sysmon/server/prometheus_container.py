"""The container section and PSI as Prometheus families, in base units, read from typed snapshots."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from ..model import ContainerSample, PressureSample, ResourcePressure, Snapshot

PREFIX = "tracklab_sysmon_"
_Getter = Callable[[ContainerSample], float | int | None]

# (name, help, unit, getter): one sample per node that has a container section.
_GAUGES: tuple[tuple[str, str, str, _Getter], ...] = (
    ("container_cpu_limit_cores", "CPU limit of the cgroup: quota / period, else the cpuset size.", "cores",
     lambda c: c.cpu.limit_cores),
    ("container_cpu_usage_ratio", "CPU used over the last interval as a share of the limit.", "ratio",
     lambda c: _ratio(c.cpu.usage)),
    ("container_memory_current_bytes", "Memory charged to the cgroup.", "bytes", lambda c: c.memory.current),
    ("container_memory_max_bytes", "Memory limit of the cgroup (absent when unlimited).", "bytes",
     lambda c: c.memory.max),
    ("container_memory_high_bytes", "memory.high throttling threshold (absent when unlimited or v1).", "bytes",
     lambda c: c.memory.high),
    ("container_memory_swap_bytes", "Swap used by the cgroup.", "bytes", lambda c: c.memory.swap),
    ("container_memory_anon_bytes", "Anonymous memory of the cgroup.", "bytes", lambda c: c.memory.anon),
    ("container_memory_file_bytes", "Page cache charged to the cgroup.", "bytes", lambda c: c.memory.file),
    ("container_pids", "Tasks in the cgroup.", "", lambda c: c.pids.current),
    ("container_pids_max", "Task limit of the cgroup (absent when unlimited).", "", lambda c: c.pids.max),
)

_COUNTERS: tuple[tuple[str, str, str, _Getter], ...] = (
    ("container_cpu_usage_seconds_total", "CPU time used by the cgroup.", "seconds", lambda c: c.cpu.usage_seconds),
    ("container_cpu_throttled_seconds_total", "Time the cgroup was throttled by its CPU quota.", "seconds",
     lambda c: c.cpu.throttled_seconds),
    ("container_cpu_throttled_periods_total", "CFS periods in which the cgroup was throttled.", "",
     lambda c: c.cpu.throttled_periods),
    ("container_oom_kills_total", "Processes of the cgroup killed by the OOM killer.", "",
     lambda c: c.memory.oom_kills),
)

_IO = (
    ("container_io_read_bytes_total", "Bytes the cgroup read from the device.", "bytes", "read_bytes"),
    ("container_io_written_bytes_total", "Bytes the cgroup wrote to the device.", "bytes", "write_bytes"),
    ("container_io_reads_total", "Read operations of the cgroup on the device.", "", "reads"),
    ("container_io_writes_total", "Write operations of the cgroup on the device.", "", "writes"),
)

_WINDOWS = (("10s", "avg10"), ("60s", "avg60"), ("300s", "avg300"))


def _ratio(percent: float | None) -> float | None:
    """% to a 0-1 ratio, rounded to 9 decimals so no float noise is printed (as prometheus.py does)."""
    return round(percent / 100, 9) if percent is not None else None


def container_metrics(snapshots: Iterable[Snapshot]) -> Iterator[Metric]:
    """Every container and pressure family for these snapshots (empty families are still declared)."""
    snaps = list(snapshots)
    boxes = [(s.node_id, s.container) for s in snaps if s.container is not None]
    yield _identity(boxes)
    for name, doc, unit, get in _GAUGES:
        yield _family(GaugeMetricFamily(PREFIX + name, doc, labels=["node_id"], unit=unit), boxes, get)
    for name, doc, unit, get in _COUNTERS:
        yield _family(CounterMetricFamily(PREFIX + name, doc, labels=["node_id"], unit=unit), boxes, get)
    yield from _io(boxes)
    pressures = [(s.node_id, "host", s.pressure) for s in snaps if s.pressure is not None]
    pressures += [(node, "container", box.pressure) for node, box in boxes if box.pressure is not None]
    yield from _pressure(pressures)


def _family(family: GaugeMetricFamily | CounterMetricFamily, boxes: list[tuple[str, ContainerSample]],
            get: _Getter) -> Metric:
    for node, box in boxes:
        value = get(box)
        if value is not None:
            family.add_metric([node], float(value))
    return family


def _identity(boxes: list[tuple[str, ContainerSample]]) -> Metric:
    info = InfoMetricFamily(PREFIX + "container", "The cgroup described and what its path says about the job.",
                            labels=["node_id"])
    for node, box in boxes:
        ident = box.identity
        fields = {
            "path": ident.path, "cgroup_version": str(ident.version), "container_id": ident.container_id,
            "pod_uid": ident.pod_uid, "qos_class": ident.qos_class, "slurm_job_id": ident.slurm_job_id,
            "systemd_unit": ident.systemd_unit,
        }
        info.add_metric([node], {k: v or "" for k, v in fields.items()})
    return info


def _io(boxes: list[tuple[str, ContainerSample]]) -> Iterator[Metric]:
    for name, doc, unit, attr in _IO:
        family = CounterMetricFamily(PREFIX + name, doc, labels=["node_id", "device"], unit=unit)
        for node, box in boxes:
            for device in box.io:
                family.add_metric([node, device.device], float(getattr(device, attr)))
        yield family


def _pressure(pressures: list[tuple[str, str, PressureSample]]) -> Iterator[Metric]:
    labels = ["node_id", "scope", "resource"]
    for kind in ("some", "full"):
        stall = CounterMetricFamily(
            PREFIX + f"pressure_{kind}_stall_seconds", f"Time {_KIND_DOC[kind]} stalled on the resource (PSI).",
            labels=labels, unit="seconds")
        share = GaugeMetricFamily(
            PREFIX + f"pressure_{kind}_ratio", f"Share of time {_KIND_DOC[kind]} stalled, averaged over the window.",
            labels=[*labels, "window"], unit="ratio")
        for node, scope, sample in pressures:
            for resource, figures in _resources(sample):
                line = figures.some if kind == "some" else figures.full
                if line is None:
                    continue
                stall.add_metric([node, scope, resource], line.total)
                for window, attr in _WINDOWS:
                    share.add_metric([node, scope, resource, window], round(getattr(line, attr) / 100, 9))
        yield stall
        yield share


_KIND_DOC = {"some": "at least one task was", "full": "all non-idle tasks were"}


def _resources(sample: PressureSample) -> Iterator[tuple[str, ResourcePressure]]:
    for resource, figures in (("cpu", sample.cpu), ("memory", sample.memory), ("io", sample.io)):
        if figures is not None:
            yield resource, figures
