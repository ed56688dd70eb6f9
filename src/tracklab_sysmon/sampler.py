"""The async sampling loop: runs the collectors each tick, keeps their health, publishes snapshots."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import wire
from .collectors import Collector, Unavailable
from .model import Snapshot
from .ring import SnapshotRing

log = logging.getLogger(__name__)

Listener = Callable[[Snapshot, bytes], None]
PRIME_SECONDS = 0.2  # the first published rates cover at least this long


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
        )
        encoded = wire.encode(wire.snapshot_to_wire(snapshot))
        self.latest, self.latest_bytes = snapshot, encoded
        self.ring.append(snapshot.timestamp, encoded)
        self.ticks += 1
        self._measure_own_cpu()
        for listener in tuple(self._listeners):
            listener(snapshot, encoded)
        return snapshot

    async def run(self) -> None:
        """Prime, then tick on a fixed monotonic schedule until cancelled; late ticks are skipped."""
        if self.latest is None:
            await self.prime()
            await asyncio.sleep(min(PRIME_SECONDS, self.interval))
            await self.tick()
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
        threaded = [
            (c, asyncio.create_task(asyncio.to_thread(self._run_one, c, now)))
            for c in self.collectors if c not in inline
        ]
        results = [(c, self._run_one(c, now)) for c in inline]
        results += [(c, await task) for c, task in threaded]
        sections: dict[str, object] = {}
        for collector, value in results:
            if value is None:
                continue
            if collector.section == "accelerators":
                sections.setdefault("accelerators", []).extend(value)  # type: ignore[union-attr]
            else:
                sections[collector.section] = value
        return sections

    def _run_one(self, collector: Collector, now: float) -> object:
        status = self.status[collector.name]
        started = time.perf_counter()
        try:
            value = collector.collect(now)
        except Unavailable as exc:
            self._set_state(collector.name, status, "unavailable", str(exc))
            value = None
        except Exception as exc:  # the one boundary that keeps a broken collector from killing ticks
            status.failures += 1
            self._set_state(collector.name, status, "error", f"{type(exc).__name__}: {exc}")
            value = None
        else:
            self._set_state(collector.name, status, "ok", None)
            status.last_success = int(self._wall() * 1000)
        status.last_duration_ms = round((time.perf_counter() - started) * 1000, 3)
        return value

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
