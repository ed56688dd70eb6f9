"""The one place that knows the JSON shape: records to camelCase dicts and back, encoded with orjson.

`snapshot_from_wire` is the strict inverse of `snapshot_to_wire`, for snapshots this process did
not make (peers): every known field is checked for type and range, and a `WireError` names the
path of the first bad one. Keys it does not know are ignored, so newer peers that add fields still
validate. Accelerator vendor details are read back into their typed records (`accelerator_from_wire`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from .errors import WireError
from .model import (
    AcceleratorDetails,
    AcceleratorMemory,
    AcceleratorSample,
    AmdgpuDetails,
    AmdgpuReadings,
    Clocks,
    ContainerCpu,
    ContainerIdentity,
    ContainerIoDevice,
    ContainerMemory,
    ContainerPids,
    ContainerSample,
    CoreColumns,
    CoreSample,
    CpuSample,
    CpuTimes,
    DeviceColumns,
    DiskDeviceSample,
    DiskSample,
    EccErrors,
    EnergySample,
    EngineClass,
    EngineUse,
    FabricSample,
    GpuEnergy,
    GpuProcess,
    GpuProcessUse,
    GtFrequency,
    HabanaDetails,
    HwCounter,
    InfinibandErrors,
    InfinibandPort,
    InfinibandSample,
    IntelDetails,
    IntelReadings,
    InterfaceSample,
    IoregDetails,
    MemorySample,
    MemoryUse,
    MigInstance,
    MigProfiling,
    MigState,
    NetworkSample,
    NeuronCoreUse,
    NeuronDetails,
    NeuronErrorCounts,
    NvlinkErrors,
    NvlinkLink,
    NvlinkSample,
    NvmlDetails,
    NvmlReadings,
    PcieThroughput,
    PressureSample,
    ProcessSample,
    ProcessTree,
    Profiling,
    PsiFigures,
    RaplZone,
    ResourcePressure,
    Snapshot,
    SwapSample,
    SystemInfo,
    TemperatureSensor,
    ThrottleReason,
)

R = TypeVar("R", DiskDeviceSample, InterfaceSample)
MAX_DEPTH = 32  # a snapshot nests 5 levels; vendor extras a few more. Deeper is refused unread.


def encode(value: Any) -> bytes:
    """JSON bytes; NaN/inf never appear because every float is produced finite or None."""
    return orjson.dumps(value)


def decode(data: bytes | str) -> Any:
    return orjson.loads(data)


def encode_snapshot(snap: Snapshot) -> bytes:
    """The snapshot's JSON, the per-core, disk and interface arrays written by the C helper where it can
    (the same bytes)."""
    return encode(snapshot_to_wire(snap, fragments=True))


def snapshot_to_wire(snap: Snapshot, *, fragments: bool = False) -> dict[str, Any]:
    """The wire dict; `fragments`: the cores, disks and interfaces may be orjson.Fragments (only for
    encoding at once)."""
    return {
        "node_id": snap.node_id,
        "timestamp": snap.timestamp,
        "cpu": cpu_to_wire(snap.cpu, fragments) if snap.cpu else None,
        "memory": memory_to_wire(snap.memory) if snap.memory else None,
        "disk": disk_to_wire(snap.disk, fragments) if snap.disk else None,
        "network": network_to_wire(snap.network, fragments) if snap.network else None,
        "accelerators": [accelerator_to_wire(a) for a in snap.accelerators],
        "container": container_to_wire(snap.container) if snap.container else None,
        "pressure": pressure_to_wire(snap.pressure) if snap.pressure else None,
        "energy": energy_to_wire(snap.energy) if snap.energy else None,
        "fabric": fabric_to_wire(snap.fabric) if snap.fabric else None,
    }


def cpu_to_wire(cpu: CpuSample, fragments: bool = False) -> dict[str, Any]:
    return {
        "overall": cpu.overall,
        "cores": _cores_to_wire(cpu.cores, fragments),
        "loadAverage": list(cpu.load_average) if cpu.load_average else None,
        "processes": cpu.processes,
        "threads": cpu.threads,
        "temperature": cpu.temperature,
    }


def _cores_to_wire(cores: Sequence[CoreSample], fragments: bool) -> list[dict[str, Any]] | orjson.Fragment:
    """The cores' list; with `fragments`, the JSON the C helper wrote for them where it could."""
    if not isinstance(cores, CoreColumns):
        return [_core(c) for c in cores]
    encoded = cores.encoded() if fragments else None
    return orjson.Fragment(encoded) if encoded is not None else _columns_to_wire(cores)


def _columns_to_wire(cores: CoreColumns) -> list[dict[str, Any]]:
    """The same dicts as `_core`, straight from the hot path's columns (no CoreSample per core)."""
    temperature = cores.temperature if cores.temperature is not None else [None] * len(cores)
    return [
        {
            "id": cpu_id, "usage": usage, "frequency": frequency, "temperature": temp,
            "times": {
                "user": user, "nice": nice, "system": system, "idle": idle,
                "iowait": iowait, "irq": irq, "softirq": softirq, "steal": steal,
            },
        }
        for cpu_id, usage, frequency, temp, user, nice, system, idle, iowait, irq, softirq, steal in zip(
            cores.ids, cores.usage, cores.frequency, temperature, *cores.times, strict=True)
    ]


def _core(core: CoreSample) -> dict[str, Any]:
    t = core.times
    return {
        "id": core.id,
        "usage": core.usage,
        "frequency": core.frequency,
        "temperature": core.temperature,
        # Clock ticks over USER_HZ (100) already print as 2 decimals: no round() per mode per core.
        "times": {
            "user": t.user, "nice": t.nice, "system": t.system, "idle": t.idle,
            "iowait": t.iowait, "irq": t.irq, "softirq": t.softirq, "steal": t.steal,
        },
    }


def memory_to_wire(mem: MemorySample) -> dict[str, Any]:
    return {
        "usage": mem.usage,
        "used": mem.used,
        "total": mem.total,
        "available": mem.available,
        "swap": {"used": mem.swap.used, "total": mem.swap.total, "percentage": mem.swap.percentage},
    }


