"""The one NVML wrapper: lazy start, cached handles, one query helper that turns a field's error into None."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import GpuLost, NvmlUnavailable
from .model import GpuProcess, MemoryUse, MigInstance, MigState, Profiling, ThrottleReason

RETRY_SECONDS = 60.0  # a missing driver is asked about again this often, not every tick
MIB = 1024 * 1024

# Clock event ("throttle") reason bits, decoded to ThrottleReason names.
THROTTLE_REASONS: tuple[tuple[int, ThrottleReason], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

# GPM metric id -> (Profiling field, scale to its unit); rates arrive in MiB/s.
GPM_METRICS = (
    (2, "sm_active", 1.0),
    (3, "sm_occupancy", 1.0),
    (5, "tensor_active", 1.0),
    (10, "dram_active", 1.0),
    (20, "pcie_tx_bytes", MIB),
    (21, "pcie_rx_bytes", MIB),
    (61, "nvlink_tx_bytes", MIB),
    (60, "nvlink_rx_bytes", MIB),
)


@dataclass(slots=True)
class Device:
    """One GPU's cached handle, its fields known to be unsupported (never asked again) and GPM state."""

    index: int
    handle: Any
    unsupported: set[str] = field(default_factory=set)
    gpm: list[Any] | None = None  # two GPM samples, previous first, once GPM is known to work
    gpm_primed: bool = False

    def query(self, name: str, func: Callable[..., Any], *args: Any) -> Any:
        """`func(handle, *args)`, or None on a field error; raises GpuLost for a lost GPU."""
        if name in self.unsupported:
            return None
        try:
            return func(self.handle, *args)
        except _nvml.NVMLError as exc:
            code = exc.value
            if code == _nvml.NVML_ERROR_GPU_IS_LOST:
                raise GpuLost(f"GPU {self.index} is lost") from None
            if code in _PERMANENT:
                self.unsupported.add(name)
            return None
        except _MISMATCH:  # the driver predates this versioned entry point
            self.unsupported.add(name)
            return None


class _State:
    lock = threading.Lock()
    devices: tuple[Device, ...] | None = None
    failure: tuple[str, float] | None = None


_nvml: Any = None  # the pynvml module once NVML started
_PERMANENT: frozenset[int] = frozenset()
_MISMATCH: Any = ()  # pynvml's NVMLLibraryMismatchError where this nvidia-ml-py has it


def devices(monotonic: Callable[[], float] = time.monotonic) -> tuple[Device, ...]:
    """Start NVML on first use and return the cached devices; raises NvmlUnavailable with the reason."""
    with _State.lock:
        if _State.devices is not None:
            return _State.devices
        if _State.failure is not None and monotonic() - _State.failure[1] < RETRY_SECONDS:
            raise NvmlUnavailable(_State.failure[0])
        try:
            _State.devices = _start()
        except NvmlUnavailable as exc:
            _State.failure = (str(exc), monotonic())
            raise
        return _State.devices


_LIBRARY = "libnvidia-ml.so.1"  # the name pynvml loads on every platform but Windows
_NO_LIBRARY = f"NVML library {_LIBRARY} not found (no NVIDIA driver)"


def _library_loads() -> bool:
    """Whether the dynamic loader finds NVML, asked before pynvml is imported: a machine without an
    NVIDIA driver then never loads pynvml (about 4 MiB resident, kept for the life of the service)."""
    if sys.platform.startswith("win"):
        return True  # pynvml looks in two folders of its own there: let it
    import ctypes

    try:
        ctypes.CDLL(_LIBRARY)  # loaded for good if found, as pynvml would load it next anyway
    except OSError:
        return False
    return True


def _start() -> tuple[Device, ...]:
    global _nvml, _PERMANENT, _MISMATCH
    if not _library_loads():
        raise NvmlUnavailable(_NO_LIBRARY)
    try:
        import pynvml  # nvidia-ml-py: imported only when GPUs are first asked for
    except ImportError:
        raise NvmlUnavailable("nvidia-ml-py is not installed") from None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError_LibraryNotFound:
        raise NvmlUnavailable(_NO_LIBRARY) from None
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML could not start: {exc}") from None
    _nvml = pynvml
    _MISMATCH = getattr(pynvml, "NVMLLibraryMismatchError", ())
    _PERMANENT = frozenset(
        (pynvml.NVML_ERROR_NOT_SUPPORTED, pynvml.NVML_ERROR_FUNCTION_NOT_FOUND, pynvml.NVML_ERROR_NO_PERMISSION)
    )
    try:
        count = pynvml.nvmlDeviceGetCount()
    except pynvml.NVMLError as exc:
        raise NvmlUnavailable(f"NVML could not count GPUs: {exc}") from None
    return tuple(Device(i, _handle(i)) for i in range(count))


