"""NVLink data counters decoded and rated by the C helper (native/fabric.c), as `_fabric_py` does: one GPU's
answer at a time (`CffiNvlinkCounters.read`), or every GPU of a tick in one C call that asks NVML itself
(`CffiNvlinkReader`)."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from . import _nvlink
from ._fabric_py import MAX_KIB, NvlinkCounters, NvlinkTarget, Reading
from ._sysmon_cffi import ffi, lib  # ImportError when the extension was not built

_RECORD = lib.FB_RECORD_BYTES  # AttributeError from an extension built before the fabric helper existed
_read_all = lib.fb_nvlink_read  # AttributeError from an extension built before the one-call reader


class CffiNvlinkCounters:
    """`PyNvlinkCounters` in one C call per tick: the request's bytes in, counters and rates out."""

    def __init__(self, links: int) -> None:
        self.size = size = 2 * links
        # Kept as attributes: C writes into them every tick; the column holds the counters' baselines.
        self._column = ffi.new("fb_counter[]", size)
        self._values, self._known = ffi.new("uint64_t[]", size), ffi.new("uint8_t[]", size)
        self._rates = ffi.new("double[]", size)
        self._positions: Sequence[int] | None = None
        self._place = ffi.NULL
        # For CffiNvlinkReader: this GPU's request as fb_nvlink_read takes it, and what it points into.
        self.gpu = ffi.new("fb_nvlink_gpu *")
        self.aimed: _nvlink.Request | None = None
        self._aimed_at: tuple[object, ...] = ()  # what self.gpu points into, kept alive while it does

    def read(self, raw: bytes, positions: Sequence[int] | None, now: float) -> tuple[list[int | None],
                                                                                 list[float | None]]:
        records, rest = divmod(len(raw), _RECORD)
        if rest:
            raise ValueError(f"{len(raw)} bytes are not a whole number of {_RECORD}-byte field values")
        self._check(records, positions)
        size = self.size
        unknown = lib.fb_field_counters(ffi.from_buffer(raw), records, self._place, MAX_KIB, _nvlink.KIB,
                                        self._values, self._known, size)
        lib.fb_column_rates(self._column, size, self._values, self._known, now, self._rates)
        values: list[int | None] = ffi.unpack(self._values, size)
        rates: list[float | None] = ffi.unpack(self._rates, size)
        if unknown:
            known = ffi.unpack(self._known, size)
            values = [v if k else None for v, k in zip(values, known, strict=True)]
            rates = [r if k else None for r, k in zip(rates, known, strict=True)]
        return values, rates

    def aim(self, pynvml: Any, handle: Any, request: _nvlink.Request, positions: Sequence[int] | None) -> None:
        """Point this GPU's C request at NVML's function, the GPU's handle and `request`'s array (kept alive here:
        C writes into it); `positions` as `read` takes them. Raises ValueError for bindings without the function."""
        records = len(request.entries)
        self._check(records, positions)
        _nvlink.prepare(pynvml, request)
        gpu = self.gpu
        if records:
            if request.call is None:
                raise ValueError("these NVML bindings give no function pointer for nvmlDeviceGetFieldValues")
            gpu.call = ffi.cast("fb_field_values_fn", _address(request.call[0]))
            gpu.request = ffi.cast("unsigned char *", ctypes.addressof(request.array))
        else:  # every entry pruned: NVML is not asked
            gpu.call, gpu.request = ffi.NULL, ffi.NULL
        gpu.device = ffi.cast("void *", _address(handle))
        gpu.place, gpu.column, gpu.records, gpu.slots = self._place, self._column, records, self.size
        self.aimed, self._aimed_at = request, (request, self._place)

    def _check(self, records: int, positions: Sequence[int] | None) -> None:
        if records != (self.size if positions is None else len(positions)):
            raise ValueError(f"{records} field values for {self.size} counters")
        if positions is not self._positions:  # pruned once, after the request's first answer
            self._positions = positions
            self._place = ffi.NULL if positions is None else ffi.new("uint32_t[]", list(positions))


class CffiNvlinkReader:
    """`PyNvlinkReader` in one C call per tick for every GPU: NVML is called from C through the function pointer
    the bindings hold, each answer decoded and rated in place, and the outputs unpacked once."""

    def __init__(self) -> None:
        self._aimed: list[tuple[NvlinkCounters, _nvlink.Request]] = []  # each GPU's the outputs are laid out for
        self._meters: list[CffiNvlinkCounters] = []
        self._size = 0
        self._gpus = self._values = self._known = self._rates = self._unknown_at = ffi.NULL  # set by _aim
        self._unknown = ffi.new("size_t *")

    def read(self, pynvml: Any, gpus: Sequence[NvlinkTarget], now: float) -> Reading:
        if not gpus:
            return [], [], []
        aimed = [(gpu.meter, gpu.counters) for gpu in gpus]
        if aimed != self._aimed:  # a GPU came or went, its request was pruned or its baselines started afresh
            self._aim(pynvml, gpus, aimed)
        size = self._size
        failed = _read_all(self._gpus, len(gpus), MAX_KIB, _nvlink.KIB, now, self._values, self._known,
                           self._rates, self._unknown_at, self._unknown)
        values: list[int | None] = ffi.unpack(self._values, size)
        rates: list[float | None] = ffi.unpack(self._rates, size)
        unknown = self._unknown[0]
        if unknown:
            for i in ffi.unpack(self._unknown_at, unknown):
                values[i] = rates[i] = None
        failures = [(i, m.gpu.ret) for i, m in enumerate(self._meters) if m.gpu.ret] if failed else []
        return failures, values, rates

    def _aim(self, pynvml: Any, gpus: Sequence[NvlinkTarget], aimed: list[tuple[NvlinkCounters, _nvlink.Request]]
             ) -> None:
        meters = []
        for gpu in gpus:
            meter = gpu.meter
            if not isinstance(meter, CffiNvlinkCounters):
                raise TypeError(f"CffiNvlinkReader reads CffiNvlinkCounters, not {type(meter).__name__}")
            if meter.aimed is not gpu.counters:
                meter.aim(pynvml, gpu.handle, gpu.counters, gpu.positions)
            meters.append(meter)
        self._size = size = sum(m.size for m in meters)
        self._gpus = ffi.new("fb_nvlink_gpu *[]", [m.gpu for m in meters])
        self._values, self._known = ffi.new("uint64_t[]", size), ffi.new("uint8_t[]", size)
        self._rates, self._unknown_at = ffi.new("double[]", size), ffi.new("uint32_t[]", size)
        self._meters, self._aimed = meters, aimed


def _address(pointer: Any) -> int:
    """The address a ctypes pointer or function holds (0 for NULL)."""
    return ctypes.cast(pointer, ctypes.c_void_p).value or 0