def _devices_to_wire(
    devices: Sequence[R], fragments: bool, to_wire: Callable[[R], dict[str, Any]]
) -> list[dict[str, Any]] | orjson.Fragment:
    """The devices' list; with `fragments`, the JSON the C helper wrote for their columns where it could."""
    encoded = devices.encoded() if fragments and isinstance(devices, DeviceColumns) else None
    return orjson.Fragment(encoded) if encoded is not None else [to_wire(d) for d in devices]


def _disk_device(d: DiskDeviceSample) -> dict[str, Any]:
    return {
        "name": d.name, "readBytes": d.read_bytes, "writeBytes": d.write_bytes, "reads": d.reads,
        "writes": d.writes, "readRate": d.read_rate, "writeRate": d.write_rate, "iops": d.iops,
    }


def _interface(i: InterfaceSample) -> dict[str, Any]:
    return {
        "name": i.name, "bytesRecv": i.bytes_recv, "bytesSent": i.bytes_sent, "packetsRecv": i.packets_recv,
        "packetsSent": i.packets_sent, "bytesIn": i.bytes_in, "bytesOut": i.bytes_out,
        "packetsIn": i.packets_in, "packetsOut": i.packets_out,
    }


def disk_to_wire(disk: DiskSample, fragments: bool = False) -> dict[str, Any]:
    return {
        "usage": disk.usage,
        "used": disk.used,
        "total": disk.total,
        "ioRead": disk.io_read,
        "ioWrite": disk.io_write,
        "iops": disk.iops,
        "devices": _devices_to_wire(disk.devices, fragments, _disk_device),
    }


def network_to_wire(net: NetworkSample, fragments: bool = False) -> dict[str, Any]:
    return {
        "bytesIn": net.bytes_in,
        "bytesOut": net.bytes_out,
        "packetsIn": net.packets_in,
        "packetsOut": net.packets_out,
        "connections": net.connections,
        "interfaces": _devices_to_wire(net.interfaces, fragments, _interface),
    }


def accelerator_to_wire(acc: AcceleratorSample) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": acc.id,
        "type": acc.type,
        "name": acc.name,
        "vendor": acc.vendor,
        "uuid": acc.uuid,
        "utilization": acc.utilization,
        "memory": {
            "used": acc.memory.used,
            "total": acc.memory.total,
            "percentage": acc.memory.percentage,
        },
        "temperature": acc.temperature,
        "power": acc.power,
        "fanSpeed": acc.fan_speed,
    }
    details = acc.details
    if isinstance(details, NvmlDetails):
        body["busId"] = details.bus_id
        if details.readings is not None:
            body.update(_nvml_readings(details.readings))
        body["lost"] = details.lost
    elif isinstance(details, AmdgpuDetails):
        body.update(busId=details.bus_id, card=details.card, runtimeStatus=details.runtime_status)
        if details.readings is not None:
            body.update(_amdgpu_readings(details.readings))
    elif isinstance(details, IntelDetails):
        body.update(busId=details.bus_id, card=details.card, driver=details.driver,
                    runtimeStatus=details.runtime_status)
        if details.readings is not None:
            body.update(_intel_readings(details.readings))
    elif isinstance(details, IoregDetails):
        body.update(
            rendererUtilization=details.renderer_utilization,
            tilerUtilization=details.tiler_utilization,
            allocatedMemory=details.allocated_memory,
            coreCount=details.core_count,
            ioClass=details.io_class,
        )
    elif isinstance(details, NeuronDetails):
        body.update(_neuron_details(details))
    elif isinstance(details, HabanaDetails):
        body.update(busId=details.bus_id, moduleId=details.module_id, eccErrors=_ecc(details.ecc_errors))
    return body


NEURON_ERROR_KINDS = ("generic", "numerical", "transient", "model", "runtime", "hardware")  # JSON names = fields


def _neuron_details(d: NeuronDetails) -> dict[str, Any]:
    errors = d.execution_errors
    return {
        "deviceType": d.device_type,
        "coreVersion": d.core_version,
        "neuronCores": [{"index": c.index, "utilization": c.utilization, "memoryUsed": c.memory_used} for c in d.cores],
        "eccErrors": _ecc(d.ecc_errors),
        "sramEccErrors": _ecc(d.sram_ecc_errors),
        "executionErrors": {k: getattr(errors, k) for k in NEURON_ERROR_KINDS} if errors is not None else None,
        "runtimes": list(d.runtimes),
    }


def _ecc(ecc: EccErrors) -> dict[str, Any]:
    return {"corrected": ecc.corrected, "uncorrected": ecc.uncorrected}


# ThrottleReason -> its wire name, in NVML's bit order.
THROTTLE_REASON_NAMES: dict[ThrottleReason, str] = {
    "gpu_idle": "gpuIdle",
    "applications_clocks_setting": "applicationsClocksSetting",
    "sw_power_cap": "swPowerCap",
    "hw_slowdown": "hwSlowdown",
    "sync_boost": "syncBoost",
    "sw_thermal_slowdown": "swThermalSlowdown",
    "hw_thermal_slowdown": "hwThermalSlowdown",
    "hw_power_brake_slowdown": "hwPowerBrakeSlowdown",
    "display_clock_setting": "displayClockSetting",
}

# Profiling field -> its wire name, in the order the wire lists them.
PROFILING_NAMES = {
    "sm_active": "smActive",
    "sm_occupancy": "smOccupancy",
    "tensor_active": "tensorActive",
    "dram_active": "dramActive",
    "pcie_tx_bytes": "pcieTxBytes",
    "pcie_rx_bytes": "pcieRxBytes",
    "nvlink_tx_bytes": "nvlinkTxBytes",
    "nvlink_rx_bytes": "nvlinkRxBytes",
}


def _nvml_readings(r: NvmlReadings) -> dict[str, Any]:
    return {
        "memoryUtilization": r.memory_utilization,
        "encoderUtilization": r.encoder_utilization,
        "decoderUtilization": r.decoder_utilization,
        "clocks": _clocks(r.clocks),
        "powerLimit": r.power_limit,
        "energy": r.energy,
        "pcie": {"rx": r.pcie.rx, "tx": r.pcie.tx},
        "eccErrors": {"corrected": r.ecc_errors.corrected, "uncorrected": r.ecc_errors.uncorrected},
        "throttleReasons": [THROTTLE_REASON_NAMES[t] for t in r.throttle_reasons]
        if r.throttle_reasons is not None else None,
        "performanceState": r.performance_state,
        "processes": [_process(p) for p in r.processes] if r.processes is not None else None,
        "mig": _mig(r.mig) if r.mig is not None else None,
        "profiling": {name: getattr(r.profiling, field) for field, name in PROFILING_NAMES.items()}
        if r.profiling is not None else None,
    }


