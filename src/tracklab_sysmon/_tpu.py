"""The one module that asks libtpu's runtime metrics service (gRPC, what `tpu-info` reads); needs the `tpu` extra.

Importing it imports protobuf, hpack and hyperframe: `collectors/tpu.py` imports it only once a TPU is
there, so that a machine without the extra (or without a TPU) never loads them. The calls go through
`_grpc_unary` (plain HTTP/2 on loopback, as gRPC's local credentials carry them) rather than grpcio, whose
import and threads would cost more than the rest of the service (docs/performance.md). Every call
carries a deadline; the connection is made again, after a short back-off, when the service comes back.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

from google.protobuf.message import DecodeError

from ._grpc_unary import UnaryChannel
from ._tpu_proto.tpu_metric_service_pb2 import AttrValue, Metric, MetricRequest, MetricResponse
from .errors import RpcError, RpcFailed

DEFAULT_ADDRESS = "localhost:8431"  # libtpu's default (TPU_RUNTIME_METRICS_PORTS), as tpu-info asks it
MEMORY_USED = "tpu.runtime.hbm.memory.usage.bytes"
MEMORY_TOTAL = "tpu.runtime.hbm.memory.total.bytes"
DUTY_CYCLE = "tpu.runtime.tensorcore.dutycycle.percent"
TOTAL_SECONDS = 60.0  # total HBM is asked again this often (and after any failed call)
# Used HBM is asked this often, the duty cycle every tick: one gRPC call a tick instead of two (each costs about
# 0.1 ms of CPU hot, 0.4 ms at 1 Hz; benchmarks/bench_tpu_transport.py). HBM is allocated by the framework in
# large, long-lived buffers (JAX preallocates most of it), so a reading up to 5 s old is what NVIDIA's process
# memory gets too.
USED_SECONDS = 5.0
_METHOD = "/tpu.monitoring.runtime.RuntimeMetricService/GetRuntimeMetric"  # the proto's one method
# Each request serialized once: the calls send these bytes, not a message built per call.
_REQUESTS = {name: MetricRequest(metric_name=name).SerializeToString()
             for name in (MEMORY_USED, MEMORY_TOTAL, DUTY_CYCLE)}
Row = tuple[int, "int | None", "int | None", "float | None"]  # TpuReading's fields, as the collector reads them


class TpuReading(NamedTuple):
    """One TPU device (a TensorCore's HBM and its chip's duty cycle); None where the service gave no value: a `Row`
    with its fields named (`readings_from`; the client's ticks hand out plain rows)."""

    device: int
    memory_used: int | None  # bytes
    memory_total: int | None  # bytes
    duty_cycle: float | None  # % of the period the TensorCores were busy


class MetricsClient:
    """A connection to the service, kept (made on the first call); `read` waits at most its deadline."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = UnaryChannel(address)  # connects on the first call, as tpu-info's channel does
        self._total: dict[int, float | None] | None = None  # HBM per device does not change while the runtime lives
        self._total_at = 0.0
        self._used: dict[int, float | None] | None = None
        self._used_at = 0.0
        self._memory: _Memory | None = None  # from _used and _total, made again when either is asked again

    def read(self, deadline: float, now: float | None = None) -> list[Row]:
        """The duty cycle, used HBM (asked again every USED_SECONDS of `now`, the monotonic clock by default)
        and total HBM (every TOTAL_SECONDS), one call after another within `deadline` seconds in all, as
        TpuReading's fields per device (plain tuples: 8 a tick); RpcFailed says which status ended it."""
        end = time.monotonic() + deadline
        now = end if now is None else now
        try:
            duty = _by_device(self._ask(DUTY_CYCLE, end).metric.metrics)
            if self._used is None or now - self._used_at >= USED_SECONDS:
                self._used, self._used_at, self._memory = by_device(self._ask(MEMORY_USED, end)), now, None
            if self._total is None or now - self._total_at >= TOTAL_SECONDS:
                self._total, self._total_at, self._memory = by_device(self._ask(MEMORY_TOTAL, end)), now, None
        except RpcError as exc:
            self._total = self._used = None  # the runtime may come back on other chips: all asked afresh
            raise RpcFailed(f"TPU runtime metrics service at {self.address}", str(exc)) from None
        if self._memory is None:
            assert self._used is not None and self._total is not None
            self._memory = _Memory.of(self._used, self._total)
        return self._memory.rows_with(duty)

    def _ask(self, metric: str, end: float) -> MetricResponse:
        answer = self._channel.call(_METHOD, _REQUESTS[metric], end - time.monotonic())
        try:
            return MetricResponse.FromString(answer)
        except DecodeError as exc:
            raise RpcError("INTERNAL", f"the answer is not a MetricResponse: {exc}") from None

    def close(self) -> None:
        self._channel.close()


def readings_from(used: MetricResponse, total: MetricResponse, duty: MetricResponse) -> tuple[TpuReading, ...]:
    """One reading per device that reports HBM, in device order (pure: messages in, records out).

    Duty cycle is per chip on TPUs with two TensorCores per chip (v2, v3) and per core elsewhere, as
    in tpu-info: when the service gives fewer duty-cycle points than memory points, each chip's
    value is repeated for its cores.
    """
    return tuple([TpuReading(*row) for row in _Memory.of(by_device(used), by_device(total)).rows_with(by_device(duty))])


def by_device(response: MetricResponse) -> dict[int, float | None]:
    """One metric's value per device (None where the point holds no number)."""
    return _by_device(response.metric.metrics)


class _Memory(NamedTuple):
    """HBM per device as the last memory answers gave it, ready for each tick's duty cycles (asked every tick)."""

    rows: tuple[tuple[int, int | None, int | None], ...]  # (device, used bytes, total bytes) in device order
    devices: list[int]
    device_set: frozenset[int]

    @classmethod
    def of(cls, used_by: dict[int, float | None], total_by: dict[int, float | None]) -> _Memory:
        devices = sorted(used_by.keys() | total_by.keys())
        rows = tuple((d, _bytes(used_by.get(d)), _bytes(total_by.get(d))) for d in devices)
        return cls(rows, devices, frozenset(devices))

    def rows_with(self, duty_by: dict[int, float | None]) -> list[Row]:
        """One row per device with its duty cycle: one in 0-100 % rounded to 2 places, else None."""
        duty = (duty_by if self.device_set <= duty_by.keys() else _duty_per_device(self.devices, duty_by)).get
        return [(d, used, total, round(value, 2) if (value := duty(d)) is not None and 0.0 <= value <= 100.0 else None)
                for d, used, total in self.rows]


def _duty_per_device(devices: list[int], duty_by: dict[int, float | None]) -> dict[int, float | None]:
    if set(devices) <= duty_by.keys() or not duty_by:
        return duty_by
    chips = [duty_by[c] for c in sorted(duty_by)]
    if len(devices) % len(chips):
        return {}  # no way to tell which chip a core is on: unknown rather than guessed
    per_chip = len(devices) // len(chips)
    return {d: chips[rank // per_chip] for rank, d in enumerate(devices)}


def _by_device(metrics: Sequence[Metric]) -> dict[int, float | None]:
    """One metric's value per device (None where the point holds no number); a point without a device is left out.

    Every point of a tick's answer is read here: the device id of an integer attribute and the gauge are taken
    inline, other attributes by `_device_of`. A point whose measure is not a gauge reads as an empty Gauge (no
    value: None), so its measure need not be asked."""
    found: dict[int, float | None] = {}
    for metric in metrics:
        value = metric.attribute.value
        if value.WhichOneof("attr") == "int_attr":
            device = value.int_attr
            if not 0 <= device < 1 << 20:
                continue
        else:
            other = _device_of(value)
            if other is None:
                continue
            device = other
        gauge = metric.gauge
        kind = gauge.WhichOneof("value")
        found[device] = float(gauge.as_int) if kind == "as_int" else gauge.as_double if kind == "as_double" else None
    return found


def _device_of(value: AttrValue) -> int | None:
    """The device a point is for: an integer attribute (older libtpu), a digit string, or `device_ordinal`
    inside a key-value list (newer libtpu)."""
    kind = value.WhichOneof("attr")
    if kind == "int_attr":
        return value.int_attr if 0 <= value.int_attr < 1 << 20 else None
    if kind == "string_attr":
        return _ordinal(value.string_attr)
    if kind == "kvlist_attr":
        for attribute in value.kvlist_attr.attributes:
            if attribute.key == "device_ordinal":
                inner = attribute.value
                if inner.WhichOneof("attr") == "int_attr" and 0 <= inner.int_attr < 1 << 20:
                    return inner.int_attr
                if inner.WhichOneof("attr") == "string_attr":
                    return _ordinal(inner.string_attr)
    return None


def _ordinal(text: str) -> int | None:
    """A device number written as ASCII digits ("²" is a digit to str.isdigit, not to int)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 7 else None


def _bytes(value: float | None) -> int | None:
    return int(value) if value is not None and 0 <= value < 2**63 else None