def _handle(index: int) -> Any:
    try:
        return _nvml.nvmlDeviceGetHandleByIndex(index)
    except _nvml.NVMLError:
        return None  # a GPU lost before start: reported as lost, the others go on


def reopen(dev: Device) -> bool:
    """Ask again for the handle of a GPU that had none at start; True once it has one."""
    if dev.handle is None:
        dev.handle = _handle(dev.index)
    return dev.handle is not None


# ---------------------------------------------------------------- readers (NVML units -> model units)


@dataclass(frozen=True, slots=True)
class Static:
    name: str | None
    uuid: str | None
    bus_id: str | None


def read_static(dev: Device) -> Static:
    """Fields that never change while the driver is loaded; read once per device."""
    pci = dev.query("pci", _nvml.nvmlDeviceGetPciInfo)
    return Static(
        name=_text(dev.query("name", _nvml.nvmlDeviceGetName)),
        uuid=_text(dev.query("uuid", _nvml.nvmlDeviceGetUUID)),
        bus_id=_text(pci.busId) if pci is not None else None,
    )


@dataclass(frozen=True, slots=True)
class Fast:
    utilization: float | None
    memory_utilization: float | None
    memory_used: int | None
    memory_total: int | None
    temperature: float | None
    power: float | None
    fan_speed: float | None
    energy: float | None
    clock_sm: float | None
    clock_memory: float | None
    encoder: float | None
    decoder: float | None
    throttle: tuple[ThrottleReason, ...] | None
    pstate: int | None


def read_fast(dev: Device) -> Fast:
    """The fields that change every tick: one NVML call each."""
    n = _nvml
    q = dev.query
    util = q("utilization", n.nvmlDeviceGetUtilizationRates)
    mem = _memory(dev)
    reasons = q("throttle", _clock_reasons)
    pstate = q("pstate", n.nvmlDeviceGetPerformanceState)
    return Fast(
        utilization=float(util.gpu) if util is not None else None,
        memory_utilization=float(util.memory) if util is not None else None,
        memory_used=int(mem.used) if mem is not None else None,
        memory_total=int(mem.total) if mem is not None else None,
        temperature=_float(q("temperature", n.nvmlDeviceGetTemperature, n.NVML_TEMPERATURE_GPU)),
        power=_scaled(q("power", n.nvmlDeviceGetPowerUsage), 1000),
        fan_speed=_float(q("fan", n.nvmlDeviceGetFanSpeed)),
        energy=_scaled(q("energy", n.nvmlDeviceGetTotalEnergyConsumption), 1000),
        clock_sm=_float(q("clock_sm", n.nvmlDeviceGetClockInfo, n.NVML_CLOCK_SM)),
        clock_memory=_float(q("clock_memory", n.nvmlDeviceGetClockInfo, n.NVML_CLOCK_MEM)),
        encoder=_first(q("encoder", n.nvmlDeviceGetEncoderUtilization)),
        decoder=_first(q("decoder", n.nvmlDeviceGetDecoderUtilization)),
        throttle=tuple(name for bit, name in THROTTLE_REASONS if reasons & bit) if reasons is not None else None,
        pstate=pstate if pstate is not None and 0 <= pstate < n.NVML_PSTATE_UNKNOWN else None,
    )


def _memory(dev: Device) -> Any:
    # v2 keeps driver-reserved memory out of `used` (nvidia-smi's memory.used); v1 counts it as used.
    if "memory_v2" not in dev.unsupported:
        mem = dev.query("memory_v2", _memory_v2)
        if mem is not None or "memory_v2" not in dev.unsupported:
            return mem
    return dev.query("memory", _nvml.nvmlDeviceGetMemoryInfo)  # drivers before the v2 call


