"""NVLink counters through NVML field values: one `nvmlDeviceGetFieldValues` call per GPU per tick.

Field ids and the `nvmlFieldValue_t` layout are nvml.h's (API version 12/13). The request array of
each GPU is built once and handed to NVML again every tick (NVML only fills in each entry's time,
type, return code and value), and the answer is read back from the array's bytes in bulk: building
and reading a hundred ctypes records per GPU per tick would cost more than the call itself.
"""

from __future__ import annotations

import ctypes
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import GpuLost

FI_LINK_COUNT = 91  # NVML_FI_DEV_NVLINK_LINK_COUNT
FI_THROUGHPUT_DATA_TX = 138  # NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: KiB of payload sent, cumulative
FI_THROUGHPUT_DATA_RX = 139
FI_GET_SPEED = 164  # NVML_FI_DEV_NVLINK_GET_SPEED: MBps
FI_GET_STATE = 165  # NVML_FI_DEV_NVLINK_GET_STATE: NVML_NVLINK_STATE_*
# Error counters have one field id per link, for links 0-5 and 6-11 (nvml.h's ..._L0 .. _L11);
# the link id also goes in scopeId, which newer headers ask for. Links 12+ (Hopper's 18) have only the
# scoped DL counters (NVML_FI_DEV_NVLINK_ERROR_DL_REPLAY, _RECOVERY, _CRC, link in scopeId): replay,
# recovery and flit CRC; no data-CRC counter exists for them, so that one stays null.
_ERROR_IDS = {
    "crc_flit": tuple(range(32, 38)) + tuple(range(96, 102)),
    "crc_data": tuple(range(39, 45)) + tuple(range(102, 108)),
    "replay": tuple(range(46, 52)) + tuple(range(108, 114)),
    "recovery": tuple(range(53, 59)) + tuple(range(114, 120)),
}
ERROR_KINDS = tuple(_ERROR_IDS)
_SCOPED_ERROR_IDS = {"crc_flit": 163, "replay": 161, "recovery": 162}  # for links 12 and up
STATES = {0: "inactive", 1: "active", 2: "sleep"}  # NVML_NVLINK_STATE_INACTIVE, _ACTIVE, _SLEEP
KIB = 1024
MBPS_TO_BITS = 8e6  # NVLink speed is in MB/s (10^6 bytes) per direction

# nvmlFieldValue_t: fieldId, scopeId (u32), timestamp, latencyUsec (i64), valueType, nvmlReturn (u32),
# value (an 8-byte union). Native order, no padding: 40 bytes, as the C compiler lays it out.
RECORD = struct.Struct("=IIqqII8s")
# nvmlValueType_t -> how to read the union's bytes
_VALUE_FORMATS = {0: "=d", 1: "=I", 2: "=Q", 3: "=Q", 4: "=q", 5: "=i", 6: "=H"}
_VALUE_STRUCTS = {kind: struct.Struct(fmt) for kind, fmt in _VALUE_FORMATS.items()}
SUCCESS = 0
# Word 3 of a record (valueType, then nvmlReturn) when the entry succeeded with an unsigned integer type.
_UINT, _UL, _ULL, _USHORT = (struct.unpack("=Q", struct.pack("=II", kind, SUCCESS))[0] for kind in (1, 2, 3, 6))
NOT_SUPPORTED = 3
_PERMANENT = frozenset({NOT_SUPPORTED, 2, 13})  # not supported, invalid argument (no such link), function not found


class FieldValue(NamedTuple):
    """One answered entry: which field and scope, NVML's return code and the decoded value (None on error)."""

    field_id: int
    scope_id: int
    nvml_return: int
    value: int | float | None


