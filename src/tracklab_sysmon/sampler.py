"""The async sampling loop: runs the collectors each tick, keeps their health, publishes snapshots."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from . import wire
from ._sysfs import KeptFile
from .collectors.base import Collector, Partial, Section, section_of
from .energy import EnergyLedger
from .errors import Unavailable, describe
from .model import (
    AcceleratorSample,
    ContainerSample,
    CpuSample,
    DiskSample,
    EnergySample,
    FabricSample,
    InfinibandSample,
    MemorySample,
    NetworkSample,
    NvlinkSample,
    PressureSample,
    Snapshot,
)
from .ring import SnapshotRing
from .workers import CollectorThread

log = logging.getLogger(__name__)

SELF_STATM = "/proc/self/statm"
SECTIONS = frozenset({"cpu", "memory", "disk", "network", "accelerators", "container", "pressure", "energy",
                      "fabric"})
CollectorState = Literal["pending", "ok", "degraded", "error", "unavailable"]
Listener = Callable[[Snapshot, bytes], None]
PRIME_SECONDS = 0.2  # the first published rates cover at least this long
MIN_THREAD_WAIT = 0.25  # a blocking collector gets at least this long (or one interval) per tick
STALL_INTERVALS = 3  # health says "degraded" once the newest snapshot is older than this many intervals
LOG_EVERY_SECONDS = 60.0  # a failure that repeats every tick is logged once per minute, with a count


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one collector call produced: its section (or None), state, error text and cost."""

    value: Section | None
    state: CollectorState
    error: str | None
    duration_ms: float


@dataclass(slots=True)
class CollectorStatus:
    """Health of one collector: `ok`, `degraded` (some values null, `last_error` says why), `error`,
    `unavailable` (hardware absent) or `pending`."""

    state: CollectorState = "pending"
    last_error: str | None = None
    last_duration_ms: float | None = None
    last_success: int | None = None  # ms since the epoch
    failures: int = 0


@dataclass(frozen=True, slots=True)
class LoopHealth:
    """The sampler's own health: "degraded" while a collector is troubled or the loop has stalled."""

    status: Literal["healthy", "degraded"]
    stalled: bool
    last_tick_age_ms: float | None  # age of the newest snapshot
    failed_ticks: int


class RateLimitedLog:
    """Logs a repeating failure at most once per `every` seconds, saying how many were not logged."""

    def __init__(self, logger: logging.Logger, every: float, clock: Callable[[], float]) -> None:
        self._logger, self._every, self._clock = logger, every, clock
        self._last: float | None = None
        self._skipped = 0

    def error(self, message: str, exc: BaseException) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._every:
            self._skipped += 1
            return
        more = f" ({self._skipped} more since the last report)" if self._skipped else ""
        self._logger.error("%s%s", message, more, exc_info=exc)
        self._last, self._skipped = now, 0


