"""NVLink of NVIDIA GPUs through NVML field values: per-link data rates, error counters, state and speed.

One NVML call per GPU per tick for the data counters; state, speed and the error counters take a
second call every SLOW_SECONDS (the GPUs in turn). A GPU's link count and UUID are asked once. Entries a GPU answers
NOT_SUPPORTED (or a link it does not have) are dropped from its requests for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat

from .. import _nvlink, _nvml
from .._accel_native import NvlinkCounters, NvlinkCountersImpl
from ..errors import GpuLost, NvmlUnavailable, Unavailable
from ..model import NvlinkErrors, NvlinkLink, NvlinkSample
from .base import Partial

SLOW_SECONDS = 5.0
SPREAD = 5  # the GPUs' slow reads are spread over this many parts of the period
LOST_RETRY_SECONDS = 30.0


class _StillLost(GpuLost):
    """A GPU lost earlier, not asked again before its retry period is over."""


@dataclass(slots=True)
class _Gpu:
    """What is known of one GPU's NVLink: link count, UUID, prepared requests, last slow-tier answers."""

    index: int
    links: int
    uuid: str | None
    counters: _nvlink.Request
    status: _nvlink.Request
    status_at: float | None = None  # when state, speed and errors were last asked (staggered per GPU)
    status_raw: bytes | None = None  # the last slow read's answer, as decoded below
    # By link, from the last slow read: kept as columns, zipped into the links every tick.
    states: list[str | None] = field(default_factory=list)
    speeds: list[float | None] = field(default_factory=list)
    errors: list[NvlinkErrors] = field(default_factory=list)
    meter: NvlinkCounters | None = None  # tx, rx counters of link 0, then link 1, ... and their rates
    positions: tuple[int, ...] | None = None  # each counter entry's place in the meter once entries were pruned


class NvlinkCollector:
    name = "nvlink"
    blocking = True  # NVML calls block in the driver: the sampler runs this in a worker thread

    def __init__(self) -> None:
        self._gpus: dict[int, _Gpu | None] = {}  # None: the GPU has no NVLink NVML can see
        self._slow_at: float | None = None
        self._lost_at: dict[int, float] = {}

    def collect(self, now: float) -> NvlinkSample | Partial[NvlinkSample]:
        try:
            devices = _nvml.devices()
        except NvmlUnavailable as exc:
            raise Unavailable(str(exc)) from None
        import pynvml  # already loaded by _nvml.devices()

        slow = self._slow_at is None or now - self._slow_at >= SLOW_SECONDS
        if slow:
            self._slow_at = now
        links: list[NvlinkLink] = []
        problems: list[str] = []
        failed = 0
        read: set[int] = set()
        for dev in devices:
            try:
                gpu = self._gpu(pynvml, dev, now)
                if gpu is not None:
                    links += self._read(pynvml, dev, gpu, now)
                    read.add(dev.index)
            except GpuLost as exc:
                if not isinstance(exc, _StillLost):  # a fresh loss: the retry period starts now
                    self._lost_at[dev.index] = now
                problems.append(f"GPU {dev.index} is lost")
            except pynvml.NVMLError as exc:
                failed += 1
                problems.append(f"GPU {dev.index}: nvmlDeviceGetFieldValues failed: {exc}")
        with_links = [g for g in self._gpus.values() if g is not None]
        if not with_links and not problems:
            raise Unavailable("no NVIDIA GPU here reports NVLink links (NVML_FI_DEV_NVLINK_LINK_COUNT)")
        if with_links and failed >= len(with_links):
            raise RuntimeError("; ".join(problems))  # no GPU answered: this source is broken, the others go on
        if slow:  # links come and go with GPUs only: forgetting stale counters can wait for the slow tier
            for gpu in with_links:
                if gpu.index not in read:  # its counters start afresh when it answers again
                    gpu.meter = NvlinkCountersImpl(gpu.links)
        sample = NvlinkSample(tuple(links))
        return Partial(sample, "; ".join(problems)) if problems else sample

    def _gpu(self, pynvml: object, dev: _nvml.Device, now: float) -> _Gpu | None:
        """The GPU's NVLink plan, asked for on first sight; a lost GPU is left alone for its retry period."""
        lost_at = self._lost_at.get(dev.index)
        if lost_at is not None and now - lost_at < LOST_RETRY_SECONDS:
            raise _StillLost(f"GPU {dev.index} is lost")
        if dev.index in self._gpus:
            return self._gpus[dev.index]
        if not _nvml.reopen(dev):
            raise GpuLost(f"GPU {dev.index} has no handle")
        count = _nvlink.link_count(pynvml, dev.handle)
        if not count:
            self._gpus[dev.index] = None
            return None
        uuid = _nvml.read_static(dev).uuid
        gpu = _Gpu(dev.index, count, uuid, _nvlink.Request(_nvlink.counter_slots(count)),
                   _nvlink.Request(_nvlink.status_slots(count)), states=[None] * count, speeds=[None] * count,
                   errors=[NvlinkErrors()] * count, meter=NvlinkCountersImpl(count))
        self._gpus[dev.index] = gpu
        return gpu

    def _read(self, pynvml: object, dev: _nvml.Device, gpu: _Gpu, now: float) -> list[NvlinkLink]:
        if gpu.status_at is None or now - gpu.status_at >= SLOW_SECONDS:
            # GPUs take their slow reads in turn, a fifth of the period apart, not all on one tick.
            stagger = gpu.index % SPREAD * SLOW_SECONDS / SPREAD if gpu.status_at is None else 0.0
            self._read_status(pynvml, dev, gpu)
            gpu.status_at = now - stagger
        raw = _nvlink.read_raw(pynvml, dev.handle, gpu.counters)
        assert gpu.meter is not None
        # In bytes (a value that would not fit 64 bits is None), with rates: one C call (or its Python twin).
        values, rates = gpu.meter.read(raw, gpu.positions, now)
        if not gpu.counters.checked:  # after reading: the answers follow the entries as they were
            gpu.counters = _pruned(gpu.counters, raw)
            if len(gpu.counters.entries) != 2 * gpu.links:  # each remaining entry's place among the counters
                gpu.positions = tuple(2 * s.link + (s.kind == "rx_kib") for s in gpu.counters.slots)
        self._lost_at.pop(dev.index, None)
        return _links(gpu, values, rates)

    def _read_status(self, pynvml: object, dev: _nvml.Device, gpu: _Gpu) -> None:
        """State, speed and error counters of every link, kept for the ticks until the next slow one."""
        raw = _nvlink.read_raw(pynvml, dev.handle, gpu.status)
        if _nvlink.same_answer(raw, gpu.status_raw):  # the usual case (errors are rare): the last decoding stands
            return
        # One row per link: state, speed, then the error counters in ERROR_KINDS order; None where not answered.
        rows: list[list[int | None]] = [[None] * _COLUMNS for _ in range(gpu.links)]
        for (link, column), value in zip(_places(gpu.status), _nvlink.counters(raw), strict=True):
            rows[link][column] = value
        gpu.states = [_state(row[0]) for row in rows]
        gpu.speeds = [_speed(row[1]) for row in rows]
        gpu.errors = [NvlinkErrors(*row[2:]) for row in rows]
        gpu.status_raw = raw  # a pruned request's answers are shorter: never the same as this one
        if not gpu.status.checked:
            gpu.status = _pruned(gpu.status, raw)


