"""NVLink of NVIDIA GPUs through NVML field values: per-link data rates, error counters, state and speed.

One NVML call per GPU per tick; state and speed ride along every SLOW_SECONDS. A GPU's link count
and UUID are asked once. Entries a GPU answers NOT_SUPPORTED are dropped from its request for good.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import _nvlink, _nvml
from ..errors import GpuLost, NvmlUnavailable, Unavailable
from ..model import NvlinkErrors, NvlinkLink, NvlinkSample
from ..rates import CounterRates, rounded
from .base import Partial

SLOW_SECONDS = 5.0
LOST_RETRY_SECONDS = 30.0


class _StillLost(GpuLost):
    """A GPU lost earlier, not asked again before its retry period is over."""


@dataclass(slots=True)
class _Gpu:
    """What is known of one GPU's NVLink: its link count, UUID, prepared requests and last state/speed."""

    links: int
    uuid: str | None
    counters: _nvlink.Request
    status: _nvlink.Request
    last_status: dict[int, tuple[str | None, float | None]]


class NvlinkCollector:
    name = "nvlink"
    blocking = True  # NVML calls block in the driver: the sampler runs this in a worker thread

    def __init__(self) -> None:
        self._gpus: dict[int, _Gpu | None] = {}  # None: the GPU has no NVLink NVML can see
        self._rates = CounterRates()
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
        for dev in devices:
            try:
                gpu = self._gpu(pynvml, dev, now)
                if gpu is not None:
                    links += self._read(pynvml, dev, gpu, now, slow)
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
        self._rates.retain((link.gpu, link.link, d) for link in links for d in ("tx", "rx"))
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
        gpu = _Gpu(count, uuid, _nvlink.Request(_nvlink.counter_slots(count)),
                   _nvlink.Request(_nvlink.status_slots(count)), {})
        self._gpus[dev.index] = gpu
        return gpu

    def _read(self, pynvml: object, dev: _nvml.Device, gpu: _Gpu, now: float, slow: bool) -> list[NvlinkLink]:
        counters = _nvlink.read(pynvml, dev.handle, gpu.counters)
        raw = _nvlink.links_from(counters, gpu.counters.slots, gpu.links)
        gpu.counters = _pruned(gpu.counters, counters)  # after reading: the answers follow the old entries
        if slow:
            status = _nvlink.read(pynvml, dev.handle, gpu.status)
            for link in _nvlink.links_from(status, gpu.status.slots, gpu.links):
                gpu.last_status[link.link] = (_state(link.state), _speed(link.speed_mbps))
            gpu.status = _pruned(gpu.status, status)
        self._lost_at.pop(dev.index, None)
        return [self._link(dev.index, gpu, r, now) for r in raw]

    def _link(self, index: int, gpu: _Gpu, raw: _nvlink.RawLink, now: float) -> NvlinkLink:
        tx, rx = _kib(raw.tx_kib), _kib(raw.rx_kib)
        state, speed = gpu.last_status.get(raw.link, (None, None))
        return NvlinkLink(
            gpu=index, uuid=gpu.uuid, link=raw.link, state=state, speed=speed, tx_bytes=tx, rx_bytes=rx,
            tx_rate=rounded(self._rates.rate((index, raw.link, "tx"), tx, now)),
            rx_rate=rounded(self._rates.rate((index, raw.link, "rx"), rx, now)),
            errors=NvlinkErrors(*(_count(getattr(raw, kind)) for kind in _nvlink.ERROR_KINDS)),
        )


def _pruned(request: _nvlink.Request, values: list[_nvlink.FieldValue]) -> _nvlink.Request:
    failed = _nvlink.permanently_failed(values)
    return request.without(failed) if failed else request


def _kib(value: int | float | None) -> int | None:
    return int(value) * _nvlink.KIB if isinstance(value, int) and value >= 0 else None


def _count(value: int | float | None) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _state(value: int | float | None) -> str | None:
    return _nvlink.STATES.get(value) if isinstance(value, int) else None


def _speed(value: int | float | None) -> float | None:
    return float(value) * _nvlink.MBPS_TO_BITS if isinstance(value, int | float) and value > 0 else None
