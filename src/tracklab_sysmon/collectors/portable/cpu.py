"""CPU through psutil: per-core usage from per-CPU times, frequency, load, processes, threads."""

from __future__ import annotations

from ...model import CoreSample, CpuSample, CpuTimes, StatCounters
from ...platforms import PlatformChoice, is_linux
from ...rates import busy_percent
from ..thermal import CpuThermal
from .reader import PsutilCounterReader


class PortableCpuCollector:
    name = "cpu"
    blocking = False

    def __init__(self, reader: PsutilCounterReader, *, sys_root: str = "/sys") -> None:
        self._reader = reader
        # Temperatures: psutil has no macOS/Windows sensors; on Linux the same sysfs files as procfs.
        self._thermal = CpuThermal(sys_root) if is_linux(reader.choice.platform) else None
        self._previous: StatCounters | None = None

    @property
    def choice(self) -> PlatformChoice:
        return self._reader.choice

    def collect(self, now: float) -> CpuSample:
        stat = self._reader.stat()
        previous, self._previous = self._previous, stat
        before = dict(previous.cores) if previous else {}
        frequencies = self._frequencies(len(stat.cores))
        core_temps = self._thermal.core_temperatures() if self._thermal else {}
        cores = tuple(
            CoreSample(
                id=cpu_id,
                usage=_usage(before.get(cpu_id), times),
                frequency=frequencies[cpu_id] if cpu_id < len(frequencies) else None,
                temperature=core_temps.get(cpu_id),
                times=times,
            )
            for cpu_id, times in stat.cores
        )
        return CpuSample(
            overall=_usage(previous.total if previous else None, stat.total),
            cores=cores,
            load_average=self._reader.load_average(),
            processes=self._reader.process_count(),
            threads=self._threads(),
            temperature=self._thermal.package_temperature() if self._thermal else None,
        )

    def _frequencies(self, cores: int) -> list[float | None]:
        """MHz per core where psutil reads one per core; macOS and Windows give one value for all."""
        try:
            found = self._reader.cpu_frequencies()
        except (OSError, NotImplementedError, RuntimeError):  # e.g. psutil < 6 on Apple Silicon
            return []
        if len(found) == 1:
            return found * cores
        return found if len(found) == cores else []

    def _threads(self) -> int | None:
        try:
            return self._reader.loadavg().threads
        except (OSError, ValueError):  # no cheap source here: null, with the reason in health
            return None


def _usage(previous: CpuTimes | None, current: CpuTimes) -> float | None:
    return busy_percent(previous, current) if previous is not None else None
