"""NVIDIA GPUs through NVML (DCGM or GPM profiling when asked): cheap per tick; one lost GPU never blanks the rest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from .. import _nvml
from .._dcgm import DcgmProfiler
from ..errors import GpuLost, NvmlUnavailable, Unavailable
from ..model import (
    AcceleratorMemory,
    AcceleratorSample,
    Clocks,
    EccErrors,
    MigProfiling,
    MigState,
    NvmlDetails,
    NvmlReadings,
    PcieThroughput,
    Profiling,
)
from ..rates import percent

SLOW_SECONDS = 5.0  # PCIe sampling, process tables, ECC, MIG: asked at most this often
LOST_RETRY_SECONDS = 30.0  # a lost GPU is probed again this often (it comes back only after a reset)
NOT_REQUESTED = "profiling was not requested (start with --enable-dcgm-profiling)"


class NvidiaCollector:
    name = "nvidia"
    blocking = True  # NVML calls block in the driver: the sampler runs this in a worker thread

    def __init__(self, *, enable_dcgm: bool = False, dcgm: DcgmProfiler | None = None) -> None:
        self.enable_dcgm = enable_dcgm
        self._dcgm = dcgm if dcgm is not None else (DcgmProfiler() if enable_dcgm else None)
        self._static: dict[int, _nvml.Static] = {}
        self._slow: dict[int, _nvml.Slow] = {}
        self._slow_at: float | None = None
        self._process_window = _nvml.ProcessUtilizationWindow()  # per-pid SM % between slow reads
        self._lost_at: dict[int, float] = {}
        self._source: str | None = None
        self._reason: str | None = NOT_REQUESTED if not enable_dcgm else "no sample taken yet"

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        try:
            devices = _nvml.devices()
        except NvmlUnavailable as exc:
            self._reason = str(exc) if self.enable_dcgm else NOT_REQUESTED
            raise Unavailable(str(exc)) from None
        if not devices:
            raise Unavailable("NVML found no NVIDIA GPU")
        slow_due = self._slow_at is None or now - self._slow_at >= SLOW_SECONDS
        if slow_due:
            self._slow_at = now
        profiles = self._dcgm_profiles()
        return tuple(self._sample(dev, now, slow_due, profiles) for dev in devices)

    def profiling_status(self) -> dict[str, object]:
        """What `/api/health` reports under "dcgm": requested, available, source and why not."""
        return {
            "requested": self.enable_dcgm,
            "available": self._source is not None,
            "source": self._source,
            "reason": None if self._source is not None else self._reason,
            "mig": self._mig_status(),
        }

    def _mig_status(self) -> dict[str, object]:
        """How many MIG GPU instances DCGM reports figures for, and why none when none."""
        if not self.enable_dcgm or self._dcgm is None:
            return {"instances": 0, "reason": NOT_REQUESTED if not self.enable_dcgm else "DCGM is not configured"}
        count = len(self._dcgm.mig)
        return {"instances": count, "reason": None if count else self._dcgm.mig_reason}

    # ------------------------------------------------------------ one device

    def _sample(
        self, dev: _nvml.Device, now: float, slow_due: bool, profiles: dict[int, Profiling] | None
    ) -> AcceleratorSample:
        lost_at = self._lost_at.get(dev.index)
        if lost_at is not None and now - lost_at < LOST_RETRY_SECONDS:
            return self._lost(dev)
        if not _nvml.reopen(dev):  # no handle since start: asked again only every LOST_RETRY_SECONDS
            self._lost_at[dev.index] = now
            return self._lost(dev)
        try:
            static = self._static.get(dev.index) or self._static.setdefault(dev.index, _nvml.read_static(dev))
            fast = _nvml.read_fast(dev)
            if slow_due or dev.index not in self._slow:
                self._slow[dev.index] = _nvml.read_slow(dev, self._process_window)
            profiling = self._device_profile(dev, profiles)
        except GpuLost:
            self._lost_at[dev.index] = now
            return self._lost(dev)
        self._lost_at.pop(dev.index, None)
        slow = self._slow[dev.index]
        if slow.mig is not None and slow.mig.instances and profiles is not None and self._dcgm is not None:
            slow = replace(slow, mig=_mig_profiled(slow.mig, dev.index, self._dcgm.mig))
        return _build(dev.index, static, fast, slow, profiling)

    def _lost(self, dev: _nvml.Device) -> AcceleratorSample:
        static = self._static.get(dev.index)
        return AcceleratorSample(
            id=dev.index,
            type="gpu",
            name=static.name if static else None,
            utilization=None,
            memory=AcceleratorMemory(None, None, None),
            temperature=None,
            power=None,
            fan_speed=None,
            vendor="nvidia",
            uuid=static.uuid if static else None,
            details=NvmlDetails(bus_id=static.bus_id if static else None, lost=True),
        )

    # ------------------------------------------------------------ profiling: DCGM first, else GPM

    def _dcgm_profiles(self) -> dict[int, Profiling] | None:
        if not self.enable_dcgm or self._dcgm is None:
            return None
        profiles = self._dcgm.read()
        if profiles is not None:
            self._source, self._reason = "dcgm", None
        return profiles

    def _device_profile(self, dev: _nvml.Device, profiles: dict[int, Profiling] | None) -> Profiling | None:
        if not self.enable_dcgm:
            return None
        if profiles is not None:
            return profiles.get(dev.index)
        gpm = _nvml.read_gpm(dev)
        if "gpm" in dev.unsupported:
            self._source = None
            dcgm_reason = self._dcgm.reason if self._dcgm is not None else "DCGM is not configured"
            self._reason = f"{dcgm_reason}; GPM profiling is not supported by GPU {dev.index}"
        else:
            self._source, self._reason = "gpm", None
        return gpm


def profiling_health(collectors: Sequence[object], requested: bool) -> dict[str, object]:
    """The health "dcgm" block: the NVIDIA collector's profiling status, or why there is none."""
    for collector in collectors:
        if isinstance(collector, NvidiaCollector):
            return collector.profiling_status()
    return {
        "requested": requested,
        "available": False,
        "source": None,
        "reason": "no NVIDIA collector runs here (a captured tree, or custom collectors)",
    }


