"""AMD and Intel GPU use per process from /proc/PID/fdinfo (DRM usage stats), matched to cards by PCI address."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .._sysfs import read_text
from ..hotpath import ENV_VAR, native_or_python
from . import amd
from .drm_fdinfo import DrmClient, EngineTime, busy_percent, parse_fdinfo
from .drm_fdwalk import drm_fds
from .drm_opens import DrmOpens
from .intel_cards import intel_slots
from .sysfs_ints import KeptTexts, new_kept_texts

RESCAN_SECONDS = 60.0  # cards are looked for again this often (a driver loaded late)
FD_WALK_SECONDS = 10.0  # every process's fds are walked this often; between walks only known DRM fds are read
# Walks after opens may spend what a quiet host saved of its walk share over this long (a few walks in a row).
BURST_SECONDS = 600.0
_DEVICE_REGIONS = ("vram", "local")  # memory on the card; integrated GPUs have none and count system memory


@dataclass(frozen=True, slots=True)
class DrmCard:
    """A card fdinfo can name by its PCI address: vendor and the id its accelerator has in the snapshot."""

    pdev: str
    vendor: str
    device: int


@dataclass(frozen=True, slots=True)
class ProcessCardUse:
    """One process's use of one card: summed over its distinct DRM clients."""

    pid: int
    card: DrmCard
    memory: int | None  # bytes
    utilization: float | None  # % of its busiest engine; None on the first sight of every client


def discover_cards(sys_root: str) -> dict[str, DrmCard]:
    """AMD cards indexed as the AMD collector does; Intel (i915, xe) cards indexed in PCI address order."""
    cards = {c.bus_id.lower(): DrmCard(c.bus_id.lower(), "amd", c.index) for c in amd.discover(sys_root) if c.bus_id}
    cards.update({s.bus_id: DrmCard(s.bus_id, "intel", index) for index, s in enumerate(intel_slots(sys_root))})
    return cards


_Parser = Callable[[str], "DrmClient | None"]
_FdWalker = Callable[[str], list[tuple[int, str]]]  # proc_root -> (pid, fd) of every DRM fd


def select_fdinfo_parser(mode: str) -> tuple[Callable[[], _Parser], str]:
    """A factory of fdinfo parsers (one per walk) and its backend name for one TRACKLAB_SYSMON_NATIVE value:
    the C parser where the helper was built (`hotpath`'s choice), else `parse_fdinfo`."""
    def load() -> Callable[[], _Parser]:
        from .drm_fdinfo_cffi import CffiFdinfoParser
        return CffiFdinfoParser

    return native_or_python(mode, "fdinfo parser", load, lambda: parse_fdinfo)


def select_fd_walker(mode: str) -> tuple[Callable[[], _FdWalker], str]:
    """A factory of DRM fd walkers and its backend name for one TRACKLAB_SYSMON_NATIVE value: the C walk
    (native/drmfds.c) where the helper was built, else `drm_fdwalk.drm_fds`."""
    def load() -> Callable[[], _FdWalker]:
        from .drm_fdwalk_cffi import CffiFdWalker
        return CffiFdWalker

    return native_or_python(mode, "DRM fd walk", load, lambda: drm_fds)


@functools.cache
def _fdinfo_parsers() -> Callable[[], _Parser]:
    return select_fdinfo_parser(os.environ.get(ENV_VAR, "auto"))[0]


@functools.cache
def _fd_walkers() -> Callable[[], _FdWalker]:
    return select_fd_walker(os.environ.get(ENV_VAR, "auto"))[0]


def new_fdinfo_parser() -> _Parser:
    """An fdinfo parser of the chosen backend (chosen on the first call)."""
    return _fdinfo_parsers()()


def new_fd_walker() -> _FdWalker:
    """A DRM fd walker of the chosen backend (chosen on the first call)."""
    return _fd_walkers()()