def _memory_v2(handle: Any) -> Any:
    version = getattr(_nvml, "nvmlMemory_v2", None)
    if version is None:  # bindings that predate the v2 struct
        raise _nvml.NVMLError(_nvml.NVML_ERROR_FUNCTION_NOT_FOUND)
    try:
        return _nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
    except _nvml.NVMLError as exc:
        if exc.value == getattr(_nvml, "NVML_ERROR_ARGUMENT_VERSION_MISMATCH", None):
            raise _nvml.NVMLError(_nvml.NVML_ERROR_FUNCTION_NOT_FOUND) from None  # permanent: use v1
        raise


def _clock_reasons(handle: Any) -> int:
    new_name = getattr(_nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if new_name is not None:
        try:
            return int(new_name(handle))
        except _nvml.NVMLError_FunctionNotFound:  # drivers before 535 only have the old name
            pass
    return int(_nvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))


@dataclass(frozen=True, slots=True)
class Slow:
    power_limit: float | None
    pcie_tx: float | None
    pcie_rx: float | None
    ecc_corrected: int | None
    ecc_uncorrected: int | None
    processes: tuple[GpuProcess, ...] | None
    mig: MigState | None


def read_slow(dev: Device, window: ProcessUtilizationWindow | None = None) -> Slow:
    """Fields that are costly to ask for (PCIe sampling, process tables, MIG) or rarely change.

    With a `window` the process records carry each pid's SM utilisation since that window's last read.
    """
    n = _nvml
    q = dev.query
    return Slow(
        power_limit=_scaled(q("power_limit", n.nvmlDeviceGetEnforcedPowerLimit), 1000),
        pcie_tx=_scaled(q("pcie_tx", n.nvmlDeviceGetPcieThroughput, n.NVML_PCIE_UTIL_TX_BYTES), 1 / 1024),
        pcie_rx=_scaled(q("pcie_rx", n.nvmlDeviceGetPcieThroughput, n.NVML_PCIE_UTIL_RX_BYTES), 1 / 1024),
        ecc_corrected=q("ecc", n.nvmlDeviceGetTotalEccErrors, n.NVML_MEMORY_ERROR_TYPE_CORRECTED, n.NVML_VOLATILE_ECC),
        ecc_uncorrected=q(
            "ecc", n.nvmlDeviceGetTotalEccErrors, n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, n.NVML_VOLATILE_ECC
        ),
        processes=_processes(dev, window.read(dev) if window is not None else None),
        mig=_mig(dev),
    )


def read_process_memory(dev: Device) -> dict[int, int | None] | None:
    """Bytes of device memory per host pid (None where the driver does not know); None if NVML cannot list them."""
    compute = dev.query("processes", _nvml.nvmlDeviceGetComputeRunningProcesses)
    graphics = dev.query("graphics_processes", _nvml.nvmlDeviceGetGraphicsRunningProcesses)
    if compute is None and graphics is None:
        return None
    memory: dict[int, int | None] = {}
    for proc in (compute or []) + (graphics or []):
        memory.setdefault(proc.pid, proc.usedGpuMemory)  # a process using compute and graphics is listed by both
    return memory


def _processes(dev: Device, utilization: dict[int, float] | None) -> tuple[GpuProcess, ...] | None:
    memory = read_process_memory(dev)
    if memory is None:
        return None
    return tuple(
        GpuProcess(pid=pid, name=_process_name(pid), used_memory=used,
                   utilization=utilization.get(pid, 0.0) if utilization is not None else None)
        for pid, used in memory.items()
    )


class ProcessUtilizationWindow:
    """SM % per host pid since this window's previous read, one last-seen timestamp per device.

    NVML keeps a short history of per-process samples and hands out those newer than the timestamp
    asked with; each reader (the collector, the process endpoint) keeps its own window so neither
    steals the other's samples. A process without a sample in the window was idle (NVML lists only
    processes with non-zero use), so it reads 0.0; an unsupported call reads None and is not asked again.
    """

    def __init__(self) -> None:
        self._last_seen: dict[int, int] = {}

    def read(self, dev: Device) -> dict[int, float] | None:
        samples = dev.query("process_utilization", _utilization_samples, self._last_seen.get(dev.index, 0))
        if samples is None:
            return None
        by_pid: dict[int, list[int]] = {}
        for sample in samples:
            by_pid.setdefault(sample.pid, []).append(sample.smUtil)
            self._last_seen[dev.index] = max(self._last_seen.get(dev.index, 0), sample.timeStamp)
        return {pid: round(sum(sm) / len(sm), 1) for pid, sm in by_pid.items()}


