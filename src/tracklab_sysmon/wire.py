"""The one place that knows the JSON shape: records to camelCase dicts, encoded with orjson."""

from __future__ import annotations

from typing import Any

import orjson

from .model import (
    AcceleratorSample,
    CoreSample,
    CpuSample,
    DiskSample,
    MemorySample,
    NetworkSample,
    Snapshot,
    SystemInfo,
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
    body.update(acc.extra)
    return body


def system_info_to_wire(info: SystemInfo) -> dict[str, Any]:
    body = {
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
    body.update(info.extra)
    return body


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