def _amdgpu_readings(r: AmdgpuReadings) -> dict[str, Any]:
    return {
        "memoryUtilization": r.memory_utilization,
        "gtt": _memory_use(r.gtt),
        "temperatures": {t.label: t.celsius for t in r.temperatures} if r.temperatures is not None else None,
        "powerLimit": r.power_limit,
        "clocks": _clocks(r.clocks),
        "energy": r.energy,
    }


# EngineClass -> its wire name.
ENGINE_NAMES: dict[EngineClass, str] = {
    "render": "render", "copy": "copy", "video": "video", "video-enhance": "videoEnhance", "compute": "compute",
}


def _intel_readings(r: IntelReadings) -> dict[str, Any]:
    return {
        "frequency": {"actual": r.frequency.actual, "max": r.frequency.max},
        "energy": r.energy,
        "temperatures": {t.label: t.celsius for t in r.temperatures} if r.temperatures is not None else None,
        "engines": {ENGINE_NAMES[e.engine]: e.utilization for e in r.engines},
    }


def _clocks(clocks: Clocks) -> dict[str, Any]:
    return {"sm": clocks.sm, "memory": clocks.memory}


def _memory_use(mem: MemoryUse) -> dict[str, Any]:
    return {"used": mem.used, "total": mem.total}


def _process(proc: GpuProcess) -> dict[str, Any]:
    return {"pid": proc.pid, "name": proc.name, "usedMemory": proc.used_memory, "utilization": proc.utilization}


def _mig(mig: MigState) -> dict[str, Any]:
    return {
        "enabled": mig.enabled,
        "pending": mig.pending,
        "instances": [
            {
                "index": i.index,
                "uuid": i.uuid,
                "gpuInstanceId": i.gpu_instance_id,
                "computeInstanceId": i.compute_instance_id,
                "memory": _memory_use(i.memory) if i.memory is not None else None,
                "profiling": _mig_profiling(i.profiling) if i.profiling is not None else None,
            }
            for i in mig.instances
        ],
    }


# ---------------------------------------------------------------- containers and pressure


def container_to_wire(box: ContainerSample) -> dict[str, Any]:
    """The container section: DESIGN's units (cores, % of the limit, bytes, seconds, PSI % and seconds)."""
    ident, cpu, mem = box.identity, box.cpu, box.memory
    return {
        "identity": {
            "containerId": ident.container_id, "podUid": ident.pod_uid, "qosClass": ident.qos_class,
            "slurmJobId": ident.slurm_job_id, "systemdUnit": ident.systemd_unit,
            "path": ident.path, "version": ident.version,
        },
        "cpu": {
            "limitCores": cpu.limit_cores, "usage": cpu.usage, "usageSeconds": cpu.usage_seconds,
            "throttledPeriods": cpu.throttled_periods, "throttledPeriodsRate": cpu.throttled_periods_rate,
            "throttledSeconds": cpu.throttled_seconds, "throttledSecondsRate": cpu.throttled_seconds_rate,
        },
        "memory": {
            "current": mem.current, "max": mem.max, "usage": mem.usage, "high": mem.high, "swap": mem.swap,
            "oomKills": mem.oom_kills, "anon": mem.anon, "file": mem.file,
        },
        "io": [
            {
                "device": d.device, "readBytes": d.read_bytes, "writeBytes": d.write_bytes,
                "reads": d.reads, "writes": d.writes, "readRate": d.read_rate, "writeRate": d.write_rate,
                "readIops": d.read_iops, "writeIops": d.write_iops,
            }
            for d in box.io
        ],
        "pids": {"current": box.pids.current, "max": box.pids.max},
        "pressure": pressure_to_wire(box.pressure) if box.pressure else None,
    }


def pressure_to_wire(pressure: PressureSample) -> dict[str, Any]:
    """PSI per resource: `some`/`full` with avg10/avg60/avg300 in % and `total` stall in seconds."""
    return {
        "cpu": _resource_pressure(pressure.cpu),
        "memory": _resource_pressure(pressure.memory),
        "io": _resource_pressure(pressure.io),
    }


def _resource_pressure(resource: ResourcePressure | None) -> dict[str, Any] | None:
    if resource is None:
        return None
    return {"some": _psi(resource.some), "full": _psi(resource.full) if resource.full else None}


def _psi(figures: PsiFigures) -> dict[str, Any]:
    return {"avg10": figures.avg10, "avg60": figures.avg60, "avg300": figures.avg300, "total": figures.total}


def energy_to_wire(energy: EnergySample) -> dict[str, Any]:
    """The energy ledger: RAPL zones and accelerators, cumulative joules and average watts over the tick."""
    return {
        "cpu": [
            {"zone": z.zone, "domain": z.domain, "package": z.package, "joules": z.joules, "watts": z.watts}
            for z in energy.cpu
        ],
        "gpus": [
            {"id": g.id, "vendor": g.vendor, "uuid": g.uuid, "joules": g.joules, "watts": g.watts}
            for g in energy.gpus
        ],
    }


def system_info_to_wire(info: SystemInfo) -> dict[str, Any]:
    return {
        "platform": info.platform,
        "architecture": info.architecture,
        "cpu_model": info.cpu_model,
        "cpu_cores": info.cpu_cores,
        "cpu_threads": info.cpu_threads,
        "memory_total": info.memory_total,
        "swap_total": info.swap_total,
        "disk_total": info.disk_total,
        "gpu_count": info.gpu_count,
        "gpu_info": list(info.gpu_info),
        "hostname": info.hostname,
        "ip_address": info.ip_address,
        "node_id": info.node_id,
        "boot_time": info.boot_time,
        "kernel": info.kernel,
        "version": info.version,
    }


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


# ---------------------------------------------------------------- wire -> records (validating)