def scan_clients(proc_root: str, parse: _Parser = parse_fdinfo,
                 walk: _FdWalker = drm_fds) -> Iterator[tuple[int, str, DrmClient]]:
    """Every (pid, fd, DRM client) under proc_root; fds that are not DRM devices, and unreadable ones, are skipped."""
    for pid, fd in walk(proc_root):
        text = read_text(f"{proc_root}/{pid}/fdinfo/{fd}")
        client = parse(text) if text is not None else None
        if client is not None:
            yield pid, fd, client


class ClientWalk:
    """The DRM clients of the cards one cares for: every process's fds are walked now and then; between walks only
    the fds the last walk found holding such a client are read again, through kept descriptors (a closed client
    is gone at once: on a live /proc a kept fdinfo of a closed fd fails its read; a captured tree's file deleted
    has no link left). They are read together (`sysfs_ints.KeptTexts`, in one C call where built), and only the
    texts that changed are compared and parsed again.

    When a walk comes: with `dev_root` and every DRM node under it watched (`drm_opens`), on the tick after a node
    was opened (a process becomes a client by opening one), and every `walk_seconds` stretched so that these
    timed walks take at most `safety_share` of one core: they find fds that came without an open (inherited
    through fork, passed over a socket) and the clients of nodes not watched (a container's own /dev). Also on
    the tick after a known client's fd went away: a client whose fd a forked child inherited lives on after
    its first holder closed it or exited, and is found there at once. Walks after opens and losses spend from
    a budget earned at `walk_share` a second, saved up for `BURST_SECONDS` on a quiet host, so a process that
    opens a node every tick costs no more than timed walks at `walk_share`. Without
    watches (no dev_root, no dri folder, a node that cannot be watched, no inotify), or after a walk found a
    client on a node not watched, walks are timed alone: every `walk_seconds` stretched by `walk_share`.
    `walk_share` None: never stretched, no budget. `cpu_clock` measures a walk (this thread's CPU time); `texts`
    holds the known clients' fdinfo (None: of the chosen backend).

    `read` is a tick; a caller that reads the known clients itself (the Intel meter in C) asks `due`, then
    `walk_all` or reads `texts` and hands the clients gone to `lose`.
    """

    def __init__(self, proc_root: str, walk_seconds: float = FD_WALK_SECONDS, *, walk_share: float | None = None,
                 safety_share: float | None = None, dev_root: str | None = None,
                 cpu_clock: Callable[[], float] = time.thread_time, fd_walker: _FdWalker | None = None,
                 texts: KeptTexts[tuple[int, str]] | None = None) -> None:
        self.proc_root, self.walk_seconds, self.walk_share = proc_root, walk_seconds, walk_share
        self.safety_share = safety_share if safety_share is not None else walk_share
        self.period = walk_seconds  # until the next timed walk; stretched by a costly walk
        self.walks = 0
        self._cpu_clock = cpu_clock
        self._parse = new_fdinfo_parser()  # every known client is parsed each tick: in C where built
        self._walk_fds = fd_walker or new_fd_walker()
        self._opens = DrmOpens(dev_root) if dev_root is not None else None
        self._asked = False  # since the last walk: a node was opened, or a known client's fd went away
        self._blind = False  # the last walk found a client on a node not watched
        self._credit = walk_share * BURST_SECONDS if walk_share else 0.0  # CPU seconds walks after opens may spend
        self._walked_at: float | None = None
        self._ticked_at: float | None = None  # when credit was last earned
        # What the last walk found: (pid, fd) -> its fdinfo, read each tick (in one C call where built).
        self._texts: KeptTexts[tuple[int, str]] = texts if texts is not None else new_kept_texts()
        # (pid, fd) -> its last fdinfo text and client: an idle i915 client's text repeats, and the record with it.
        self._parsed: dict[tuple[int, str], tuple[str, DrmClient]] = {}
        self._wanted: Callable[[DrmClient], bool] | None = None  # the predicate every record in _parsed passed

    @property
    def watching(self) -> bool:
        """Walks come after opens, and timed ones at the safety share."""
        return self._opens is not None and self._opens.watching and not self._blind

    def watch(self) -> None:
        """Watches the DRM nodes under dev_root again (done by every timed walk; a card rescan may ask sooner): a
        node watched only now may have been opened before, so the next tick walks."""
        if self._opens is not None and self._opens.watch():
            self._asked = True

    @property
    def texts(self) -> KeptTexts[tuple[int, str]]:
        """The fdinfo of the clients the last walk found, by (pid, fd), in the walk's order."""
        return self._texts

    def read(self, now: float, wanted: Callable[[DrmClient], bool]) -> list[tuple[int, str, DrmClient]]:
        """(pid, fd, client) of every wanted client found now. `wanted` must answer alike for equal records: a
        client whose record is last tick's is not asked again by the very predicate that passed it then."""
        if self.due(now):
            return self.walk_all(now, wanted)
        texts, parsed = self._texts, self._parsed
        changed = texts.read()  # only the clients whose text changed: {} on a tick where none did
        asked, self._wanted = wanted is self._wanted, wanted  # asked: every record in parsed, by this predicate
        found, gone = [], []
        client: DrmClient | None
        for key in texts.members():
            last = parsed.get(key)
            if key in changed:
                text = changed[key]
            elif last is not None:  # the same text parses the same: last tick's record serves
                client = last[1]
                if asked or wanted(client):
                    found.append((key[0], key[1], client))
                else:
                    gone.append(key)
                continue
            else:
                text = texts.text(key)
            if text is None:
                client = None
            elif last is not None and last[0] == text:
                client = last[1]  # other bytes, the same text (undecodable ones replaced alike)
            else:
                client = self._parse(text)
                if client is not None:
                    parsed[key] = (text, client)
            if client is not None and wanted(client):
                found.append((key[0], key[1], client))
            else:
                gone.append(key)
        self.lose(gone)
        return found

    def lose(self, gone: list[tuple[int, str]]) -> None:
        """Known clients closed, or whose fd now names another file: gone until a walk finds them again."""
        for key in gone:
            self._texts.drop(key)
            self._parsed.pop(key, None)
            self._asked = True  # the client may live on in a process that inherited the fd: walk next tick

    def due(self, now: float) -> bool:
        """Whether this tick walks (once a tick: it drains the opens seen and earns walk credit)."""
        if self._opens is not None and self._opens.opened():  # drained every tick: opens since walk once
            self._asked = True
        if self.walk_share and self._ticked_at is not None:
            earned = (now - self._ticked_at) * self.walk_share
            self._credit = min(self._credit + earned, self.walk_share * BURST_SECONDS)
        self._ticked_at = now
        if self._walked_at is None or now - self._walked_at >= self.period:
            self.watch()  # nodes made since are watched, watches lost come back
            return True
        return self._asked and (not self.walk_share or self._credit > 0)

    def walk_all(self, now: float, wanted: Callable[[DrmClient], bool]) -> list[tuple[int, str, DrmClient]]:
        """Every process's fds walked: (pid, fd, client) of each wanted client, whose fdinfo is known from now."""
        started = self._cpu_clock() if self.walk_share else 0.0
        self._walked_at = now
        self._asked, self.walks = False, self.walks + 1
        found = [use for use in scan_clients(self.proc_root, self._parse, self._walk_fds) if wanted(use[2])]
        opens = self._opens
        self._blind = opens is not None and opens.watching and not all(
            opens.sees(f"{self.proc_root}/{pid}/fd/{fd}") for pid, fd, _ in found)
        if self.walk_share:
            cost = self._cpu_clock() - started
            self._credit -= cost
            share = self.safety_share if self.watching else self.walk_share
            self.period = max(self.walk_seconds, cost / share) if share else self.walk_seconds
        # Descriptors (and last texts) of clients still there are kept on; the others are closed.
        self._texts.keep({(pid, fd): f"{self.proc_root}/{pid}/fdinfo/{fd}" for pid, fd, _ in found})
        kept = self._texts.members()
        self._parsed = {key: last for key, last in self._parsed.items() if key in kept}
        return found


