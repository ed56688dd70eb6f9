"""Frozen records for raw counters and published samples; `None` always means "not available"."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, NamedTuple, TypeVar, overload

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

    def as_tuple(self) -> tuple[float, float, float, float, float, float, float, float]:
        """The eight modes in field order (the C helper's row layout)."""
        return (self.user, self.nice, self.system, self.idle, self.iowait, self.irq, self.softirq, self.steal)


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


# Where a CPU's frequency in a CpuTick came from (the C helper's SM_FREQ_* values).
FREQ_READ, FREQ_NONE, FREQ_DEFER = 0, 1, 2


@dataclass(frozen=True, slots=True)
class CpuTick:
    """One CPU tick from the hot path: overall and per-core usage against the previous tick, each
    core's cpufreq reading, and the times. `frequency_source` per core: FREQ_READ (the value, or
    None when the file could not be read), FREQ_NONE (no cpufreq file: ask /proc/cpuinfo) or
    FREQ_DEFER (the C helper left that core's file to Python)."""

    total: CpuTimes
    overall: float | None
    cores: CoreColumns
    frequency_source: list[int]


# ---------------------------------------------------------------- published samples


@dataclass(frozen=True, slots=True)
class CoreSample:
    id: int
    usage: float | None
    frequency: float | None
    temperature: float | None
    times: CpuTimes


class CoreColumns(Sequence[CoreSample]):
    """Per-core values as columns (one list per field, as the hot path hands them over): the tick
    builds no object per core; a `CoreSample` is made only when a reader indexes or iterates.
    Compares equal to any sequence of the same CoreSamples (a tuple, or columns read back)."""

    __slots__ = ("encoder", "frequency", "ids", "temperature", "times", "usage")

    def __init__(
        self,
        ids: list[int],
        usage: list[float | None],
        frequency: list[float | None],
        temperature: list[float | None] | None,
        times: tuple[list[float], ...],
    ) -> None:
        """`temperature` None: no core has one. `times`: eight columns, CpuTimes' fields in order."""
        self.ids, self.usage, self.frequency, self.temperature, self.times = ids, usage, frequency, temperature, times
        # Set by the C helper: these cores as the wire's JSON array, or None when it cannot (then the
        # wire writes them itself).
        self.encoder: Callable[[CoreColumns], bytes | None] | None = None

    def encoded(self) -> bytes | None:
        """These cores as the wire's JSON array when the hot path can write it, else None."""
        return self.encoder(self) if self.encoder is not None else None

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, index: int) -> CoreSample: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[CoreSample, ...]: ...
    def __getitem__(self, index: int | slice) -> CoreSample | tuple[CoreSample, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        return CoreSample(
            id=self.ids[index],
            usage=self.usage[index],
            frequency=self.frequency[index],
            temperature=self.temperature[index] if self.temperature is not None else None,
            times=CpuTimes(*(column[index] for column in self.times)),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"CoreColumns({tuple(self)!r})"


@dataclass(frozen=True, slots=True)
class CpuSample:
    overall: float | None
    cores: Sequence[CoreSample]  # a tuple, or CoreColumns on the hot path
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
    devices: Sequence[DiskDeviceSample]  # a tuple, or DiskColumns on the hot path


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
    interfaces: Sequence[InterfaceSample]  # a tuple, or InterfaceColumns on the hot path


DEVICE_COUNTERS = DEVICE_RATES = 4  # per device in DeviceColumns (the C helper's SM_DEVS_*)
DeviceRecord = TypeVar("DeviceRecord", DiskDeviceSample, InterfaceSample)


class DeviceColumns(Sequence[DeviceRecord], Generic[DeviceRecord]):
    """Per-device counters and rates as flat columns (as the hot path hands them over): a record is
    made only when a reader indexes or iterates. `counters` holds DEVICE_COUNTERS per device in the
    wire's order, `rates` DEVICE_RATES per device (NaN for null), `invalid` one byte per counter
    (non-zero: it did not fit 64 bits, so null) or None when every counter fits. Compares equal to
    any sequence of the same records."""

    __slots__ = ("counters", "encoder", "invalid", "names", "rates")
    # Counter names in the order CounterRates rates them (the overflow messages' order), as indexes
    # into the wire's order.
    overflow_order: tuple[tuple[int, str], ...] = ()

    def __init__(self, names: Sequence[str], counters: Sequence[int], rates: Sequence[float],
                 invalid: bytes | None = None) -> None:
        self.names, self.counters, self.rates, self.invalid = names, counters, rates, invalid
        # Set by the C helper: these devices as the wire's JSON array, or None when it cannot.
        self.encoder: Callable[[], bytes | None] | None = None

    def encoded(self) -> bytes | None:
        """These devices as the wire's JSON array when the hot path can write it, else None."""
        return self.encoder() if self.encoder is not None else None

    def _counter(self, at: int) -> int | None:
        return None if self.invalid is not None and self.invalid[at] else self.counters[at]

    def _rate(self, at: int) -> float | None:
        value = self.rates[at]
        return None if value != value else value  # NaN: null

    def _record(self, index: int) -> DeviceRecord:
        raise NotImplementedError

    def overflow_problems(self) -> list[str]:
        """What CounterRates says of each counter that did not fit 64 bits, in its order."""
        if self.invalid is None:
            return []
        return [f"{name} {field} does not fit an unsigned 64-bit counter"
                for i, name in enumerate(self.names) for k, field in self.overflow_order
                if self.invalid[i * DEVICE_COUNTERS + k]]

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, index: int) -> DeviceRecord: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[DeviceRecord, ...]: ...
    def __getitem__(self, index: int | slice) -> DeviceRecord | tuple[DeviceRecord, ...]:
        if isinstance(index, slice):
            return tuple(self._record(i) for i in range(*index.indices(len(self))))
        return self._record(range(len(self))[index])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({tuple(self)!r})"


class DiskColumns(DeviceColumns[DiskDeviceSample]):
    """Whole disks as columns: counters read bytes, write bytes, reads, writes; rates read, write, iops."""

    __slots__ = ()
    overflow_order = ((2, "reads"), (0, "read_bytes"), (3, "writes"), (1, "write_bytes"))

    def _record(self, index: int) -> DiskDeviceSample:
        c, r = index * DEVICE_COUNTERS, index * DEVICE_RATES
        return DiskDeviceSample(
            name=self.names[index], read_bytes=self._counter(c), write_bytes=self._counter(c + 1),
            reads=self._counter(c + 2), writes=self._counter(c + 3), read_rate=self._rate(r),
            write_rate=self._rate(r + 1), iops=self._rate(r + 2))


class InterfaceColumns(DeviceColumns[InterfaceSample]):
    """Interfaces as columns: counters bytes received, sent, packets received, sent; rates likewise."""

    __slots__ = ()
    overflow_order = ((0, "bytes_recv"), (1, "bytes_sent"), (2, "packets_recv"), (3, "packets_sent"))

    def _record(self, index: int) -> InterfaceSample:
        c, r = index * DEVICE_COUNTERS, index * DEVICE_RATES
        return InterfaceSample(
            name=self.names[index], bytes_recv=self._counter(c), bytes_sent=self._counter(c + 1),
            packets_recv=self._counter(c + 2), packets_sent=self._counter(c + 3), bytes_in=self._rate(r),
            bytes_out=self._rate(r + 1), packets_in=self._rate(r + 2), packets_out=self._rate(r + 3))


ColumnsT = TypeVar("ColumnsT", DiskColumns, InterfaceColumns)


@dataclass(frozen=True, slots=True)
class DeviceTick(Generic[ColumnsT]):
    """One tick of whole disks or interfaces from the hot path: the selected devices as columns, and
    the totals of each published rate over them (None when any is null, or none is selected)."""

    devices: ColumnsT
    totals: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class AcceleratorMemory:
    used: int | None
    total: int | None
    percentage: float | None


# Vendor extensions: typed records named in Python terms; wire.py alone knows their JSON names.


@dataclass(frozen=True, slots=True)
class Clocks:
    """Current clocks in MHz."""

    sm: float | None = None  # graphics / shader clock (AMD: the sclk level)
    memory: float | None = None


@dataclass(frozen=True, slots=True)
class PcieThroughput:
    """PCIe traffic in bytes/s over the driver's short sampling window."""

    rx: float | None = None
    tx: float | None = None


@dataclass(frozen=True, slots=True)
class EccErrors:
    """Volatile ECC error counts since the driver loaded."""

    corrected: int | None = None
    uncorrected: int | None = None


@dataclass(frozen=True, slots=True)
class MemoryUse:
    """Bytes used and total of one memory pool (AMD GTT, a MIG instance's share)."""

    used: int | None = None
    total: int | None = None


@dataclass(frozen=True, slots=True)
class GpuProcess:
    """One process holding a context on the device."""

    pid: int
    name: str | None = None
    used_memory: int | None = None  # bytes; None where the driver does not know it
    utilization: float | None = None  # % SM over the last slow read's window; None where NVML cannot say


@dataclass(frozen=True, slots=True)
class MigInstance:
    """One created MIG device in its slot."""

    index: int
    uuid: str | None = None
    gpu_instance_id: int | None = None
    compute_instance_id: int | None = None
    memory: MemoryUse | None = None
    profiling: MigProfiling | None = None  # DCGM's figures for the GPU instance; None without DCGM


@dataclass(frozen=True, slots=True)
class MigState:
    """MIG mode now and after the next reset, with the instances that exist."""

    enabled: bool
    pending: bool
    instances: tuple[MigInstance, ...] = ()


@dataclass(frozen=True, slots=True)
class Profiling:
    """DCGM or GPM profiling: activity in %, traffic in bytes/s."""

    sm_active: float | None = None
    sm_occupancy: float | None = None
    tensor_active: float | None = None
    dram_active: float | None = None
    pcie_tx_bytes: float | None = None
    pcie_rx_bytes: float | None = None
    nvlink_tx_bytes: float | None = None
    nvlink_rx_bytes: float | None = None


# Why clocks are held back, in NVML's bit order (wire.py maps each to its JSON name).
ThrottleReason = Literal[
    "gpu_idle",
    "applications_clocks_setting",
    "sw_power_cap",
    "hw_slowdown",
    "sync_boost",
    "sw_thermal_slowdown",
    "hw_thermal_slowdown",
    "hw_power_brake_slowdown",
    "display_clock_setting",
]


@dataclass(frozen=True, slots=True)
class NvmlReadings:
    """What NVML answers for a GPU that is not lost; each field is None when the driver cannot say."""

    memory_utilization: float | None = None
    encoder_utilization: float | None = None
    decoder_utilization: float | None = None
    clocks: Clocks = Clocks()
    power_limit: float | None = None  # W, enforced
    energy: float | None = None  # J since the driver loaded
    pcie: PcieThroughput = PcieThroughput()
    ecc_errors: EccErrors = EccErrors()
    throttle_reasons: tuple[ThrottleReason, ...] | None = None
    performance_state: int | None = None  # P-state 0-15
    processes: tuple[GpuProcess, ...] | None = None
    mig: MigState | None = None
    profiling: Profiling | None = None


@dataclass(frozen=True, slots=True)
class NvmlDetails:
    """An NVIDIA GPU seen through NVML; a lost GPU keeps its bus id and has no readings."""

    bus_id: str | None = None
    lost: bool = False
    readings: NvmlReadings | None = None


@dataclass(frozen=True, slots=True)
class TemperatureSensor:
    """One labelled sensor of the device (edge, junction, mem) in °C."""

    label: str
    celsius: float


@dataclass(frozen=True, slots=True)
class AmdgpuReadings:
    """What the amdgpu sysfs files say for an awake card."""

    memory_utilization: float | None = None
    gtt: MemoryUse = MemoryUse()
    temperatures: tuple[TemperatureSensor, ...] | None = None
    power_limit: float | None = None  # W
    clocks: Clocks = Clocks()
    energy: float | None = None  # J, hwmon energy1_input where the card has one


@dataclass(frozen=True, slots=True)
class AmdgpuDetails:
    """An AMD card under the amdgpu driver; a runtime-suspended card has no readings (it is not woken)."""

    card: str  # the DRM card folder, e.g. card1
    bus_id: str | None = None
    runtime_status: str | None = None  # power/runtime_status: active, suspended, ...
    readings: AmdgpuReadings | None = None


@dataclass(frozen=True, slots=True)
class IoregDetails:
    """A macOS GPU's extra statistics from `ioreg -c IOAccelerator`."""

    io_class: str
    renderer_utilization: float | None = None
    tiler_utilization: float | None = None
    allocated_memory: int | None = None  # bytes
    core_count: int | None = None


# Intel engine classes as i915 names them (xe's rcs, bcs, vcs, vecs, ccs are mapped onto these).
EngineClass = Literal["render", "copy", "video", "video-enhance", "compute"]


@dataclass(frozen=True, slots=True)
class EngineUse:
    """% of one engine class busy over the last interval, summed over the card's DRM clients."""

    engine: EngineClass
    utilization: float | None  # None on the first reading (no interval yet)


@dataclass(frozen=True, slots=True)
class GtFrequency:
    """The graphics clock in MHz: what the hardware runs at now, and the highest it may be asked for."""

    actual: float | None = None
    max: float | None = None


@dataclass(frozen=True, slots=True)
class IntelReadings:
    """What the i915/xe sysfs files, the card's hwmon and its DRM clients say for an awake card."""

    frequency: GtFrequency = GtFrequency()
    energy: float | None = None  # J, hwmon energy1_input (card), else energy2_input (package)
    temperatures: tuple[TemperatureSensor, ...] | None = None
    engines: tuple[EngineUse, ...] = ()


@dataclass(frozen=True, slots=True)
class IntelDetails:
    """An Intel GPU under the i915 or xe driver; a runtime-suspended card has no readings (it is not woken)."""

    card: str  # the DRM card folder, e.g. card0
    driver: str  # i915 or xe
    bus_id: str | None = None
    runtime_status: str | None = None
    readings: IntelReadings | None = None


@dataclass(frozen=True, slots=True)
class NeuronCoreUse:
    """One NeuronCore of an AWS Neuron device: busy share over neuron-monitor's period, device memory for it."""

    index: int  # the NeuronCore's index on the instance, as neuron-monitor numbers it
    utilization: float | None = None  # %; 0 for a core no application uses
    memory_used: int | None = None  # bytes


@dataclass(frozen=True, slots=True)
class NeuronErrorCounts:
    """Execution errors neuron-monitor counted in its last period (`error_summary`), by kind."""

    generic: int = 0
    numerical: int = 0
    transient: int = 0
    model: int = 0
    runtime: int = 0
    hardware: int = 0


@dataclass(frozen=True, slots=True)
class NeuronDetails:
    """An AWS Trainium/Inferentia device as `neuron-monitor` reports it."""

    device_type: str | None = None  # neuron_device_type, e.g. trainium2
    core_version: str | None = None  # neuroncore_version, e.g. v3d
    cores: tuple[NeuronCoreUse, ...] = ()
    ecc_errors: EccErrors = EccErrors()  # device DRAM, as the driver counts them
    sram_ecc_errors: EccErrors = EccErrors()
    execution_errors: NeuronErrorCounts | None = None  # of the applications using the device; None: none runs
    runtimes: tuple[int, ...] = ()  # pids of the Neuron applications using the device


@dataclass(frozen=True, slots=True)
class HabanaDetails:
    """An Intel Gaudi (Habana) device as `hl-smi` reports it."""

    bus_id: str | None = None
    module_id: int | None = None  # the OAM module the device sits in (HABANA_VISIBLE_MODULES numbers these)
    ecc_errors: EccErrors = EccErrors()  # volatile (since the driver loaded)


# The one source-specific record a device carries; readers match on its type.
AcceleratorDetails = NvmlDetails | AmdgpuDetails | IoregDetails | IntelDetails | NeuronDetails | HabanaDetails


@dataclass(frozen=True, slots=True)
class AcceleratorSample:
    """One device: the seed fields every vendor fills, and `details` from the source that read it."""

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
    details: AcceleratorDetails | None = None


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
    container: ContainerSample | None = None  # None on a bare host (the service describes the root cgroup)
    pressure: PressureSample | None = None  # the host's PSI; None on kernels without it
    energy: EnergySample | None = None  # None where no energy counter can be read
    fabric: FabricSample | None = None  # NVLink and InfiniBand/RoCE; None where neither source runs


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


# ---------------------------------------------------------------- containers and pressure (PSI)


@dataclass(frozen=True, slots=True)
class PsiFigures:
    """One PSI line: share of time stalled (%, as the kernel writes it) and the total stall in seconds."""

    avg10: float
    avg60: float
    avg300: float
    total: float  # seconds (the kernel writes µs)


@dataclass(frozen=True, slots=True)
class ResourcePressure:
    """PSI of one resource: `some` task stalled; `full` all non-idle tasks stalled (None where absent)."""

    some: PsiFigures
    full: PsiFigures | None = None


@dataclass(frozen=True, slots=True)
class PressureSample:
    """PSI for cpu, memory and io of the host or of a cgroup; a resource is None when its file is absent."""

    cpu: ResourcePressure | None
    memory: ResourcePressure | None
    io: ResourcePressure | None


@dataclass(frozen=True, slots=True)
class ContainerIdentity:
    """What the cgroup path says about the job, and which cgroup (path, v1 or v2) is described."""

    path: str
    version: int  # 1 or 2
    container_id: str | None = None
    pod_uid: str | None = None
    qos_class: str | None = None  # guaranteed, burstable or besteffort
    slurm_job_id: str | None = None
    systemd_unit: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerCpu:
    """The cgroup's CPU: its limit in cores, use as % of that limit, and CFS throttling."""

    limit_cores: float | None  # quota / period, else the cpuset size, else None (unlimited)
    usage: float | None  # % of limit_cores over the last interval
    usage_seconds: float | None  # cumulative CPU time of the cgroup
    throttled_periods: int | None  # cumulative
    throttled_periods_rate: float | None  # per second
    throttled_seconds: float | None  # cumulative
    throttled_seconds_rate: float | None  # seconds throttled per second


@dataclass(frozen=True, slots=True)
class ContainerMemory:
    """The cgroup's memory in bytes; `usage` is current as % of max."""

    current: int | None
    max: int | None  # None: unlimited
    usage: float | None
    high: int | None  # v2 memory.high; None: unlimited or v1
    swap: int | None
    oom_kills: int | None  # cumulative
    anon: int | None
    file: int | None  # page cache


@dataclass(frozen=True, slots=True)
class ContainerIoDevice:
    """The cgroup's IO on one block device: cumulative counts and per-second rates."""

    device: str  # DEVNAME from sysfs, else "MAJOR:MINOR"
    read_bytes: int
    write_bytes: int
    reads: int
    writes: int
    read_rate: float  # bytes/s
    write_rate: float
    read_iops: float  # operations/s
    write_iops: float


@dataclass(frozen=True, slots=True)
class ContainerPids:
    current: int | None
    max: int | None  # None: unlimited


@dataclass(frozen=True, slots=True)
class ContainerSample:
    """The cgroup the service describes (its own, or one named by --cgroup)."""

    identity: ContainerIdentity
    cpu: ContainerCpu
    memory: ContainerMemory
    io: tuple[ContainerIoDevice, ...]
    pids: ContainerPids
    pressure: PressureSample | None  # None where the kernel keeps no PSI for cgroups


# ---------------------------------------------------------------- processes (asked for, never in a snapshot)


ProcessSort = Literal["cpu", "memory", "gpu_memory"]  # what the process list can be ordered by


@dataclass(frozen=True, slots=True)
class GpuProcessUse:
    """One process's use of one accelerator; `device` is that accelerator's `id` in the snapshot."""

    device: int
    vendor: str
    memory: int | None  # bytes
    utilization: float | None  # % of the device


class PidStat(NamedTuple):
    """The fields of /proc/PID/stat the process list uses, in the kernel's units (clock ticks, pages).

    A NamedTuple rather than a frozen dataclass: one is built per process per call (1,000 a call on a
    busy host), and a tuple is built 3x faster (benchmarks/bench_processes.py).
    """

    pid: int
    name: str  # comm: at most 15 characters
    state: str
    ppid: int
    cpu_ticks: int  # utime + stime
    threads: int
    start_ticks: int  # clock ticks after boot
    rss_pages: int


@dataclass(frozen=True, slots=True)
class PidIo:
    """Bytes a process made the storage layer fetch and send (/proc/PID/io read_bytes, write_bytes)."""

    read_bytes: int
    write_bytes: int


@dataclass(frozen=True, slots=True)
class ProcessSample:
    """One process as `/api/system/processes` lists it; rates are over the interval since the previous read."""

    pid: int
    ppid: int
    name: str
    cmdline: str  # arguments joined by spaces, cut to MAX_CMDLINE characters; "" for kernel threads
    user: str | None  # the effective user's name (its number where the name is unknown)
    state: str
    cpu: float | None  # % of one core (top's %CPU); None on a process's first read
    rss: int  # bytes
    threads: int
    fds: int | None  # open file descriptors; None where /proc/PID/fd may not be listed
    read_rate: float | None  # bytes/s; None where /proc/PID/io may not be read, or on a first read
    write_rate: float | None
    start_time: int  # ms since the epoch
    cgroup: str | None
    container_id: str | None
    gpu: tuple[GpuProcessUse, ...]


@dataclass(frozen=True, slots=True)
class ProcessTree:
    """A process and every descendant, summed; each sum is over the members where that figure is known."""

    root: ProcessSample
    pids: tuple[int, ...]  # the root first, then its descendants in pid order
    cpu: float | None
    rss: int
    threads: int
    fds: int | None
    read_rate: float | None
    write_rate: float | None
    gpu: tuple[GpuProcessUse, ...]  # one entry per device, summed over the members


# ---------------------------------------------------------------- energy ledger


class RaplZone(NamedTuple):
    """One RAPL powercap zone: cumulative joules with the counter's wraps undone, average watts over the tick.

    A NamedTuple as `NvlinkLink`: every zone is built twice a tick (collector, ledger), in 0.47 µs where a frozen
    dataclass takes 1.24 µs.
    """

    zone: str  # the powercap folder: intel-rapl:0, intel-rapl:0:1
    domain: str  # package, core, uncore, dram or psys (what the zone's `name` says)
    package: int | None  # N of package-N (subzones: their package's); None for psys
    joules: float
    watts: float | None = None  # None on the first reading


class GpuEnergy(NamedTuple):
    """One accelerator's energy counter (NVML, amdgpu or Intel hwmon) and its average watts over the tick (a
    NamedTuple, built every tick, as `RaplZone`)."""

    id: int  # the accelerator's id in the snapshot
    vendor: str | None
    uuid: str | None
    joules: float  # as the driver counts it (NVML: since the driver loaded)
    watts: float | None = None  # None on the first reading, or when the counter went backwards


@dataclass(frozen=True, slots=True)
class EnergySample:
    """Every energy counter the node has: RAPL zones (CPU packages, DRAM, ...) and accelerators."""

    cpu: tuple[RaplZone, ...] = ()
    gpus: tuple[GpuEnergy, ...] = ()


# ---------------------------------------------------------------- MIG utilisation and the fabric (NVLink, InfiniBand)


@dataclass(frozen=True, slots=True)
class MigProfiling:
    """DCGM profiling of one MIG GPU instance, in % of the instance's own time and bandwidth."""

    graphics_active: float | None = None  # DCGM_FI_PROF_GR_ENGINE_ACTIVE
    sm_active: float | None = None  # DCGM_FI_PROF_SM_ACTIVE
    dram_active: float | None = None  # DCGM_FI_PROF_DRAM_ACTIVE


@dataclass(frozen=True, slots=True)
class NvlinkErrors:
    """Cumulative error counts of one NVLink since the driver loaded (None where NVML cannot say)."""

    crc_flit: int | None = None
    crc_data: int | None = None
    replay: int | None = None
    recovery: int | None = None


class NvlinkLink(NamedTuple):
    """One NVLink of one GPU: data counters in bytes, their rates in bytes/s, state and speed.

    A NamedTuple rather than a frozen dataclass: an HGX board has 144 links, each built every tick,
    and a tuple is built 3x faster (benchmarks/bench_gpu.py).
    """

    gpu: int  # the accelerator's `id`
    uuid: str | None  # the GPU's UUID
    link: int
    state: str | None  # active, inactive or sleep
    speed: float | None  # bits/s per direction
    tx_bytes: int | None  # cumulative payload bytes sent
    rx_bytes: int | None
    tx_rate: float | None  # bytes/s over the last interval
    rx_rate: float | None
    errors: NvlinkErrors = NvlinkErrors()


@dataclass(frozen=True, slots=True)
class NvlinkSample:
    """Every NVLink of every GPU that has them (the `nvlink` collector's section)."""

    links: tuple[NvlinkLink, ...]


@dataclass(frozen=True, slots=True)
class InfinibandErrors:
    """The port's cumulative error counters (counters/ files; None where the file is absent or unreadable)."""

    symbol_errors: int | None = None
    link_error_recovery: int | None = None
    link_downed: int | None = None
    rcv_errors: int | None = None
    rcv_remote_physical_errors: int | None = None
    rcv_switch_relay_errors: int | None = None
    xmit_discards: int | None = None
    xmit_constraint_errors: int | None = None
    rcv_constraint_errors: int | None = None
    local_link_integrity_errors: int | None = None
    excessive_buffer_overrun_errors: int | None = None
    vl15_dropped: int | None = None


@dataclass(frozen=True, slots=True)
class HwCounter:
    """One driver-specific counter of a port's hw_counters folder, under the driver's own name."""

    name: str
    value: int


class InfinibandPort(NamedTuple):
    """One port of an RDMA device (InfiniBand or RoCE): bytes (the kernel counts 4-byte words), packets, rates.

    A NamedTuple as `NvlinkLink`: every port is built every tick, in 0.5 µs where a frozen dataclass of these 16
    fields takes 3.3 µs.
    """

    device: str  # e.g. mlx5_0
    port: int
    link_layer: str | None  # InfiniBand or Ethernet (RoCE)
    state: str | None  # down, init, armed, active, active_defer
    physical_state: str | None  # e.g. link_up, polling, disabled
    rate: float | None  # bits/s (active width x active speed)
    tx_bytes: int | None  # cumulative
    rx_bytes: int | None
    tx_packets: int | None
    rx_packets: int | None
    tx_rate: float | None  # bytes/s
    rx_rate: float | None
    tx_packets_rate: float | None  # packets/s
    rx_packets_rate: float | None
    errors: InfinibandErrors = InfinibandErrors()
    hw_counters: tuple[HwCounter, ...] = ()


@dataclass(frozen=True, slots=True)
class InfinibandSample:
    """Every port of every RDMA device (the `infiniband` collector's section)."""

    ports: tuple[InfinibandPort, ...]


@dataclass(frozen=True, slots=True)
class FabricSample:
    """The links between devices and nodes; a source is None when its collector did not run or failed."""

    nvlink: NvlinkSample | None = None
    infiniband: InfinibandSample | None = None