def parse_field_values(raw: bytes) -> list[FieldValue]:
    """The entries of an `nvmlFieldValue_t` array's bytes; a value is None when its entry failed or
    its type is unknown or its number is not finite. Raises ValueError when `raw` is not whole records."""
    if len(raw) % RECORD.size:
        raise ValueError(f"{len(raw)} bytes are not a whole number of {RECORD.size}-byte field values")
    values = []
    for field_id, scope_id, _, _, value_type, nvml_return, union in RECORD.iter_unpack(raw):
        value = None
        reader = _VALUE_STRUCTS.get(value_type)
        if nvml_return == SUCCESS and reader is not None:
            number = reader.unpack_from(union)[0]
            value = number if not isinstance(number, float) or math.isfinite(number) else None
        values.append(FieldValue(field_id, scope_id, nvml_return, value))
    return values


@dataclass(frozen=True, slots=True)
class Slot:
    """What one request entry measures: a link and a kind (tx, rx, state, speed or an error counter)."""

    link: int
    kind: str


def counter_slots(links: int) -> list[tuple[int, int, Slot]]:
    """(field id, scope id, slot) of the per-tick data counters of links 0..links-1: tx then rx per link."""
    entries = []
    for link in range(links):
        entries.append((FI_THROUGHPUT_DATA_TX, link, Slot(link, "tx_kib")))
        entries.append((FI_THROUGHPUT_DATA_RX, link, Slot(link, "rx_kib")))
    return entries


def status_slots(links: int) -> list[tuple[int, int, Slot]]:
    """(field id, scope id, slot) of each link's state, speed and error counters (asked on the slow tier)."""
    entries = []
    for link in range(links):
        entries.append((FI_GET_STATE, link, Slot(link, "state")))
        entries.append((FI_GET_SPEED, link, Slot(link, "speed_mbps")))
        for kind, ids in _ERROR_IDS.items():
            if link < len(ids):
                entries.append((ids[link], link, Slot(link, kind)))
            elif kind in _SCOPED_ERROR_IDS:
                entries.append((_SCOPED_ERROR_IDS[kind], link, Slot(link, kind)))
    return entries


def counters(raw: bytes) -> list[int | None]:
    """The integer values of an `nvmlFieldValue_t` array's bytes, in order; None for a failed entry or a
    value that is not an unsigned integer. The hot-path twin of `parse_field_values`, read as 8-byte words:
    word 3 of each record holds valueType and nvmlReturn, word 4 the value."""
    if len(raw) % RECORD.size:
        raise ValueError(f"{len(raw)} bytes are not a whole number of {RECORD.size}-byte field values")
    words = memoryview(raw).cast("Q")
    values: list[int | None] = []
    for kind_and_return, value in zip(words[3::5], words[4::5], strict=True):
        if kind_and_return in (_ULL, _UL):
            values.append(value)
        elif kind_and_return == _UINT:
            values.append(value & 0xFFFFFFFF)
        elif kind_and_return == _USHORT:
            values.append(value & 0xFFFF)
        else:  # failed, signed, floating or unknown: not a counter
            values.append(None)
    return values


def same_answer(raw: bytes, old: bytes | None) -> bool:
    """Whether two answers to one request decode alike: each record's valueType, nvmlReturn and value equal
    (the timestamps NVML sets on every call left out). Compared as 8-byte word views: no copy is made."""
    if old is None or len(raw) != len(old):
        return False
    new_words, old_words = memoryview(raw).cast("Q"), memoryview(old).cast("Q")
    return new_words[3::5] == old_words[3::5] and new_words[4::5] == old_words[4::5]


@dataclass(slots=True)
class Request:
    """One GPU's prepared request: the entries, what each measures, and the ctypes array NVML fills."""

    entries: list[tuple[int, int, Slot]]
    array: Any = field(default=None, repr=False)
    call: tuple[Any, Any, Any] | None = field(default=None, repr=False)  # nvmlDeviceGetFieldValues, count, &array
    slots: list[Slot] = field(init=False, repr=False)
    checked: bool = False  # pruned after its first answer of what the GPU does not have
    places: list[tuple[int, int]] = field(default_factory=list, repr=False)  # the reader's own index of the slots

    def __post_init__(self) -> None:
        self.slots = [slot for _, _, slot in self.entries]

    def without(self, failed: Iterable[int]) -> Request:
        """This request less the entries at `failed` (answered NOT_SUPPORTED: never asked again)."""
        drop = set(failed)
        return Request([e for i, e in enumerate(self.entries) if i not in drop])


