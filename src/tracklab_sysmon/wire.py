"""The one place that knows the JSON shape: records to camelCase dicts, encoded with orjson."""

from __future__ import annotations

from typing import Any

import orjson

from .model import (
    AcceleratorSample,
    AmdgpuDetails,
    AmdgpuReadings,
    Clocks,
    CoreSample,
    CpuSample,
    DiskSample,
    GpuProcess,
    IoregDetails,
    MemorySample,
    MemoryUse,
    MigState,
    NetworkSample,
    NvmlDetails,
    NvmlReadings,
    Snapshot,
    SystemInfo,
    ThrottleReason,
)

def encode(value: Any) -> bytes:
    """JSON bytes; NaN/inf never appear because every float is produced finite or None."""
    return orjson.dumps(value)


def decode(data: bytes | str) -> Any:
    return orjson.loads(data)


def snapshot_to_wire(snap: Snapshot) -> dict[str, Any]:
    return {
        "node_id": snap.node_id,
        "timestamp": snap.timestamp,
        "cpu": cpu_to_wire(snap.cpu) if snap.cpu else None,
        "memory": memory_to_wire(snap.memory) if snap.memory else None,
        "disk": disk_to_wire(snap.disk) if snap.disk else None,
        "network": network_to_wire(snap.network) if snap.network else None,
        "accelerators": [accelerator_to_wire(a) for a in snap.accelerators],
    }


def cpu_to_wire(cpu: CpuSample) -> dict[str, Any]:
    return {
        "overall": cpu.overall,
        "cores": [_core(c) for c in cpu.cores],
        "loadAverage": list(cpu.load_average) if cpu.load_average else None,
        "processes": cpu.processes,
        "threads": cpu.threads,
        "temperature": cpu.temperature,
    }


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


def disk_to_wire(disk: DiskSample) -> dict[str, Any]:
    return {
        "usage": disk.usage,
        "used": disk.used,
        "total": disk.total,
        "ioRead": disk.io_read,
        "ioWrite": disk.io_write,
        "iops": disk.iops,
        "devices": [
            {
                "name": d.name, "readBytes": d.read_bytes, "writeBytes": d.write_bytes,
                "reads": d.reads, "writes": d.writes, "readRate": d.read_rate,
                "writeRate": d.write_rate, "iops": d.iops,
            }
            for d in disk.devices
        ],
    }


def network_to_wire(net: NetworkSample) -> dict[str, Any]:
    return {
        "bytesIn": net.bytes_in,
        "bytesOut": net.bytes_out,
        "packetsIn": net.packets_in,
        "packetsOut": net.packets_out,
        "connections": net.connections,
        "interfaces": [
            {
                "name": i.name, "bytesRecv": i.bytes_recv, "bytesSent": i.bytes_sent,
                "packetsRecv": i.packets_recv, "packetsSent": i.packets_sent,
                "bytesIn": i.bytes_in, "bytesOut": i.bytes_out,
                "packetsIn": i.packets_in, "packetsOut": i.packets_out,
            }
            for i in net.interfaces
        ],
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
    elif isinstance(details, IoregDetails):
        body.update(
            rendererUtilization=details.renderer_utilization,
            tilerUtilization=details.tiler_utilization,
            allocatedMemory=details.allocated_memory,
            coreCount=details.core_count,
            ioClass=details.io_class,
        )
    return body


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
    }


def _clocks(clocks: Clocks) -> dict[str, Any]:
    return {"sm": clocks.sm, "memory": clocks.memory}


def _memory_use(mem: MemoryUse) -> dict[str, Any]:
    return {"used": mem.used, "total": mem.total}


def _process(proc: GpuProcess) -> dict[str, Any]:
    return {"pid": proc.pid, "name": proc.name, "usedMemory": proc.used_memory}


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
            }
            for i in mig.instances
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