def _utilization_samples(handle: Any, last_seen: int) -> list[Any]:
    try:
        return list(_nvml.nvmlDeviceGetProcessUtilization(handle, last_seen))
    except _nvml.NVMLError as exc:
        if exc.value == _nvml.NVML_ERROR_NOT_FOUND:  # no sample newer than last_seen: every process idle
            return []
        raise


def _process_name(pid: int) -> str | None:
    # Asked on every slow read (one call per process every few seconds), never cached: pids are reused.
    try:
        return _text(_nvml.nvmlSystemGetProcessName(pid))
    except _nvml.NVMLError:
        return None


def _mig(dev: Device) -> MigState | None:
    mode = dev.query("mig", _nvml.nvmlDeviceGetMigMode)
    if mode is None:
        return None
    current, pending = mode
    if current != _nvml.NVML_DEVICE_MIG_ENABLE:
        return MigState(enabled=bool(current), pending=bool(pending))
    instances: list[MigInstance] = []
    for slot in range(dev.query("mig", _nvml.nvmlDeviceGetMaxMigDeviceCount) or 0):
        handle = dev.query("mig_slot", _nvml.nvmlDeviceGetMigDeviceHandleByIndex, slot)
        if handle is None:
            continue  # an empty slot answers NOT_FOUND
        instances.append(_mig_instance(slot, Device(dev.index, handle)))
    return MigState(enabled=bool(current), pending=bool(pending), instances=tuple(instances))


def _mig_instance(slot: int, inst: Device) -> MigInstance:
    mem = _memory(inst)
    return MigInstance(
        index=slot,
        uuid=_text(inst.query("uuid", _nvml.nvmlDeviceGetUUID)),
        gpu_instance_id=inst.query("gi", _nvml.nvmlDeviceGetGpuInstanceId),
        compute_instance_id=inst.query("ci", _nvml.nvmlDeviceGetComputeInstanceId),
        memory=MemoryUse(used=int(mem.used), total=int(mem.total)) if mem is not None else None,
    )


def read_gpm(dev: Device) -> Profiling | None:
    """Profiling metrics from GPM (Hopper and newer) between this call and the last; None if unsupported."""
    n = _nvml
    if dev.gpm is None:
        support = dev.query("gpm", n.nvmlGpmQueryDeviceSupport)
        if support is None or not support.isSupportedDevice:
            dev.unsupported.add("gpm")
            return None
        try:
            dev.gpm = [n.nvmlGpmSampleAlloc(), n.nvmlGpmSampleAlloc()]
        except n.NVMLError:
            dev.unsupported.add("gpm")
            return None
    if dev.query("gpm", n.nvmlGpmSampleGet, dev.gpm[1]) is None:
        return None
    dev.gpm.reverse()  # [newest, previous]; the previous buffer is overwritten next tick
    if not dev.gpm_primed:
        dev.gpm_primed = True
        return None
    request = n.c_nvmlGpmMetricsGet_t()
    request.version = n.NVML_GPM_METRICS_GET_VERSION
    request.numMetrics = len(GPM_METRICS)
    request.sample1, request.sample2 = dev.gpm[1], dev.gpm[0]
    for i, (metric_id, _, _) in enumerate(GPM_METRICS):
        request.metrics[i].metricId = metric_id
    try:
        n.nvmlGpmMetricsGet(request)
    except n.NVMLError:
        return None
    return Profiling(**{
        key: round(request.metrics[i].value * scale, 3) if request.metrics[i].nvmlReturn == 0 else None
        for i, (_, key, scale) in enumerate(GPM_METRICS)
    })


# ---------------------------------------------------------------- small conversions


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _scaled(value: Any, divisor: float) -> float | None:
    return round(value / divisor, 3) if value is not None else None


def _first(pair: Any) -> float | None:
    return float(pair[0]) if pair is not None else None
