"""Pure parser of one `neuron-monitor` report (one JSON document per line) into per-device samples.

The format is the one the AWS Neuron "Neuron Monitor User Guide" documents: `neuron_hardware_info`
(devices, cores per device, memory per device), `neuron_runtime_data[].report` per Neuron
application (`neuroncore_counters`, `memory_used`, `execution_stats`) and
`system_data.neuron_hw_counters` (ECC). A field of the wrong type reads as unknown (None); text
that is not a JSON object raises `ParseError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ParseError
from ..model import AcceleratorMemory, AcceleratorSample, EccErrors, NeuronCoreUse, NeuronDetails, NeuronErrorCounts
from ..rates import percent

ERROR_KINDS = ("generic", "numerical", "transient", "model", "runtime", "hardware")


@dataclass(frozen=True, slots=True)
class NeuronHardware:
    """`neuron_hardware_info`: what the instance has."""

    device_type: str | None
    core_version: str | None
    device_count: int
    device_memory: int | None  # bytes per device
    cores_per_device: int


@dataclass(frozen=True, slots=True)
class NeuronRuntime:
    """One Neuron application's report; a mapping is None when its metric group says it failed."""

    pid: int | None
    utilization: dict[int, float] | None  # NeuronCore index -> %
    memory: dict[int, int] | None  # NeuronCore index -> device bytes allocated for it
    errors: NeuronErrorCounts | None  # execution errors in the last period


@dataclass(frozen=True, slots=True)
class NeuronReport:
    """One report: hardware (None with `hardware_error` when the driver cannot say), runtimes and ECC counters."""

    hardware: NeuronHardware | None
    hardware_error: str | None
    runtimes: tuple[NeuronRuntime, ...]
    ecc: dict[int, tuple[EccErrors, EccErrors]]  # device -> (DRAM, SRAM)


def parse_report(line: str) -> NeuronReport:
    """One neuron-monitor line; ParseError when it is not a JSON object."""
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"neuron-monitor printed a line that is not JSON ({exc}): {line[:80]!r}") from None
    if not isinstance(doc, dict):
        raise ParseError(f"neuron-monitor printed JSON that is not an object: {line[:80]!r}")
    hardware, hardware_error = _hardware(_obj(doc, "neuron_hardware_info"))
    runtimes = tuple(_runtime(r) for r in _list(doc, "neuron_runtime_data") if isinstance(r, dict))
    return NeuronReport(hardware, hardware_error, runtimes, _ecc(_obj(_obj(doc, "system_data"), "neuron_hw_counters")))


def neuron_devices(report: NeuronReport, hardware: NeuronHardware) -> tuple[AcceleratorSample, ...]:
    """One sample per Neuron device; a core no application uses is 0 % busy and holds 0 bytes."""
    utilization: dict[int, float] | None = {}
    memory: dict[int, int] | None = {}
    for runtime in report.runtimes:
        utilization = _merge(utilization, runtime.utilization)
        memory = _merge(memory, runtime.memory)
    return tuple(_device(report, hardware, d, utilization, memory) for d in range(hardware.device_count))


def _device(report: NeuronReport, hw: NeuronHardware, index: int,
            utilization: dict[int, float] | None, memory: dict[int, int] | None) -> AcceleratorSample:
    indices = range(index * hw.cores_per_device, (index + 1) * hw.cores_per_device)
    cores = tuple(
        NeuronCoreUse(
            index=c,
            utilization=utilization.get(c, 0.0) if utilization is not None else None,
            memory_used=memory.get(c, 0) if memory is not None else None,
        )
        for c in indices
    )
    busy = [c.utilization for c in cores if c.utilization is not None]
    used = sum(c.memory_used for c in cores if c.memory_used is not None) if memory is not None else None
    users = [r for r in report.runtimes if any(c in (r.utilization or {}) or c in (r.memory or {}) for c in indices)]
    dram, sram = report.ecc.get(index, (EccErrors(), EccErrors()))
    return AcceleratorSample(
        id=index,
        type="npu",
        name=hw.device_type,
        utilization=round(sum(busy) / len(busy), 2) if busy and len(busy) == len(cores) else None,
        memory=AcceleratorMemory(used=used, total=hw.device_memory, percentage=percent(used, hw.device_memory)),
        temperature=None,  # neuron-monitor reports neither temperature, power nor fans
        power=None,
        fan_speed=None,
        vendor="aws",
        details=NeuronDetails(
            device_type=hw.device_type,
            core_version=hw.core_version,
            cores=cores,
            ecc_errors=dram,
            sram_ecc_errors=sram,
            execution_errors=_sum_errors([r.errors for r in users]) if users else None,
            runtimes=tuple(sorted(r.pid for r in users if r.pid is not None)),
        ),
    )


