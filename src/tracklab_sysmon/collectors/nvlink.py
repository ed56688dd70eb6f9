"""NVLink of NVIDIA GPUs through NVML field values: per-link data rates, error counters, state and speed.

One NVML call per GPU per tick for the data counters, every GPU's made, decoded and rated by one call of the C
helper (`_fabric_cffi.CffiNvlinkReader`; the Python twin makes them GPU by GPU); state, speed and the error counters
take a second call every SLOW_SECONDS (the GPUs in turn). A GPU's link count and UUID are asked once. Entries a GPU
answers NOT_SUPPORTED (or a link it does not have) are dropped from its requests for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from .. import _nvlink, _nvml
from .._accel_native import NvlinkCounters, NvlinkCountersImpl, NvlinkReader, NvlinkReaderImpl
from .._fabric_py import PyNvlinkReader
from ..errors import GpuLost, NvmlUnavailable, Unavailable
from ..model import NvlinkErrors, NvlinkLink, NvlinkSample
from .base import Partial

SLOW_SECONDS = 5.0
SPREAD = 5  # the GPUs' slow reads are spread over this many parts of the period
LOST_RETRY_SECONDS = 30.0


class _StillLost(GpuLost):
    """A GPU lost earlier, not asked again before its retry period is over."""


@dataclass(slots=True, eq=False)
class _Gpu:
    """What is known of one GPU's NVLink: link count, UUID, prepared requests, last slow-tier answers."""

    index: int
    links: int
    uuid: str | None
    handle: Any  # NVML's, asked once
    counters: _nvlink.Request
    status: _nvlink.Request
    meter: NvlinkCounters  # tx, rx counters of link 0, then link 1, ... and their rates
    status_at: float | None = None  # when state, speed and errors were last asked (staggered per GPU)
    status_raw: bytes | None = None  # the last slow read's answer, as decoded below
    # By link, from the last slow read: kept as columns, zipped into the links every tick.
    states: list[str | None] = field(default_factory=list)
    speeds: list[float | None] = field(default_factory=list)
    errors: list[NvlinkErrors] = field(default_factory=list)
    positions: tuple[int, ...] | None = None  # each counter entry's place in the meter once entries were pruned


