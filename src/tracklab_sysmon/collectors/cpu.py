"""CPU: overall and per-core usage, frequency and temperature, load, processes and threads."""

from __future__ import annotations

import os

from .. import _sysfs as sysfs
from .._hotpath_py import CPUFREQ_RECHECK, cpufreq_path, read_frequency
from ..hotpath import ProcReader
from ..model import FREQ_DEFER, FREQ_NONE, CoreColumns, CpuSample
from .cpuinfo import CpuinfoClock
from .thermal import CpuThermal

# Counting /proc's PID directories is one getdents pass over every process; the count moves
# slowly and no reader needs it to the second, so it is refreshed at most this often.
PROCESS_COUNT_SECONDS = 5.0


class CpuCollector:
    name = "cpu"
    blocking = False

    def __init__(self, reader: ProcReader, *, proc_root: str = "/proc", sys_root: str = "/sys") -> None:
        self._reader = reader
        self._ticker = reader.cpu_ticker(sys_root)  # usage and cpufreq per core, in one call
        self._cpu_dir = os.path.join(sys_root, "devices/system/cpu")
        self._thermal = CpuThermal(sys_root, proc_root=proc_root)
        self._deferred: dict[int, sysfs.KeptFile | None] = {}  # cpufreq files the C helper left to Python
        self._cpuinfo_clock = CpuinfoClock(proc_root)  # for CPUs without cpufreq (most cloud VMs)
        self._processes: int | None = None
        self._processes_at: float | None = None

    def collect(self, now: float) -> CpuSample:
        tick = self._ticker.tick()
        cores = tick.cores
        if any(tick.frequency_source):  # only cores whose frequency the tick could not give
            self._fill_frequencies(cores, tick.frequency_source, now)
        core_temps = self._thermal.core_temperatures()
        if core_temps:
            cores.temperature = [core_temps.get(cpu_id) for cpu_id in cores.ids]
        load = self._reader.loadavg()
        return CpuSample(
            overall=tick.overall,
            cores=cores,
            load_average=(load.load1, load.load5, load.load15),
            processes=self._process_count(now),
            threads=load.threads,
            temperature=self._thermal.package_temperature(),
        )

    def _fill_frequencies(self, cores: CoreColumns, sources: list[int], now: float) -> None:
        for index, source in enumerate(sources):
            cpu_id = cores.ids[index]
            if source == FREQ_NONE:  # no cpufreq for this CPU: the kernel's `cpu MHz`, read at most every 10 s
                cores.frequency[index] = self._cpuinfo_clock.mhz(cpu_id, now)
            elif source == FREQ_DEFER:
                if cpu_id not in self._deferred:
                    path = cpufreq_path(self._cpu_dir, cpu_id)
                    self._deferred[cpu_id] = sysfs.KeptFile(path, recheck_every=CPUFREQ_RECHECK) if path else None
                kept = self._deferred[cpu_id]
                cores.frequency[index] = read_frequency(kept) if kept is not None else None

    def _process_count(self, now: float) -> int:
        at = self._processes_at
        if self._processes is None or at is None or not 0 <= now - at < PROCESS_COUNT_SECONDS:
            self._processes, self._processes_at = self._reader.process_count(), now
        return self._processes