# ---------------------------------------------------------------- sections


def _hardware(info: dict[str, Any]) -> tuple[NeuronHardware | None, str | None]:
    error = _text(info, "error")
    if error:
        return None, error
    count, per_device = _int(info, "neuron_device_count"), _int(info, "neuroncore_per_device_count")
    if count is None or per_device is None or per_device <= 0 or count > 1024:
        return None, "neuron_hardware_info has no device count or cores per device"
    return NeuronHardware(
        device_type=_text(info, "neuron_device_type"),
        core_version=_text(info, "neuroncore_version"),
        device_count=count,
        device_memory=_int(info, "neuron_device_memory_size"),
        cores_per_device=per_device,
    ), None


def _runtime(entry: dict[str, Any]) -> NeuronRuntime:
    report = _obj(entry, "report")
    counters, used, stats = (_obj(report, k) for k in ("neuroncore_counters", "memory_used", "execution_stats"))
    failed = bool(_text(entry, "error"))
    return NeuronRuntime(
        pid=_int(entry, "pid"),
        utilization=None if failed or _text(counters, "error") else _core_map(
            _obj(counters, "neuroncores_in_use"), lambda core: _number(core, "neuroncore_utilization")),
        memory=None if failed or _text(used, "error") else _core_map(
            _obj(_obj(_obj(used, "neuron_runtime_used_bytes"), "usage_breakdown"), "neuroncore_memory_usage"),
            _bytes_total),
        errors=None if failed or _text(stats, "error") or "error_summary" not in stats else NeuronErrorCounts(
            **{kind: _int(_obj(stats, "error_summary"), kind) or 0 for kind in ERROR_KINDS}),
    )


def _ecc(counters: dict[str, Any]) -> dict[int, tuple[EccErrors, EccErrors]]:
    found: dict[int, tuple[EccErrors, EccErrors]] = {}
    for device in _list(counters, "neuron_devices"):
        if isinstance(device, dict) and (index := _int(device, "neuron_device_index")) is not None:
            found[index] = (
                EccErrors(corrected=_int(device, "mem_ecc_corrected"), uncorrected=_int(device, "mem_ecc_uncorrected")),
                EccErrors(corrected=_int(device, "sram_ecc_corrected"),
                          uncorrected=_int(device, "sram_ecc_uncorrected")),
            )
    return found


def _core_map(cores: dict[str, Any], read: Any) -> dict[int, Any] | None:
    """{"0": {...}, "1": {...}} -> {0: read(...), ...}; None when a core's value cannot be read."""
    out: dict[int, Any] = {}
    for key, value in cores.items():
        if not (key.isascii() and key.isdigit()) or not isinstance(value, dict) or (reading := read(value)) is None:
            return None
        out[int(key)] = reading
    return out


def _bytes_total(breakdown: dict[str, Any]) -> int | None:
    """The device bytes of one core: the sum of its categories (constants, model code, tensors...)."""
    values = [v for v in breakdown.values() if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    return sum(values) if len(values) == len(breakdown) else None


def _merge(into: dict[int, Any] | None, more: dict[int, Any] | None) -> dict[int, Any] | None:
    """Per-core readings of every runtime together; one unknown runtime makes the whole unknown."""
    if into is None or more is None:
        return None
    return {**into, **{c: into.get(c, 0) + v for c, v in more.items()}}


def _sum_errors(counts: list[NeuronErrorCounts | None]) -> NeuronErrorCounts | None:
    if any(c is None for c in counts):
        return None
    return NeuronErrorCounts(**{k: sum(getattr(c, k) for c in counts) for k in ERROR_KINDS})


# ---------------------------------------------------------------- typed reads of one JSON object


def _obj(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def _list(parent: dict[str, Any], key: str) -> list[Any]:
    value = parent.get(key)
    return value if isinstance(value, list) else []


def _text(parent: dict[str, Any], key: str) -> str | None:
    value = parent.get(key)
    return value if isinstance(value, str) and value else None


def _int(parent: dict[str, Any], key: str) -> int | None:
    value = parent.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else None


def _number(parent: dict[str, Any], key: str) -> float | None:
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1e6:
        return None
    return round(float(value), 2)