def _mig_profiled(mig: MigState, gpu: int, figures: Mapping[tuple[int, int], MigProfiling]) -> MigState:
    """The MIG state with each instance's DCGM figures, matched on (GPU index, GPU instance id): the
    instance keeps its MIG UUID from NVML; one DCGM has no figures for stays without."""
    instances = tuple(
        replace(i, profiling=figures.get((gpu, i.gpu_instance_id))) if i.gpu_instance_id is not None else i
        for i in mig.instances
    )
    return replace(mig, instances=instances)


def _build(
    index: int, static: _nvml.Static, fast: _nvml.Fast, slow: _nvml.Slow, profiling: Profiling | None
) -> AcceleratorSample:
    readings = NvmlReadings(
        memory_utilization=fast.memory_utilization,
        encoder_utilization=fast.encoder,
        decoder_utilization=fast.decoder,
        clocks=Clocks(sm=fast.clock_sm, memory=fast.clock_memory),
        power_limit=slow.power_limit,
        energy=fast.energy,
        pcie=PcieThroughput(rx=slow.pcie_rx, tx=slow.pcie_tx),
        ecc_errors=EccErrors(corrected=slow.ecc_corrected, uncorrected=slow.ecc_uncorrected),
        throttle_reasons=fast.throttle,
        performance_state=fast.pstate,
        processes=slow.processes,
        mig=slow.mig,
        profiling=profiling,
    )
    return AcceleratorSample(
        id=index,
        type="gpu",
        name=static.name,
        utilization=fast.utilization,
        memory=AcceleratorMemory(
            used=fast.memory_used, total=fast.memory_total, percentage=percent(fast.memory_used, fast.memory_total)
        ),
        temperature=fast.temperature,
        power=fast.power,
        fan_speed=fast.fan_speed,
        vendor="nvidia",
        uuid=static.uuid,
        details=NvmlDetails(bus_id=static.bus_id, lost=False, readings=readings),
    )