class NvlinkCollector:
    name = "nvlink"
    blocking = True  # NVML calls block in the driver: the sampler runs this in a worker thread

    def __init__(self) -> None:
        self._gpus: dict[int, _Gpu | None] = {}  # None: the GPU has no NVLink NVML can see
        self._slow_at: float | None = None
        self._lost_at: dict[int, float] = {}
        self._with_links: list[_Gpu] = []  # the GPUs of _gpus with NVLink, in the order they were first seen
        self._reader: NvlinkReader | None = None  # picked on the first tick, when the bindings are known
        # The columns every tick's links share (gpu, uuid, link, state, speed, errors), made for these GPUs in this
        # order and kept while they answer and their slow-tier decoding stands (`_stale` says it changed).
        self._columns_for: list[_Gpu] = []
        self._columns: tuple[list[Any], ...] = ()
        self._stale = False
        # The last tick's counters, rates and links: links are built anew only when a counter or rate moved.
        self._last: tuple[list[int | None], list[float | None], tuple[NvlinkLink, ...]] | None = None

    def collect(self, now: float) -> NvlinkSample | Partial[NvlinkSample]:
        try:
            devices = _nvml.devices()
        except NvmlUnavailable as exc:
            raise Unavailable(str(exc)) from None
        import pynvml  # already loaded by _nvml.devices()

        slow = self._slow_at is None or now - self._slow_at >= SLOW_SECONDS
        if slow:
            self._slow_at = now
        problems: list[tuple[int, str]] = []  # (GPU, what went wrong): told in GPU order, as the GPUs are
        failed = 0
        ready: list[_Gpu] = []  # planned, not lost, slow tier read: their data counters are read together below
        planned, lost = self._gpus, self._lost_at
        for dev in devices:
            gpu = planned.get(dev.index)
            if gpu is not None and not lost and gpu.status_at is not None and now - gpu.status_at < SLOW_SECONDS:
                ready.append(gpu)  # the usual tick: nothing to plan, retry or read on the slow tier first
                continue
            try:
                gpu = self._gpu(pynvml, dev, now)
                if gpu is not None:
                    self._status(pynvml, dev, gpu, now)
                    ready.append(gpu)
            except GpuLost as exc:
                self._lost(dev.index, exc, now, problems)
            except pynvml.NVMLError as exc:
                failed += 1
                problems.append((dev.index, f"GPU {dev.index}: nvmlDeviceGetFieldValues failed: {exc}"))
        answered, values, rates, failures = self._read(pynvml, ready, now, problems)
        failed += failures
        with_links = self._with_links
        if not with_links and not problems:
            raise Unavailable("no NVIDIA GPU here reports NVLink links (NVML_FI_DEV_NVLINK_LINK_COUNT)")
        if with_links and failed >= len(with_links):
            # no GPU answered: this source is broken, the others go on
            raise RuntimeError("; ".join(text for _, text in sorted(problems)))
        if slow:  # links come and go with GPUs only: forgetting stale counters can wait for the slow tier
            for gpu in with_links:
                if gpu not in answered:  # its counters start afresh when it answers again
                    gpu.meter = NvlinkCountersImpl(gpu.links)
        sample = NvlinkSample(self._links(answered, values, rates))
        return Partial(sample, "; ".join(text for _, text in sorted(problems))) if problems else sample

    def _read(self, pynvml: Any, ready: list[_Gpu], now: float, problems: list[tuple[int, str]]
              ) -> tuple[list[_Gpu], list[int | None], list[float | None], int]:
        """The data counters of every ready GPU, in one go: the GPUs that answered, their counters and rates (GPU
        after GPU), and how many calls failed (not counting lost GPUs); each failure goes to `problems`."""
        if not ready:
            return ready, [], [], 0
        if self._reader is None:  # the C reader calls NVML through the function pointer the bindings give
            self._reader = NvlinkReaderImpl() if _nvlink.has_function_pointer(pynvml) else PyNvlinkReader()
        failures, values, rates = self._reader.read(pynvml, ready, now)
        answered, failed = ready, 0
        if failures:
            answered, values, rates = _answered(ready, failures, values, rates)
            for i, ret in failures:
                index = ready[i].index
                if ret == pynvml.NVML_ERROR_GPU_IS_LOST:
                    self._lost(index, GpuLost("GPU is lost"), now, problems)
                else:
                    failed += 1
                    problems.append((index, f"GPU {index}: nvmlDeviceGetFieldValues failed: {pynvml.NVMLError(ret)}"))
        for gpu in answered:
            if not gpu.counters.checked:  # after reading: the answers follow the entries as they were
                self._prune(gpu)
        if self._lost_at:
            for gpu in answered:
                self._lost_at.pop(gpu.index, None)
        return answered, values, rates, failed

    def _lost(self, index: int, exc: GpuLost, now: float, problems: list[tuple[int, str]]) -> None:
        if not isinstance(exc, _StillLost):  # a fresh loss: the retry period starts now
            self._lost_at[index] = now
        problems.append((index, f"GPU {index} is lost"))

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
        gpu = _Gpu(dev.index, count, uuid, dev.handle, _nvlink.Request(_nvlink.counter_slots(count)),
                   _nvlink.Request(_nvlink.status_slots(count)), NvlinkCountersImpl(count), states=[None] * count,
                   speeds=[None] * count, errors=[NvlinkErrors()] * count)
        self._gpus[dev.index] = gpu
        self._with_links.append(gpu)
        return gpu

    def _status(self, pynvml: object, dev: _nvml.Device, gpu: _Gpu, now: float) -> None:
        if gpu.status_at is None or now - gpu.status_at >= SLOW_SECONDS:
            # GPUs take their slow reads in turn, a fifth of the period apart, not all on one tick.
            stagger = gpu.index % SPREAD * SLOW_SECONDS / SPREAD if gpu.status_at is None else 0.0
            self._read_status(pynvml, dev, gpu)
            gpu.status_at = now - stagger

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
        self._stale = True
        gpu.status_raw = raw  # a pruned request's answers are shorter: never the same as this one
        if not gpu.status.checked:
            gpu.status = _pruned(gpu.status, raw)

    @staticmethod
    def _prune(gpu: _Gpu) -> None:
        """Drop what the counters request's first answer (still in its array) says the GPU does not have."""
        gpu.counters = _pruned(gpu.counters, _nvlink.answer(gpu.counters))
        if len(gpu.counters.entries) != 2 * gpu.links:  # each remaining entry's place among the counters
            gpu.positions = tuple(2 * s.link + (s.kind == "rx_kib") for s in gpu.counters.slots)

    def _links(self, gpus: list[_Gpu], values: list[int | None], rates: list[float | None]) -> tuple[NvlinkLink, ...]:
        """The links of `gpus` from their counters and rates (GPU after GPU; tx, rx of link 0, then link 1, ...):
        an HGX board builds 144 a tick, each by tuple.__new__ (a NamedTuple's own constructor costs 3x) over one zip
        of the kept columns and the tick's counters, all of it in C with no Python frame per link
        (bench_accel_all.py); while no counter moves (NVLink idle) the last tick's links stand."""
        if self._stale or gpus != self._columns_for:
            self._columns, self._columns_for, self._stale = _columns(gpus), gpus, False
            self._last = None
        elif self._last is not None and values == self._last[0] and rates == self._last[1]:
            return self._last[2]  # idle links: every record as it was on the last tick
        index, uuid, link, state, speed, errors = self._columns
        links = tuple(map(tuple.__new__, repeat(NvlinkLink), zip(
            index, uuid, link, state, speed, values[0::2], values[1::2], rates[0::2], rates[1::2], errors,
            strict=True)))
        self._last = (values, rates, links)
        return links


def _answered(gpus: list[_Gpu], failures: list[tuple[int, int]], values: list[int | None],
              rates: list[float | None]) -> tuple[list[_Gpu], list[int | None], list[float | None]]:
    """The GPUs whose call succeeded, and their counters and rates alone (a failed GPU's slots left out)."""
    failed = {i for i, _ in failures}
    answered: list[_Gpu] = []
    kept_values: list[int | None] = []
    kept_rates: list[float | None] = []
    first = 0
    for i, gpu in enumerate(gpus):
        end = first + 2 * gpu.links
        if i not in failed:
            answered.append(gpu)
            kept_values += values[first:end]
            kept_rates += rates[first:end]
        first = end
    return answered, kept_values, kept_rates


def _columns(gpus: list[_Gpu]) -> tuple[list[Any], ...]:
    """Each link's gpu, uuid, link, state, speed and errors, GPU after GPU."""
    index: list[int] = []
    uuid: list[str | None] = []
    link: list[int] = []
    state: list[str | None] = []
    speed: list[float | None] = []
    errors: list[NvlinkErrors] = []
    for gpu in gpus:
        index += [gpu.index] * gpu.links
        uuid += [gpu.uuid] * gpu.links
        link += range(gpu.links)
        state += gpu.states
        speed += gpu.speeds
        errors += gpu.errors
    return index, uuid, link, state, speed, errors


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
