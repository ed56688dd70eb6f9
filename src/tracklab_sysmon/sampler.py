"""The async sampling loop: runs the collectors each tick, keeps their health, publishes snapshots."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import wire
from .collectors import Collector, Unavailable
from .collectors.sysfs import KeptFile
from .model import Snapshot
from .ring import SnapshotRing
from .workers import CollectorThread

log = logging.getLogger(__name__)

Listener = Callable[[Snapshot, bytes], None]
PRIME_SECONDS = 0.2  # the first published rates cover at least this long
MIN_THREAD_WAIT = 0.25  # a blocking collector gets at least this long (or one interval) per tick


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What one collector call produced: its section (or None), state, error text and cost."""

    value: object
    state: str
    error: str | None
    duration_ms: float


@dataclass(slots=True)
class CollectorStatus:
    """Health of one collector: `ok`, `error`, `unavailable` (hardware absent) or `pending`."""

    state: str = "pending"
    last_error: str | None = None
    last_duration_ms: float | None = None
    last_success: int | None = None  # ms since the epoch
    failures: int = 0

    def to_wire(self) -> dict[str, object]:
        return {
            "status": self.state,
            "lastError": self.last_error,
            "lastDurationMs": self.last_duration_ms,
            "lastSuccess": self.last_success,
            "failures": self.failures,
        }


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
    ) -> None:
        self.collectors = tuple(collectors)
        self.node_id = node_id
        self.interval = interval
        self.ring = ring if ring is not None else SnapshotRing(3600)
        self.status = {c.name: CollectorStatus() for c in self.collectors}
        self.latest: Snapshot | None = None
        self.latest_bytes: bytes = b"null"
        self.ticks = 0
        self.own_cpu_percent: float | None = None
        self._listeners: list[Listener] = []
        self._monotonic = monotonic
        self._wall = wall
        self._cpu_mark: tuple[float, float] | None = None
        self.own_rss: int | None = None
        self._statm = KeptFile("/proc/self/statm")  # read per tick so /api/health reads nothing
        self._threads: dict[str, CollectorThread] = {}  # made on first use: `blocking` may change
        self._in_flight: dict[str, asyncio.Future] = {}
        self.thread_wait = max(interval, MIN_THREAD_WAIT)

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(snapshot, encoded)` after every tick (WebSocket fan-out, exporters)."""
        self._listeners.append(listener)

    async def prime(self) -> None:
        """Read every counter once, so the first published snapshot already has real rates."""
        await self._collect_all(self._monotonic())

    async def tick(self) -> Snapshot:
        """Collect, build, encode once, store and publish one snapshot."""
        sections = await self._collect_all(self._monotonic())
        snapshot = Snapshot(
            node_id=self.node_id,
            timestamp=int(self._wall() * 1000),
            cpu=sections.get("cpu"),
            memory=sections.get("memory"),
            disk=sections.get("disk"),
            network=sections.get("network"),
            accelerators=tuple(sections.get("accelerators", ())),
            container=sections.get("container"),
            pressure=sections.get("pressure"),
        )
        encoded = wire.encode(wire.snapshot_to_wire(snapshot))
        self.latest, self.latest_bytes = snapshot, encoded
        self.ring.append(snapshot.timestamp, encoded)
        self.ticks += 1
        self._measure_own_cpu()
        for listener in tuple(self._listeners):
            listener(snapshot, encoded)
        return snapshot

    async def start(self) -> Snapshot:
        """Prime, wait a moment, and publish the first snapshot, whose rates are already real."""
        await self.prime()
        await asyncio.sleep(min(PRIME_SECONDS, self.interval))
        return await self.tick()

    async def run(self) -> None:
        """Tick on a fixed monotonic schedule until cancelled (after `start`); late ticks are skipped."""
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
            await asyncio.sleep(delay)
            await self.tick()

    async def _collect_all(self, now: float) -> dict[str, object]:
        # A blocking collector whose hardware was absent last time only re-checks for it (tens of
        # microseconds, e.g. a failed library load): a worker-thread hop would cost far more.
        inline = [c for c in self.collectors if not c.blocking or self.status[c.name].state == "unavailable"]
        threaded = [(c, self._submit(c, now)) for c in self.collectors if c not in inline]
        results = [(c, self._record(c, self._call(c, now))) for c in inline]
        results += await self._await_threads([(c, f) for c, f in threaded if f is not None])
        sections: dict[str, object] = {}
        for collector, value in results:
            if value is None:
                continue
            if collector.section == "accelerators":
                sections.setdefault("accelerators", []).extend(value)  # type: ignore[union-attr]
            else:
                sections[collector.section] = value
        return sections

    def _submit(self, collector: Collector, now: float) -> asyncio.Future | None:
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

    async def _await_threads(self, threaded: list[tuple[Collector, asyncio.Future]]) -> list:
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
        try:
            value, state, error = collector.collect(now), "ok", None
        except Unavailable as exc:
            value, state, error = None, "unavailable", str(exc)
        except Exception as exc:  # the one boundary that keeps a broken collector from killing ticks
            value, state, error = None, "error", f"{type(exc).__name__}: {exc}"
        return _Outcome(value, state, error, round((time.perf_counter() - started) * 1000, 3))

    def _record(self, collector: Collector, outcome: _Outcome) -> object:
        """Apply one call's outcome to the collector's status (on the loop) and return its value."""
        status = self.status[collector.name]
        if outcome.state == "error":
            status.failures += 1
        self._set_state(collector.name, status, outcome.state, outcome.error)
        if outcome.state == "ok":
            status.last_success = int(self._wall() * 1000)
        status.last_duration_ms = outcome.duration_ms
        return outcome.value

    @staticmethod
    def _set_state(name: str, status: CollectorStatus, state: str, error: str | None) -> None:
        if status.state != state or status.last_error != error:
            level = logging.WARNING if state == "error" else logging.INFO
            log.log(level, "collector %s: %s%s", name, state, f" ({error})" if error else "")
        status.state, status.last_error = state, error

    def _measure_own_cpu(self) -> None:
        # process_time() reads the process's CPU clock in ns; os.times() would round to 10 ms,
        # far coarser than the ~1 ms a tick costs, and report 0 % or 1 % at random.
        mark = (self._monotonic(), time.process_time())
        if self._cpu_mark is not None and mark[0] > self._cpu_mark[0]:
            used = mark[1] - self._cpu_mark[1]
            self.own_cpu_percent = round(100.0 * used / (mark[0] - self._cpu_mark[0]), 3)
        self._cpu_mark = mark
        self.own_rss = _rss_bytes(self._statm)


def _rss_bytes(statm: KeptFile) -> int | None:
    """This process's resident memory from /proc/self/statm (kept open: one pread per tick)."""
    text = statm.read()
    try:
        return int(text.split()[1]) * _PAGE_SIZE if text else None
    except (ValueError, IndexError):
        return None


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