def snapshot_from_wire(data: bytes | bytearray | memoryview | str | dict[str, Any]) -> Snapshot:
    """The Snapshot that `snapshot_to_wire` would turn into `data`; raises WireError naming the bad field."""
    if isinstance(data, bytes | bytearray | memoryview | str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise WireError(f"snapshot: not JSON ({exc})") from None
    if nesting_depth(data, MAX_DEPTH) > MAX_DEPTH:  # a hostile peer picks the depth: refuse before reading
        raise WireError(f"snapshot: nested deeper than {MAX_DEPTH} levels")
    snap = _Obj(data, "snapshot")
    return Snapshot(
        node_id=_required(snap.text("node_id", optional=False, empty=False)),
        timestamp=_required(snap.integer("timestamp", optional=False)),
        cpu=_read_cpu(section) if (section := snap.obj("cpu")) else None,
        memory=_read_memory(section) if (section := snap.obj("memory")) else None,
        disk=_read_disk(section) if (section := snap.obj("disk")) else None,
        network=_read_network(section) if (section := snap.obj("network")) else None,
        accelerators=tuple(_accelerator_from_obj(a) for a in snap.objects("accelerators")),
        container=_read_container(section) if (section := snap.obj("container")) else None,
        pressure=_read_pressure(section) if (section := snap.obj("pressure")) else None,
        energy=_read_energy(section) if (section := snap.obj("energy")) else None,
        fabric=_read_fabric(section) if (section := snap.obj("fabric")) else None,
    )


def nesting_depth(value: object, limit: int) -> int:
    """Levels of arrays/objects in a parsed JSON value (a scalar is 0), counted without recursion.

    Returns as soon as one branch goes past `limit`: the sender picks the depth, not the stack.
    """
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            depth += 1
            if depth > limit:
                return depth
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


# -------------------------------- the reader shared by every section

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson can encode: signed or unsigned 64-bit
_SHOWN = 40  # characters of a bad value quoted in an error


class _Obj:
    """One JSON object being read, with the path used in errors (`cpu.cores[2].times`)."""

    __slots__ = ("body", "path")

    def __init__(self, body: Any, path: str) -> None:
        if not isinstance(body, dict):
            raise WireError(f"{path}: expected object, got {_kind(body)}")
        self.body: dict[str, Any] = body
        self.path = path

    def _get(self, key: str, optional: bool) -> tuple[Any, str]:
        where = f"{self.path}.{key}" if self.path != "snapshot" else key
        if key not in self.body and not optional:
            raise WireError(f"{where}: missing")
        return self.body.get(key), where

    def number(self, key: str, *, optional: bool = True) -> float | None:
        value, where = self._get(key, optional)
        if value is None and optional:
            return None
        return _number(value, where)

    def integer(self, key: str, *, optional: bool = True) -> int | None:
        value, where = self._get(key, optional)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise WireError(f"{where}: expected integer, got {_kind(value)}")
        if not _INT_MIN <= value <= _INT_MAX:
            raise WireError(f"{where}: integer {_shown(value)} is outside 64 bits")
        return value

    def numbers(self, key: str, count: int) -> tuple[float, ...] | None:
        value, where = self._get(key, optional=True)
        if value is None:
            return None
        if not isinstance(value, list) or len(value) != count:
            raise WireError(f"{where}: expected list of {count} numbers, got {_kind(value)}")
        return tuple(_number(item, f"{where}[{i}]") for i, item in enumerate(value))

    def text(self, key: str, *, optional: bool = True, empty: bool = True) -> str | None:
        value, where = self._get(key, optional)
        if value is None and optional:
            return None
        if not isinstance(value, str) or (not empty and not value):
            raise WireError(f"{where}: expected {'string' if empty else 'non-empty string'}, got {_kind(value)}")
        return value

    def obj(self, key: str, *, optional: bool = True) -> _Obj | None:
        value, where = self._get(key, optional)
        return None if value is None and optional else _Obj(value, where)

    def objects(self, key: str) -> list[_Obj]:
        value, where = self._get(key, optional=True)
        if value is None:
            return []
        if not isinstance(value, list):
            raise WireError(f"{where}: expected list of objects, got {_kind(value)}")
        return [_Obj(item, f"{where}[{i}]") for i, item in enumerate(value)]


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WireError(f"{where}: expected number, got {_kind(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise WireError(f"{where}: number {value} is not finite")
    if isinstance(value, int) and not _INT_MIN <= value <= _INT_MAX:
        raise WireError(f"{where}: number {_shown(value)} is outside 64 bits")
    return value


def _kind(value: Any) -> str:
    names = {bool: "boolean", int: "int", float: "float", str: "string", list: "list", dict: "object"}
    if value is None:
        return "null"
    if isinstance(value, list):
        return f"list of {len(value)}"
    return names.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _required(value: Any) -> Any:
    """Narrow an optional=False read for the type checker (the reader already raised if it was missing)."""
    assert value is not None
    return value


# -------------------------------- the sections


def _read_cpu(cpu: _Obj) -> CpuSample:
    load = cpu.numbers("loadAverage", 3)
    return CpuSample(
        overall=cpu.number("overall"),
        cores=tuple(_read_core(c) for c in cpu.objects("cores")),
        load_average=(load[0], load[1], load[2]) if load is not None else None,
        processes=cpu.integer("processes"),
        threads=cpu.integer("threads"),
        temperature=cpu.number("temperature"),
    )


def _read_core(core: _Obj) -> CoreSample:
    times = _required(core.obj("times", optional=False))
    return CoreSample(
        id=_required(core.integer("id", optional=False)),
        usage=core.number("usage"),
        frequency=core.number("frequency"),
        temperature=core.number("temperature"),
        times=CpuTimes(**{mode: _required(times.number(mode, optional=False)) for mode in _MODES}),
    )


_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _read_memory(mem: _Obj) -> MemorySample:
    swap = _required(mem.obj("swap", optional=False))
    return MemorySample(
        usage=mem.number("usage"),
        used=mem.integer("used"),
        total=mem.integer("total"),
        available=mem.integer("available"),
        swap=SwapSample(used=swap.integer("used"), total=swap.integer("total"), percentage=swap.number("percentage")),
    )


def _read_disk(disk: _Obj) -> DiskSample:
    return DiskSample(
        usage=disk.number("usage"),
        used=disk.integer("used"),
        total=disk.integer("total"),
        io_read=disk.number("ioRead"),
        io_write=disk.number("ioWrite"),
        iops=disk.number("iops"),
        devices=tuple(
            DiskDeviceSample(
                name=_required(d.text("name", optional=False)),
                read_bytes=d.integer("readBytes"),
                write_bytes=d.integer("writeBytes"),
                reads=d.integer("reads"),
                writes=d.integer("writes"),
                read_rate=d.number("readRate"),
                write_rate=d.number("writeRate"),
                iops=d.number("iops"),
            )
            for d in disk.objects("devices")
        ),
    )


def _read_network(net: _Obj) -> NetworkSample:
    return NetworkSample(
        bytes_in=net.number("bytesIn"),
        bytes_out=net.number("bytesOut"),
        packets_in=net.number("packetsIn"),
        packets_out=net.number("packetsOut"),
        connections=net.integer("connections"),
        interfaces=tuple(
            InterfaceSample(
                name=_required(i.text("name", optional=False)),
                bytes_recv=i.integer("bytesRecv"),
                bytes_sent=i.integer("bytesSent"),
                packets_recv=i.integer("packetsRecv"),
                packets_sent=i.integer("packetsSent"),
                bytes_in=i.number("bytesIn"),
                bytes_out=i.number("bytesOut"),
                packets_in=i.number("packetsIn"),
                packets_out=i.number("packetsOut"),
            )
            for i in net.objects("interfaces")
        ),
    )


def _read_container(box: _Obj) -> ContainerSample:
    ident, cpu, mem, pids = (_required(box.obj(k, optional=False)) for k in ("identity", "cpu", "memory", "pids"))
    return ContainerSample(
        identity=ContainerIdentity(
            path=_required(ident.text("path", optional=False)),
            version=_required(ident.integer("version", optional=False)),
            container_id=ident.text("containerId"),
            pod_uid=ident.text("podUid"),
            qos_class=ident.text("qosClass"),
            slurm_job_id=ident.text("slurmJobId"),
            systemd_unit=ident.text("systemdUnit"),
        ),
        cpu=ContainerCpu(
            limit_cores=cpu.number("limitCores"),
            usage=cpu.number("usage"),
            usage_seconds=cpu.number("usageSeconds"),
            throttled_periods=cpu.integer("throttledPeriods"),
            throttled_periods_rate=cpu.number("throttledPeriodsRate"),
            throttled_seconds=cpu.number("throttledSeconds"),
            throttled_seconds_rate=cpu.number("throttledSecondsRate"),
        ),
        memory=ContainerMemory(
            current=mem.integer("current"), max=mem.integer("max"), usage=mem.number("usage"),
            high=mem.integer("high"), swap=mem.integer("swap"), oom_kills=mem.integer("oomKills"),
            anon=mem.integer("anon"), file=mem.integer("file"),
        ),
        io=tuple(
            ContainerIoDevice(
                device=_required(d.text("device", optional=False)),
                read_bytes=_required(d.integer("readBytes", optional=False)),
                write_bytes=_required(d.integer("writeBytes", optional=False)),
                reads=_required(d.integer("reads", optional=False)),
                writes=_required(d.integer("writes", optional=False)),
                read_rate=_required(d.number("readRate", optional=False)),
                write_rate=_required(d.number("writeRate", optional=False)),
                read_iops=_required(d.number("readIops", optional=False)),
                write_iops=_required(d.number("writeIops", optional=False)),
            )
            for d in box.objects("io")
        ),
        pids=ContainerPids(current=pids.integer("current"), max=pids.integer("max")),
        pressure=_read_pressure(section) if (section := box.obj("pressure")) else None,
    )


def _read_pressure(pressure: _Obj) -> PressureSample:
    return PressureSample(*(_read_resource(r) if (r := pressure.obj(k)) else None for k in ("cpu", "memory", "io")))


def _read_resource(resource: _Obj) -> ResourcePressure:
    full = resource.obj("full")
    return ResourcePressure(some=_read_psi(_required(resource.obj("some", optional=False))),
                            full=_read_psi(full) if full else None)


def _read_psi(psi: _Obj) -> PsiFigures:
    avg10, avg60, avg300, total = (_required(psi.number(k, optional=False))
                                   for k in ("avg10", "avg60", "avg300", "total"))
    return PsiFigures(avg10=avg10, avg60=avg60, avg300=avg300, total=total)


def _read_energy(energy: _Obj) -> EnergySample:
    return EnergySample(
        cpu=tuple(
            RaplZone(
                zone=_required(z.text("zone", optional=False)),
                domain=_required(z.text("domain", optional=False)),
                package=z.integer("package"),
                joules=_required(z.number("joules", optional=False)),
                watts=z.number("watts"),
            )
            for z in energy.objects("cpu")
        ),
        gpus=tuple(
            GpuEnergy(
                id=_required(g.integer("id", optional=False)),
                vendor=g.text("vendor"),
                uuid=g.text("uuid"),
                joules=_required(g.number("joules", optional=False)),
                watts=g.number("watts"),
            )
            for g in energy.objects("gpus")
        ),
    )


# -------------------------------- the accelerator itself

_THROTTLE_REASONS_BY_NAME: dict[str, ThrottleReason] = {n: reason for reason, n in THROTTLE_REASON_NAMES.items()}
_NVML_READING_KEYS = (
    "memoryUtilization", "encoderUtilization", "decoderUtilization", "clocks", "powerLimit", "energy", "pcie",
    "eccErrors", "throttleReasons", "performanceState", "processes", "mig", "profiling",
)
_AMDGPU_READING_KEYS = ("memoryUtilization", "gtt", "temperatures", "powerLimit", "clocks", "energy")
_INTEL_READING_KEYS = ("frequency", "energy", "temperatures", "engines")
_ENGINES_BY_NAME: dict[str, EngineClass] = {n: engine for engine, n in ENGINE_NAMES.items()}


def accelerator_from_wire(data: dict[str, Any], path: str = "accelerator") -> AcceleratorSample:
    """The AcceleratorSample that `accelerator_to_wire` turns into `data`; WireError (a ValueError) names the bad field.

    Which details record a device carries follows from the keys its source always writes: `lost`
    (NVML), `card` (amdgpu), `ioClass` (ioreg), `driver` (Intel, which writes `card` too), `neuronCores`
    (neuron-monitor), `moduleId` (hl-smi). Unknown keys are ignored (a newer peer).
    """
    return _accelerator_from_obj(_Obj(data, path))


def _accelerator_from_obj(acc: _Obj) -> AcceleratorSample:
    memory = _required(acc.obj("memory", optional=False))
    return AcceleratorSample(
        id=_required(acc.integer("id", optional=False)),
        type=_required(acc.text("type", optional=False)),
        name=acc.text("name"),
        utilization=acc.number("utilization"),
        memory=AcceleratorMemory(
            used=memory.integer("used"), total=memory.integer("total"), percentage=memory.number("percentage")
        ),
        temperature=acc.number("temperature"),
        power=acc.number("power"),
        fan_speed=acc.number("fanSpeed"),
        vendor=acc.text("vendor"),
        uuid=acc.text("uuid"),
        details=_details(acc),
    )


def _details(acc: _Obj) -> AcceleratorDetails | None:
    anchors = [key for key in ("lost", "card", "ioClass", "driver", "neuronCores", "moduleId") if key in acc.body]
    if "driver" in anchors and "card" in anchors:
        anchors.remove("card")  # an Intel card names its card folder too
    if len(anchors) > 1:
        raise WireError(f"{acc.path}: {' and '.join(anchors)} belong to different sources")
    if "driver" in acc.body:
        return IntelDetails(
            card=_required(acc.text("card", optional=False)),
            driver=_required(acc.text("driver", optional=False)),
            bus_id=acc.text("busId"),
            runtime_status=acc.text("runtimeStatus"),
            readings=_intel_readings_from(acc) if _any_key(acc, _INTEL_READING_KEYS) else None,
        )
    if "lost" in acc.body:
        return NvmlDetails(
            bus_id=acc.text("busId"),
            lost=_flag(acc, "lost"),
            readings=_nvml_readings_from(acc) if _any_key(acc, _NVML_READING_KEYS) else None,
        )
    if "card" in acc.body:
        return AmdgpuDetails(
            card=_required(acc.text("card", optional=False)),
            bus_id=acc.text("busId"),
            runtime_status=acc.text("runtimeStatus"),
            readings=_amdgpu_readings_from(acc) if _any_key(acc, _AMDGPU_READING_KEYS) else None,
        )
    if "ioClass" in acc.body:
        return IoregDetails(
            io_class=_required(acc.text("ioClass", optional=False)),
            renderer_utilization=acc.number("rendererUtilization"),
            tiler_utilization=acc.number("tilerUtilization"),
            allocated_memory=acc.integer("allocatedMemory"),
            core_count=acc.integer("coreCount"),
        )
    if "neuronCores" in acc.body:
        return _neuron_details_from(acc)
    if "moduleId" in acc.body:
        return HabanaDetails(bus_id=acc.text("busId"), module_id=acc.integer("moduleId"),
                             ecc_errors=_ecc_from(acc.obj("eccErrors")))
    return None


def _neuron_details_from(acc: _Obj) -> NeuronDetails:
    errors = acc.obj("executionErrors")
    return NeuronDetails(
        device_type=acc.text("deviceType"),
        core_version=acc.text("coreVersion"),
        cores=tuple(
            NeuronCoreUse(_required(c.integer("index", optional=False)), c.number("utilization"),
                          c.integer("memoryUsed"))
            for c in acc.objects("neuronCores")
        ),
        ecc_errors=_ecc_from(acc.obj("eccErrors")),
        sram_ecc_errors=_ecc_from(acc.obj("sramEccErrors")),
        execution_errors=NeuronErrorCounts(
            **{k: _required(errors.integer(k, optional=False)) for k in NEURON_ERROR_KINDS}) if errors else None,
        runtimes=_integers(acc, "runtimes"),
    )


def _ecc_from(ecc: _Obj | None) -> EccErrors:
    return EccErrors(ecc.integer("corrected"), ecc.integer("uncorrected")) if ecc else EccErrors()


def _integers(obj: _Obj, key: str) -> tuple[int, ...]:
    value, where = obj._get(key, optional=True)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(
            isinstance(x, int) and not isinstance(x, bool) and _INT_MIN <= x <= _INT_MAX for x in value):
        raise WireError(f"{where}: expected list of 64-bit integers, got {_kind(value)}")
    return tuple(value)


def _nvml_readings_from(acc: _Obj) -> NvmlReadings:
    pcie, ecc = acc.obj("pcie"), acc.obj("eccErrors")
    mig, profiling = acc.obj("mig"), acc.obj("profiling")
    return NvmlReadings(
        memory_utilization=acc.number("memoryUtilization"),
        encoder_utilization=acc.number("encoderUtilization"),
        decoder_utilization=acc.number("decoderUtilization"),
        clocks=_clocks_from(acc.obj("clocks")),
        power_limit=acc.number("powerLimit"),
        energy=acc.number("energy"),
        pcie=PcieThroughput(rx=pcie.number("rx"), tx=pcie.number("tx")) if pcie else PcieThroughput(),
        ecc_errors=EccErrors(ecc.integer("corrected"), ecc.integer("uncorrected")) if ecc else EccErrors(),
        throttle_reasons=_throttle_reasons_from(acc),
        performance_state=acc.integer("performanceState"),
        processes=tuple(
            GpuProcess(_required(p.integer("pid", optional=False)), p.text("name"), p.integer("usedMemory"),
                       p.number("utilization"))
            for p in acc.objects("processes")
        ) if acc.body.get("processes") is not None else None,
        mig=_mig_from(mig) if mig else None,
        profiling=Profiling(**{f: profiling.number(key) for f, key in PROFILING_NAMES.items()}) if profiling else None,
    )


def _amdgpu_readings_from(acc: _Obj) -> AmdgpuReadings:
    temps = acc.obj("temperatures")
    return AmdgpuReadings(
        memory_utilization=acc.number("memoryUtilization"),
        gtt=_memory_use_from(acc.obj("gtt")) or MemoryUse(),
        temperatures=tuple(
            TemperatureSensor(label, _required(temps.number(label, optional=False))) for label in temps.body
        ) if temps else None,
        power_limit=acc.number("powerLimit"),
        clocks=_clocks_from(acc.obj("clocks")),
        energy=acc.number("energy"),
    )


def _intel_readings_from(acc: _Obj) -> IntelReadings:
    frequency, engines = acc.obj("frequency"), acc.obj("engines")
    return IntelReadings(
        frequency=GtFrequency(frequency.number("actual"), frequency.number("max")) if frequency else GtFrequency(),
        energy=acc.number("energy"),
        temperatures=_temperatures_from(acc.obj("temperatures")),
        engines=tuple(
            EngineUse(_ENGINES_BY_NAME[name], engines.number(name)) for name in engines.body if name in _ENGINES_BY_NAME
        ) if engines else (),
    )


def _temperatures_from(temps: _Obj | None) -> tuple[TemperatureSensor, ...] | None:
    if temps is None:
        return None
    return tuple(TemperatureSensor(label, _required(temps.number(label, optional=False))) for label in temps.body)


def _clocks_from(clocks: _Obj | None) -> Clocks:
    return Clocks(sm=clocks.number("sm"), memory=clocks.number("memory")) if clocks else Clocks()


def _memory_use_from(mem: _Obj | None) -> MemoryUse | None:
    return MemoryUse(used=mem.integer("used"), total=mem.integer("total")) if mem else None


def _mig_from(mig: _Obj) -> MigState:
    return MigState(
        enabled=_flag(mig, "enabled"),
        pending=_flag(mig, "pending"),
        instances=tuple(
            MigInstance(
                index=_required(i.integer("index", optional=False)),
                uuid=i.text("uuid"),
                gpu_instance_id=i.integer("gpuInstanceId"),
                compute_instance_id=i.integer("computeInstanceId"),
                memory=_memory_use_from(i.obj("memory")),
                profiling=_mig_profiling_from(section) if (section := i.obj("profiling")) else None,
            )
            for i in mig.objects("instances")
        ),
    )


def _throttle_reasons_from(acc: _Obj) -> tuple[ThrottleReason, ...] | None:
    value, where = acc.body.get("throttleReasons"), f"{acc.path}.throttleReasons"
    if value is None:
        return None
    if not isinstance(value, list):
        raise WireError(f"{where}: expected list of strings, got {_kind(value)}")
    reasons: list[ThrottleReason] = []
    for i, name in enumerate(value):
        if not isinstance(name, str) or name not in _THROTTLE_REASONS_BY_NAME:
            raise WireError(f"{where}[{i}]: expected a throttle reason name, got {_shown(name)}")
        reasons.append(_THROTTLE_REASONS_BY_NAME[name])
    return tuple(reasons)


def _flag(obj: _Obj, key: str) -> bool:
    value = obj.body.get(key)
    if not isinstance(value, bool):
        raise WireError(f"{obj.path}.{key}: expected boolean, got {_kind(value)}")
    return value


def _any_key(obj: _Obj, keys: tuple[str, ...]) -> bool:
    return any(key in obj.body for key in keys)


# ---------------------------------------------------------------- processes (GET /api/system/processes)

# The `sort` query values and the collector's names for them.
PROCESS_SORTS = {"cpu": "cpu", "memory": "memory", "gpuMemory": "gpu_memory"}


def gpu_use_to_wire(use: GpuProcessUse) -> dict[str, Any]:
    return {"device": use.device, "vendor": use.vendor, "memory": use.memory, "utilization": use.utilization}


def process_to_wire(proc: ProcessSample) -> dict[str, Any]:
    return {
        "pid": proc.pid, "ppid": proc.ppid, "name": proc.name, "cmdline": proc.cmdline, "user": proc.user,
        "state": proc.state, "cpu": proc.cpu, "rss": proc.rss, "threads": proc.threads, "fds": proc.fds,
        "ioReadRate": proc.read_rate, "ioWriteRate": proc.write_rate, "startTime": proc.start_time,
        "cgroup": proc.cgroup, "containerId": proc.container_id, "gpu": [gpu_use_to_wire(u) for u in proc.gpu],
    }


def process_tree_to_wire(tree: ProcessTree) -> dict[str, Any]:
    return {
        "pids": list(tree.pids), "cpu": tree.cpu, "rss": tree.rss, "threads": tree.threads, "fds": tree.fds,
        "ioReadRate": tree.read_rate, "ioWriteRate": tree.write_rate, "gpu": [gpu_use_to_wire(u) for u in tree.gpu],
    }


def processes_body(timestamp: int, sort: str, rows: tuple[ProcessSample, ...], total: int) -> dict[str, Any]:
    """The list response: `total` processes were read, `rows` are the first by `sort`."""
    return {"timestamp": timestamp, "sort": sort, "total": total, "processes": [process_to_wire(p) for p in rows]}


def process_body(timestamp: int, tree: ProcessTree | None, proc: ProcessSample) -> dict[str, Any]:
    """One process, and its summed descendant tree when asked for (`tree` null otherwise)."""
    return {
        "timestamp": timestamp, "process": process_to_wire(proc),
        "tree": process_tree_to_wire(tree) if tree is not None else None,
    }


def processes_from_wire(data: Any) -> tuple[ProcessSample, ...]:
    """The rows of a `processes_body`; raises WireError naming the bad field."""
    return tuple(_process_from(p) for p in _Obj(data, "processes").objects("processes"))


def process_from_wire(data: Any) -> tuple[ProcessSample, ProcessTree | None]:
    """The process of a `process_body`, and its tree when the body has one."""
    body = _Obj(data, "body")
    proc = _process_from(_required(body.obj("process", optional=False)))
    tree = body.obj("tree")
    return proc, _tree_from(tree, proc) if tree is not None else None


def _process_from(p: _Obj) -> ProcessSample:
    return ProcessSample(
        pid=_required(p.integer("pid", optional=False)), ppid=_required(p.integer("ppid", optional=False)),
        name=_required(p.text("name", optional=False)), cmdline=_required(p.text("cmdline", optional=False)),
        user=p.text("user"), state=_required(p.text("state", optional=False)), cpu=p.number("cpu"),
        rss=_required(p.integer("rss", optional=False)), threads=_required(p.integer("threads", optional=False)),
        fds=p.integer("fds"), read_rate=p.number("ioReadRate"), write_rate=p.number("ioWriteRate"),
        start_time=_required(p.integer("startTime", optional=False)), cgroup=p.text("cgroup"),
        container_id=p.text("containerId"), gpu=_gpu_uses_from(p),
    )


def _tree_from(t: _Obj, root: ProcessSample) -> ProcessTree:
    pids, where = t._get("pids", optional=False)
    if not isinstance(pids, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in pids):
        raise WireError(f"{where}: expected list of integers, got {_kind(pids)}")
    return ProcessTree(
        root=root, pids=tuple(pids), cpu=t.number("cpu"), rss=_required(t.integer("rss", optional=False)),
        threads=_required(t.integer("threads", optional=False)), fds=t.integer("fds"),
        read_rate=t.number("ioReadRate"), write_rate=t.number("ioWriteRate"), gpu=_gpu_uses_from(t),
    )


def _gpu_uses_from(owner: _Obj) -> tuple[GpuProcessUse, ...]:
    return tuple(
        GpuProcessUse(
            device=_required(u.integer("device", optional=False)), vendor=_required(u.text("vendor", optional=False)),
            memory=u.integer("memory"), utilization=u.number("utilization"),
        )
        for u in owner.objects("gpu")
    )


# ---------------------------------------------------------------- MIG profiling and the fabric section

# MigProfiling field -> its wire name.
MIG_PROFILING_NAMES = {"graphics_active": "graphicsActive", "sm_active": "smActive", "dram_active": "dramActive"}
# NvlinkErrors field -> its wire name.
NVLINK_ERROR_NAMES = {"crc_flit": "crcFlit", "crc_data": "crcData", "replay": "replay", "recovery": "recovery"}
# InfinibandErrors field -> its wire name.
INFINIBAND_ERROR_NAMES = {
    "symbol_errors": "symbolErrors",
    "link_error_recovery": "linkErrorRecovery",
    "link_downed": "linkDowned",
    "rcv_errors": "rcvErrors",
    "rcv_remote_physical_errors": "rcvRemotePhysicalErrors",
    "rcv_switch_relay_errors": "rcvSwitchRelayErrors",
    "xmit_discards": "xmitDiscards",
    "xmit_constraint_errors": "xmitConstraintErrors",
    "rcv_constraint_errors": "rcvConstraintErrors",
    "local_link_integrity_errors": "localLinkIntegrityErrors",
    "excessive_buffer_overrun_errors": "excessiveBufferOverrunErrors",
    "vl15_dropped": "vl15Dropped",
}


def _mig_profiling(p: MigProfiling) -> dict[str, Any]:
    return {name: getattr(p, f) for f, name in MIG_PROFILING_NAMES.items()}


def fabric_to_wire(fabric: FabricSample) -> dict[str, Any]:
    """NVLink links and InfiniBand/RoCE ports: bytes and packets cumulative, rates per second, link rates in bits/s;
    a source is null when its collector did not run or failed this tick."""
    return {
        "nvlink": [_nvlink(link) for link in fabric.nvlink.links] if fabric.nvlink is not None else None,
        "infiniband": [_ib_port(p) for p in fabric.infiniband.ports] if fabric.infiniband is not None else None,
    }


def _nvlink(link: NvlinkLink) -> dict[str, Any]:
    return {
        "gpu": link.gpu, "uuid": link.uuid, "link": link.link, "state": link.state, "speed": link.speed,
        "txBytes": link.tx_bytes, "rxBytes": link.rx_bytes, "txRate": link.tx_rate, "rxRate": link.rx_rate,
        "errors": {name: getattr(link.errors, f) for f, name in NVLINK_ERROR_NAMES.items()},
    }


def _ib_port(port: InfinibandPort) -> dict[str, Any]:
    return {
        "device": port.device, "port": port.port, "linkLayer": port.link_layer, "state": port.state,
        "physicalState": port.physical_state, "rate": port.rate,
        "txBytes": port.tx_bytes, "rxBytes": port.rx_bytes, "txPackets": port.tx_packets, "rxPackets": port.rx_packets,
        "txRate": port.tx_rate, "rxRate": port.rx_rate,
        "txPacketsRate": port.tx_packets_rate, "rxPacketsRate": port.rx_packets_rate,
        "errors": {name: getattr(port.errors, f) for f, name in INFINIBAND_ERROR_NAMES.items()},
        # The driver's own counter names (mlx5: out_of_buffer, np_cnp_sent, ...): data, not schema keys.
        "hwCounters": {c.name: c.value for c in port.hw_counters},
    }


def _mig_profiling_from(p: _Obj) -> MigProfiling:
    return MigProfiling(**{f: p.number(name) for f, name in MIG_PROFILING_NAMES.items()})


def _read_fabric(fabric: _Obj) -> FabricSample:
    nvlink = fabric.body.get("nvlink") is not None
    infiniband = fabric.body.get("infiniband") is not None
    return FabricSample(
        nvlink=NvlinkSample(tuple(_nvlink_from(o) for o in fabric.objects("nvlink"))) if nvlink else None,
        infiniband=InfinibandSample(tuple(_ib_port_from(o) for o in fabric.objects("infiniband")))
        if infiniband else None,
    )


def _nvlink_from(link: _Obj) -> NvlinkLink:
    errors = link.obj("errors")
    return NvlinkLink(
        gpu=_required(link.integer("gpu", optional=False)), uuid=link.text("uuid"),
        link=_required(link.integer("link", optional=False)), state=link.text("state"), speed=link.number("speed"),
        tx_bytes=link.integer("txBytes"), rx_bytes=link.integer("rxBytes"),
        tx_rate=link.number("txRate"), rx_rate=link.number("rxRate"),
        errors=NvlinkErrors(**{f: errors.integer(name) for f, name in NVLINK_ERROR_NAMES.items()})
        if errors else NvlinkErrors(),
    )


def _ib_port_from(port: _Obj) -> InfinibandPort:
    errors, hw = port.obj("errors"), port.obj("hwCounters")
    return InfinibandPort(
        device=_required(port.text("device", optional=False, empty=False)),
        port=_required(port.integer("port", optional=False)),
        link_layer=port.text("linkLayer"), state=port.text("state"), physical_state=port.text("physicalState"),
        rate=port.number("rate"), tx_bytes=port.integer("txBytes"), rx_bytes=port.integer("rxBytes"),
        tx_packets=port.integer("txPackets"), rx_packets=port.integer("rxPackets"),
        tx_rate=port.number("txRate"), rx_rate=port.number("rxRate"),
        tx_packets_rate=port.number("txPacketsRate"), rx_packets_rate=port.number("rxPacketsRate"),
        errors=InfinibandErrors(**{f: errors.integer(name) for f, name in INFINIBAND_ERROR_NAMES.items()})
        if errors else InfinibandErrors(),
        hw_counters=tuple(HwCounter(name, _required(hw.integer(name, optional=False))) for name in hw.body)
        if hw else (),
    )