def _links(gpu: _Gpu, values: list[int | None], rates: list[float | None]) -> list[NvlinkLink]:
    """The GPU's links from its counters and rates (tx, rx of link 0, then link 1, ...): an HGX board builds 144
    a tick, each by tuple.__new__ (a NamedTuple's own constructor costs 3x) over one zip, all of it in C with no
    Python frame per link (bench_accel_all.py)."""
    n = gpu.links
    return list(map(tuple.__new__, repeat(NvlinkLink, n), zip(
        repeat(gpu.index, n), repeat(gpu.uuid, n), range(n), gpu.states, gpu.speeds,
        values[0::2], values[1::2], rates[0::2], rates[1::2], gpu.errors, strict=True)))


_COLUMN = {"state": 0, "speed_mbps": 1, **{kind: 2 + i for i, kind in enumerate(_nvlink.ERROR_KINDS)}}
_COLUMNS = len(_COLUMN)


def _places(request: _nvlink.Request) -> list[tuple[int, int]]:
    """(link, column) of each entry of a status request, worked out once per request (it changes when pruned)."""
    if len(request.places) != len(request.slots):
        request.places = [(slot.link, _COLUMN[slot.kind]) for slot in request.slots]
    return request.places


def _pruned(request: _nvlink.Request, raw: bytes) -> _nvlink.Request:
    """`request` less what its first answer says the GPU does not have; never looked at again."""
    failed = _nvlink.permanently_failed(_nvlink.parse_field_values(raw))
    pruned = request.without(failed) if failed else request
    pruned.checked = True
    return pruned


def _state(value: int | float | None) -> str | None:
    return _nvlink.STATES.get(value) if isinstance(value, int) else None


def _speed(value: int | float | None) -> float | None:
    return float(value) * _nvlink.MBPS_TO_BITS if isinstance(value, int | float) and value > 0 else None
