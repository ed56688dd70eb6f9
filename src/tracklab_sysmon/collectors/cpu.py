"""CPU: overall and per-core usage, frequency and temperature, load, processes and threads."""

from __future__ import annotations

import os

from .. import _procfs as procfs
from .. import _sysfs as sysfs
from ..hotpath import CounterReader
from ..model import CoreSample, CpuSample, CpuTimes, StatCounters
from ..rates import busy_percent
from .cpuinfo import CpuinfoClock
from .thermal import CpuThermal


class CpuCollector:
    name = "cpu"
    blocking = False

    def __init__(self, reader: CounterReader, *, proc_root: str = "/proc", sys_root: str = "/sys") -> None:
        self._reader = reader
        self._cpu_dir = os.path.join(sys_root, "devices/system/cpu")
        self._thermal = CpuThermal(sys_root, proc_root=proc_root)
        self._freq_files: dict[int, sysfs.KeptFile | None] = {}  # kept open: no re-open per tick
        self._cpuinfo_clock = CpuinfoClock(proc_root)  # for CPUs without cpufreq (most cloud VMs)
        self._previous: StatCounters | None = None

    def collect(self, now: float) -> CpuSample:
        stat = self._reader.stat()
        previous = self._previous
        self._previous = stat
        before = dict(previous.cores) if previous else {}
        core_temps = self._thermal.core_temperatures()
        cores = tuple(
            CoreSample(
                id=cpu_id,
                usage=_usage(before.get(cpu_id), times),
                frequency=self._frequency(cpu_id, now),
                temperature=core_temps.get(cpu_id),
                times=times,
            )
            for cpu_id, times in stat.cores
        )
        load = self._reader.loadavg()
        return CpuSample(
            overall=_usage(previous.total if previous else None, stat.total),
            cores=cores,
            load_average=(load.load1, load.load5, load.load15),
            processes=self._reader.process_count(),
            threads=load.threads,
            temperature=self._thermal.package_temperature(),
        )

    def _frequency(self, cpu_id: int, now: float) -> float | None:
        if cpu_id not in self._freq_files:  # first sight of this core: find its cpufreq file once
            base = os.path.join(self._cpu_dir, f"cpu{cpu_id}", "cpufreq")
            path = next(
                (p for p in (os.path.join(base, n) for n in ("scaling_cur_freq", "cpuinfo_cur_freq"))
                 if os.path.exists(p)),
                None,
            )
            self._freq_files[cpu_id] = sysfs.KeptFile(path) if path else None
        kept = self._freq_files[cpu_id]
        if kept is None:  # no cpufreq for this CPU: the kernel's `cpu MHz`, read at most every 10 s
            return self._cpuinfo_clock.mhz(cpu_id, now)
        text = kept.read()
        return procfs.parse_khz_as_mhz(text) if text is not None else None


def _usage(previous: CpuTimes | None, current: CpuTimes) -> float | None:
    return busy_percent(previous, current) if previous is not None else None
