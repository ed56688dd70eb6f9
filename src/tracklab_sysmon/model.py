"""Frozen records for raw counters and published samples; `None` always means "not available"."""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------- raw counters (hot path output)


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """Cumulative seconds per CPU mode, as /proc/stat reports them."""

    user: float = 0.0
    nice: float = 0.0
    system: float = 0.0
    idle: float = 0.0
    iowait: float = 0.0
    irq: float = 0.0
    softirq: float = 0.0
    steal: float = 0.0

    @property
    def total(self) -> float:
        # guest/guest_nice are already included in user/nice, so they are not added again.
        return (
            self.user + self.nice + self.system + self.idle
            + self.iowait + self.irq + self.softirq + self.steal
        )

    @property
    def busy(self) -> float:
        return self.total - self.idle - self.iowait


@dataclass(frozen=True, slots=True)
class StatCounters:
    """The CPU lines of /proc/stat: the aggregate line and one entry per online core."""

    total: CpuTimes
    cores: tuple[tuple[int, CpuTimes], ...]


@dataclass(frozen=True, slots=True)
class DiskCounters:
    """Cumulative IO counters of one block device from /proc/diskstats."""

    name: str
    reads: int
    read_bytes: int
    writes: int
    write_bytes: int


@dataclass(frozen=True, slots=True)
class NetCounters:
    """Cumulative counters of one interface from /proc/net/dev."""

    name: str
    bytes_recv: int
    packets_recv: int
    bytes_sent: int
    packets_sent: int


@dataclass(frozen=True, slots=True)
class LoadAvg:
    """/proc/loadavg: three load averages, runnable entities and all threads."""

    load1: float
    load5: float
    load15: float
    running: int
    threads: int


@dataclass(frozen=True, slots=True)
class MemInfo:
    """The /proc/meminfo fields the service uses, in bytes."""

    total: int | None
    available: int | None
    swap_total: int | None
    swap_free: int | None


# ---------------------------------------------------------------- published samples


@dataclass(frozen=True, slots=True)
class CoreSample:
    id: int
    usage: float | None
    frequency: float | None
    temperature: float | None
    times: CpuTimes


@dataclass(frozen=True, slots=True)
class CpuSample:
    overall: float | None
    cores: tuple[CoreSample, ...]
    load_average: tuple[float, float, float] | None
    processes: int | None
    threads: int | None
    temperature: float | None


@dataclass(frozen=True, slots=True)
class SwapSample:
    used: int | None
    total: int | None
    percentage: float | None


@dataclass(frozen=True, slots=True)
class MemorySample:
    usage: float | None
    used: int | None
    total: int | None
    available: int | None
    swap: SwapSample


@dataclass(frozen=True, slots=True)
class DiskDeviceSample:
    name: str
    read_bytes: int | None  # None: the counter does not fit 64 bits (the collector says so)
    write_bytes: int | None
    reads: int | None
    writes: int | None
    read_rate: float | None
    write_rate: float | None
    iops: float | None


@dataclass(frozen=True, slots=True)
class DiskSample:
    usage: float | None
    used: int | None
    total: int | None
    io_read: float | None
    io_write: float | None
    iops: float | None
    devices: tuple[DiskDeviceSample, ...]


@dataclass(frozen=True, slots=True)
class InterfaceSample:
    name: str
    bytes_recv: int | None  # None: the counter does not fit 64 bits (the collector says so)
    bytes_sent: int | None
    packets_recv: int | None
    packets_sent: int | None
    bytes_in: float | None
    bytes_out: float | None
    packets_in: float | None
    packets_out: float | None


@dataclass(frozen=True, slots=True)
class NetworkSample:
    bytes_in: float | None
    bytes_out: float | None
    packets_in: float | None
    packets_out: float | None
    connections: int | None
    interfaces: tuple[InterfaceSample, ...]


@dataclass(frozen=True, slots=True)
class AcceleratorMemory:
    used: int | None
    total: int | None
    percentage: float | None


@dataclass(frozen=True, slots=True)
class AcceleratorSample:
    """One device; `extra` holds vendor extensions already named as on the wire (camelCase)."""

    id: int
    type: str
    name: str | None
    utilization: float | None
    memory: AcceleratorMemory
    temperature: float | None
    power: float | None
    fan_speed: float | None
    vendor: str | None = None
    uuid: str | None = None
    extra: tuple[tuple[str, object], ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything sampled in one tick for one node; a section is None when its collector failed."""

    node_id: str
    timestamp: int  # ms since the epoch
    cpu: CpuSample | None = None
    memory: MemorySample | None = None
    disk: DiskSample | None = None
    network: NetworkSample | None = None
    accelerators: tuple[AcceleratorSample, ...] = ()


@dataclass(frozen=True, slots=True)
class SystemInfo:
    platform: str
    architecture: str
    cpu_model: str | None
    cpu_cores: int | None
    cpu_threads: int | None
    memory_total: int | None
    swap_total: int | None
    disk_total: int | None
    gpu_count: int
    gpu_info: tuple[str, ...]
    hostname: str
    ip_address: str | None
    node_id: str
    boot_time: int | None  # ms since the epoch
    kernel: str | None
    version: str
    extra: tuple[tuple[str, object], ...] = field(default=())