_ClientKey = tuple[int, str, int]  # (pid, pdev, client id)


class DrmUsageReader:
    """Per-process memory and engine use per card between this call and the previous one."""

    def __init__(self, proc_root: str, sys_root: str, clock: Callable[[], float],
                 fd_walk_seconds: float = FD_WALK_SECONDS, dev_root: str | None = None) -> None:
        """`dev_root`: where the DRM nodes are watched for opens (`ClientWalk`); None: timed walks alone."""
        self.proc_root, self.sys_root, self._clock = proc_root, sys_root, clock
        self.fd_walk_seconds = fd_walk_seconds
        self._walk = ClientWalk(proc_root, fd_walk_seconds, dev_root=dev_root)
        self._cards: dict[str, DrmCard] = {}
        self._scanned_at: float | None = None
        self._previous: dict[_ClientKey, tuple[float, dict[str, EngineTime]]] = {}

    def read(self) -> list[ProcessCardUse]:
        now = self._clock()
        if self._scanned_at is None or now - self._scanned_at >= RESCAN_SECONDS:
            self._cards, self._scanned_at = discover_cards(self.sys_root), now
        if not self._cards:
            return []
        current: dict[_ClientKey, tuple[DrmCard, DrmClient]] = {}
        for pid, _, client in self._walk.read(now, lambda c: (c.pdev or "").lower() in self._cards):
            card = self._cards[(client.pdev or "").lower()]
            # one client id seen through several fds of a process counts once
            current.setdefault((pid, card.pdev, client.client_id), (card, client))
        uses = self._per_process(now, current)
        self._previous = {key: (now, {e.name: e for e in client.engines}) for key, (_, client) in current.items()}
        return uses

    def _per_process(self, now: float, current: dict[_ClientKey, tuple[DrmCard, DrmClient]]) -> list[ProcessCardUse]:
        memory: dict[tuple[int, DrmCard], dict[str, int]] = {}
        engines: dict[tuple[int, DrmCard], dict[str, float] | None] = {}
        for key, (card, client) in current.items():
            owner = (key[0], card)
            regions = memory.setdefault(owner, {})
            for region in client.regions:
                regions[region.region] = regions.get(region.region, 0) + region.bytes
            shares = _engine_shares(self._previous.get(key), now, client)
            if shares is not None:
                summed = engines.get(owner) or {}
                for name, share in shares.items():
                    summed[name] = summed.get(name, 0.0) + share
                engines[owner] = summed
            else:
                engines.setdefault(owner, None)
        return [
            ProcessCardUse(pid=pid, card=card, memory=_card_memory(memory[(pid, card)]),
                           utilization=_busiest(engines[(pid, card)]))
            for pid, card in memory
        ]


def _engine_shares(
    previous: tuple[float, dict[str, EngineTime]] | None, now: float, client: DrmClient
) -> dict[str, float] | None:
    """% busy per engine since the previous reading of this client; None for a client seen the first time."""
    if previous is None or now <= previous[0]:
        return None
    then, before = previous
    shares: dict[str, float] = {}
    for engine in client.engines:
        start = before.get(engine.name)
        if start is None and engine.total is not None:
            continue  # a cycle counter needs its clock's earlier value
        # amdgpu leaves out engines never used: absent before means zero busy time then.
        share = busy_percent(start or EngineTime(engine.name, 0), engine, now - then)
        if share is not None:
            shares[engine.name] = share
    return shares


def _busiest(shares: dict[str, float] | None) -> float | None:
    if shares is None:
        return None
    return round(min(100.0, max(shares.values(), default=0.0)), 1)


def _card_memory(regions: dict[str, int]) -> int | None:
    if not regions:
        return None
    local = [size for name, size in regions.items() if name.startswith(_DEVICE_REGIONS)]
    if local:
        return sum(local)
    return sum(size for name, size in regions.items() if not name.startswith("stolen"))