def read(pynvml: Any, handle: Any, request: Request) -> list[FieldValue]:
    """Ask NVML for every entry of `request` in one call; raises GpuLost, or pynvml.NVMLError on failure."""
    return parse_field_values(read_raw(pynvml, handle, request))


def read_raw(pynvml: Any, handle: Any, request: Request) -> bytes:
    """The filled `nvmlFieldValue_t` array of one call for `request`, as bytes (see `read`)."""
    ret = call(pynvml, handle, request)
    if ret != SUCCESS:
        if ret == pynvml.NVML_ERROR_GPU_IS_LOST:
            raise GpuLost("GPU is lost")
        raise pynvml.NVMLError(ret)
    return answer(request)


def call(pynvml: Any, handle: Any, request: Request) -> int:
    """Ask NVML for every entry of `request` in one call; NVML's return code (SUCCESS: `answer` holds the values).
    A request with no entries is not asked: it succeeds with no values."""
    if not request.entries:
        return SUCCESS
    prepare(pynvml, request)
    if request.call is None:  # bindings without the function-pointer helper: the public (slower) call
        try:
            request.array = pynvml.nvmlDeviceGetFieldValues(handle, [(f, s) for f, s, _ in request.entries])
        except pynvml.NVMLError as exc:
            return int(exc.value)
        return SUCCESS
    fn, count, array = request.call
    return int(fn(handle, count, array))


def prepare(pynvml: Any, request: Request) -> None:
    """Build `request`'s array, and its call where the bindings give NVML's function pointer, once."""
    if request.array is None and request.entries:
        request.array = _array(pynvml, request.entries)
        # The function and its two last arguments, made once per request (a third of the call's cost made per tick).
        fn = _function(pynvml)
        request.call = None if fn is None else (fn, ctypes.c_int32(len(request.entries)), ctypes.byref(request.array))


def answer(request: Request) -> bytes:
    """The bytes of `request`'s array as NVML's last successful call for it left them (b"" for no entries)."""
    return b"" if request.array is None else bytes(memoryview(request.array).cast("B"))


def permanently_failed(values: Sequence[FieldValue]) -> list[int]:
    """Indexes of entries whose field or link the device does not have (asking again cannot help)."""
    return [i for i, v in enumerate(values) if v.nvml_return in _PERMANENT]


def _array(pynvml: Any, entries: list[tuple[int, int, Slot]]) -> Any:
    if ctypes.sizeof(pynvml.c_nvmlFieldValue_t) != RECORD.size:
        raise RuntimeError(f"nvmlFieldValue_t is {ctypes.sizeof(pynvml.c_nvmlFieldValue_t)} bytes, not {RECORD.size}")
    array = (pynvml.c_nvmlFieldValue_t * len(entries))()
    for item, (field_id, scope_id, _) in zip(array, entries, strict=True):
        item.fieldId, item.scopeId = field_id, scope_id
    return array


def has_function_pointer(pynvml: Any) -> bool:
    """Whether the bindings give nvmlDeviceGetFieldValues' function pointer (the C reader calls NVML through it)."""
    return _function(pynvml) is not None


def _function(pynvml: Any) -> Any:
    getter = getattr(pynvml, "_nvmlGetFunctionPointer", None)
    return getter("nvmlDeviceGetFieldValues") if getter is not None else None


def link_count(pynvml: Any, handle: Any) -> int | None:
    """How many NVLinks the GPU has (0 for none); None when NVML cannot say."""
    (answer,) = read(pynvml, handle, Request([(FI_LINK_COUNT, 0, Slot(0, "count"))]))
    return int(answer.value) if isinstance(answer.value, int) and answer.value >= 0 else None