class Sampler:
    """Owns the collectors and the latest snapshot; nothing here scales with the number of readers."""

    def __init__(
        self,
        collectors: Sequence[Collector],
        *,
        node_id: str,
        interval: float = 1.0,
        ring: SnapshotRing | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        statm_path: str | None = SELF_STATM if os.path.exists(SELF_STATM) else None,
    ) -> None:
        self.collectors = tuple(collectors)
        self.node_id = node_id
        self.interval = interval
        self.ring = ring if ring is not None else SnapshotRing(3600)
        self.status = {c.name: CollectorStatus() for c in self.collectors}
        self.latest: Snapshot | None = None
        self.latest_bytes: bytes = b"null"
        self.ticks = 0
        self.failed_ticks = 0  # ticks that raised: each costs that tick only (see `run`)
        self._last_tick_at: float | None = None  # monotonic time of the newest snapshot
        self.own_cpu_percent: float | None = None
        self._listeners: list[Listener] = []
        self._monotonic = monotonic
        self._wall = wall
        self._sleep = sleep
        self._failure_log = RateLimitedLog(log, LOG_EVERY_SECONDS, monotonic)
        self._cpu_mark: tuple[float, float] | None = None
        self._statm = KeptFile(statm_path) if statm_path else None  # kept open, read only when asked
        self._threads: dict[str, CollectorThread] = {}  # made on first use: `blocking` may change
        self._in_flight: dict[str, asyncio.Future[_Outcome]] = {}
        self._unencodable_names: set[str] = set()  # collectors whose section failed to encode last tick
        self._filled: dict[str, str] = {}  # collector name -> the Snapshot section its records fill
        self._energy = EnergyLedger()  # joins GPU energy counters to the RAPL zones, with watts
        self.thread_wait = max(interval, MIN_THREAD_WAIT)
        # A tick may legitimately take one interval plus a blocking collector's wait.
        self.stall_after = max(STALL_INTERVALS * interval, interval + self.thread_wait)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(snapshot, encoded)` after every tick (WebSocket fan-out, exporters)."""
        self._listeners.append(listener)

    async def prime(self) -> None:
        """Read every counter once, so the first published snapshot already has real rates."""
        now = self._monotonic()
        _assemble(self.node_id, 0, await self._collect_all(now), self._energy, now)

    async def tick(self) -> Snapshot:
        """Collect, build, encode once, store and publish one snapshot."""
        now = self._monotonic()
        values = await self._collect_all(now)
        snapshot = _assemble(self.node_id, int(self._wall() * 1000), values, self._energy, now)
        snapshot, encoded = self._encode(snapshot)
        self.latest, self.latest_bytes = snapshot, encoded
        self.ring.append(snapshot.timestamp, encoded)
        self.ticks += 1
        self._last_tick_at = self._monotonic()
        self._measure_own_cpu()
        for listener in tuple(self._listeners):
            try:
                listener(snapshot, encoded)
            except Exception as exc:  # one broken consumer must not cost the others their snapshot
                self._failure_log.error(f"snapshot listener {listener!r} failed", exc)
        return snapshot

    def _encode(self, snapshot: Snapshot) -> tuple[Snapshot, bytes]:
        """The snapshot's JSON; a section that cannot be encoded is dropped and its collectors say why."""
        try:
            encoded = wire.encode_snapshot(snapshot)
        except (TypeError, ValueError) as whole:  # orjson: e.g. an int wider than 64 bits
            for section in sorted(SECTIONS):
                try:
                    wire.encode_snapshot(_keep(snapshot, {section}))
                except (TypeError, ValueError) as exc:
                    snapshot = _keep(snapshot, SECTIONS - {section})
                    self._unencodable(section, exc)
            try:
                return snapshot, wire.encode_snapshot(snapshot)
            except (TypeError, ValueError):
                raise whole from None
        for name in self._unencodable_names:  # their recovery was recorded quietly: say it once here
            _log_state(name, self.status[name])
        self._unencodable_names.clear()
        return snapshot, encoded

    def _unencodable(self, section: str, exc: Exception) -> None:
        # Every tick first records such a collector as ok, then as error here: log only the first time.
        for collector in self.collectors:
            if self._filled.get(collector.name) == section and self.status[collector.name].state in ("ok", "degraded"):
                status = self.status[collector.name]
                status.failures += 1
                quiet = collector.name in self._unencodable_names
                self._set_state(collector.name, status, "error", f"cannot encode its values: {exc}", quiet=quiet)
                self._unencodable_names.add(collector.name)

    def health(self) -> LoopHealth:
        """The service's health: "degraded" when a collector is or the loop has stalled, with the newest
        snapshot's age (the sampler knows; /api/health only reports it)."""
        age = None if self._last_tick_at is None else self._monotonic() - self._last_tick_at
        stalled = age is not None and age > self.stall_after
        troubled = any(s.state in ("error", "degraded") for s in self.status.values())
        return LoopHealth(
            status="degraded" if stalled or troubled else "healthy",
            stalled=stalled,
            last_tick_age_ms=round(age * 1000, 1) if age is not None else None,
            failed_ticks=self.failed_ticks,
        )

    async def start(self) -> Snapshot:
        """Prime, wait a moment, and publish the first snapshot, whose rates are already real."""
        await self.prime()
        await self._sleep(min(PRIME_SECONDS, self.interval))
        return await self.tick()

    async def run(self) -> None:
        """Tick on a fixed monotonic schedule until cancelled (after `start`); late ticks are skipped.

        Supervised: a tick that raises is counted (`failed_ticks`), logged at most once a minute,
        and costs that tick only; the loop goes on.
        """
        if self.latest is None:
            await self.start()
        start = self._monotonic()
        beats = 0
        while True:
            beats += 1
            delay = start + beats * self.interval - self._monotonic()
            if delay < 0:  # fell behind (suspend, overload): realign instead of bursting
                beats += int(-delay // self.interval) + 1
                delay = start + beats * self.interval - self._monotonic()
            await self._sleep(delay)
            try:
                await self.tick()
            except Exception as exc:
                self.failed_ticks += 1
                self._failure_log.error(f"sampler tick failed ({self.failed_ticks} so far)", exc)

    async def _collect_all(self, now: float) -> list[Section]:
        # A blocking collector whose hardware was absent last time only re-checks for it (tens of
        # microseconds, e.g. a failed library load): a worker-thread hop would cost far more.
        inline = [c for c in self.collectors if not c.blocking or self.status[c.name].state == "unavailable"]
        threaded = [(c, self._submit(c, now)) for c in self.collectors if c not in inline]
        results = [(c, self._record(c, self._call(c, now))) for c in inline]
        results += await self._await_threads([(c, f) for c, f in threaded if f is not None])
        values = []
        for collector, value in results:
            if value is not None:
                self._filled[collector.name] = section_of(value)
                values.append(value)
        return values

    def _submit(self, collector: Collector, now: float) -> asyncio.Future[_Outcome] | None:
        """Start a blocking collector on its thread, unless its previous call is still stuck."""
        pending = self._in_flight.get(collector.name)
        if pending is not None and not pending.done():
            self._stuck(collector, "its previous call has not returned")
            return None
        thread = self._threads.get(collector.name)
        if thread is None:
            thread = self._threads[collector.name] = CollectorThread(collector.name)
        future = self._in_flight[collector.name] = thread.submit(self._call, collector, now)
        return future

    async def _await_threads(
        self, threaded: list[tuple[Collector, asyncio.Future[_Outcome]]]
    ) -> list[tuple[Collector, Section | None]]:
        """Results of the threaded collectors that answered in time; the others miss this tick."""
        if not threaded:
            return []
        done, _ = await asyncio.wait([f for _, f in threaded], timeout=self.thread_wait)
        results = []
        for collector, future in threaded:
            if future in done:
                results.append((collector, self._record(collector, future.result())))
            else:
                self._stuck(collector, f"no answer within {self.thread_wait:g} s")
        return results

    def _stuck(self, collector: Collector, why: str) -> None:
        # A hung driver call (a GPU fallen off the bus) costs only this collector's section.
        status = self.status[collector.name]
        status.failures += 1
        self._set_state(collector.name, status, "error", f"stuck: {why}")

    @staticmethod
    def _call(collector: Collector, now: float) -> _Outcome:
        """Run one collector; touches no sampler state, so it is safe on any thread."""
        started = time.perf_counter()
        value: Section | Partial[Section] | None = None
        state: CollectorState = "ok"
        error: str | None = None
        try:
            value = collector.collect(now)
        except Unavailable as exc:
            state, error = "unavailable", str(exc)
        except Exception as exc:  # the one boundary that keeps a broken collector from killing ticks
            state, error = "error", describe(exc)
        if isinstance(value, Partial):
            partial = value
            value, state, error = partial.value, "degraded", partial.reason
        return _Outcome(value, state, error, round((time.perf_counter() - started) * 1000, 3))

    def _record(self, collector: Collector, outcome: _Outcome) -> Section | None:
        """Apply one call's outcome to the collector's status (on the loop) and return its value."""
        status = self.status[collector.name]
        if outcome.state == "error":
            status.failures += 1
        self._set_state(collector.name, status, outcome.state, outcome.error,
                        quiet=collector.name in self._unencodable_names)
        if outcome.state in ("ok", "degraded"):
            status.last_success = int(self._wall() * 1000)
        status.last_duration_ms = outcome.duration_ms
        return outcome.value

    @staticmethod
    def _set_state(
        name: str, status: CollectorStatus, state: CollectorState, error: str | None, *, quiet: bool = False
    ) -> None:
        changed = status.state != state or status.last_error != error
        status.state, status.last_error = state, error
        if changed and not quiet:
            _log_state(name, status)

    def _measure_own_cpu(self) -> None:
        # process_time() reads the process's CPU clock in ns; os.times() would round to 10 ms,
        # far coarser than the ~1 ms a tick costs, and report 0 % or 1 % at random.
        mark = (self._monotonic(), time.process_time())
        if self._cpu_mark is not None and mark[0] > self._cpu_mark[0]:
            used = mark[1] - self._cpu_mark[1]
            self.own_cpu_percent = round(100.0 * used / (mark[0] - self._cpu_mark[0]), 3)
        self._cpu_mark = mark

    @property
    def own_rss(self) -> int | None:
        """This process's resident memory now: read when /api/health asks, not every tick."""
        return _rss_bytes(self._statm)


def _log_state(name: str, status: CollectorStatus) -> None:
    level = logging.WARNING if status.state in ("error", "degraded") else logging.INFO
    error = status.last_error
    log.log(level, "collector %s: %s%s", name, status.state, f" ({error})" if error else "")


def _assemble(node_id: str, timestamp: int, values: list[Section], ledger: EnergyLedger, now: float) -> Snapshot:
    """One snapshot from the collectors' records, each placed by its type; `ledger` makes its energy section."""
    cpu: CpuSample | None = None
    memory: MemorySample | None = None
    disk: DiskSample | None = None
    network: NetworkSample | None = None
    container: ContainerSample | None = None
    pressure: PressureSample | None = None
    energy: EnergySample | None = None
    accelerators: list[AcceleratorSample] = []
    nvlink: NvlinkSample | None = None
    infiniband: InfinibandSample | None = None
    for value in values:
        match value:
            case CpuSample():
                cpu = value
            case MemorySample():
                memory = value
            case DiskSample():
                disk = value
            case NetworkSample():
                network = value
            case ContainerSample():
                container = value
            case PressureSample():
                pressure = value
            case EnergySample():
                energy = value
            case NvlinkSample():
                nvlink = value
            case InfinibandSample():
                infiniband = value
            case _:
                accelerators.extend(value)
    fabric = FabricSample(nvlink, infiniband) if nvlink is not None or infiniband is not None else None
    devices = tuple(accelerators)
    return Snapshot(node_id=node_id, timestamp=timestamp, cpu=cpu, memory=memory, disk=disk, network=network,
                    accelerators=devices, container=container, pressure=pressure,
                    energy=ledger.section(energy, devices, now), fabric=fabric)


def _keep(snapshot: Snapshot, sections: frozenset[str] | set[str]) -> Snapshot:
    """`snapshot` with only `sections` left (the others empty), to find or drop one that cannot be encoded."""
    return Snapshot(
        node_id=snapshot.node_id,
        timestamp=snapshot.timestamp,
        cpu=snapshot.cpu if "cpu" in sections else None,
        memory=snapshot.memory if "memory" in sections else None,
        disk=snapshot.disk if "disk" in sections else None,
        network=snapshot.network if "network" in sections else None,
        accelerators=snapshot.accelerators if "accelerators" in sections else (),
        container=snapshot.container if "container" in sections else None,
        pressure=snapshot.pressure if "pressure" in sections else None,
        energy=snapshot.energy if "energy" in sections else None,
        fabric=snapshot.fabric if "fabric" in sections else None,
    )


def _rss_bytes(statm: KeptFile | None) -> int | None:
    """This process's resident memory from /proc/self/statm (kept open: one pread per ask); without
    /proc (macOS, Windows: `statm` is None), from psutil."""
    if statm is None:
        import psutil  # loaded only where there is no /proc

        return int(psutil.Process().memory_info().rss)
    text = statm.read()
    try:
        return int(text.split()[1]) * _PAGE_SIZE if text else None
    except (ValueError, IndexError):
        return None


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096  # Windows: no sysconf (nor statm)
