"""Intel GPU use per engine class and device memory, summed over each card's DRM clients (drm-usage-stats fdinfo).

The clients come from `drm_clients.ClientWalk`: every process's fds are walked after a DRM node under `dev_root`
was opened and every `walk_seconds` (10 s by default) stretched so that these timed walks cost at most
`SAFETY_SHARE` of one core; without watches every `walk_seconds` stretched by `walk_share` (`WALK_SHARE` by
default), which also bounds walks after opens. Between walks only the fds found holding an Intel client are
read again. A client is keyed by (card, `drm-client-id`),
so one shared through several fds or processes counts once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from ..model import EngineClass
from .drm_clients import FD_WALK_SECONDS, ClientWalk
from .drm_fdinfo import DrmClient, EngineTime, RegionMemory, busy_percent
from .intel_cards import ENGINE_ORDER, IntelCard, engine_class

# Walks take at most 0.04 % of one core (0.4 ms a second), however many fds the host has. The walk in C costs
# about three quarters of the Python walk's CPU on a cold host (about 8 ms for 3,000 fds, 11 ms before), so a
# 3,000-fd host is still walked about every 20 s: a new client is seen as soon as with the Python walk at
# 0.05 %, for 0.1 ms a second less (docs/performance.md, "Intel GPUs, RAPL and the energy ledger").
WALK_SHARE = 0.0004
# With the DRM nodes watched, a new client walks on its open and a client whose holder closed its fd or exited
# walks on that tick (it may live on in a forked child), so timed walks only find what makes neither: a walk that
# raced an open, a second holder of a client still counted through its first. An eighth of the share, 0.05 ms a
# second, for such a holder seen within about 160 s on a 3,000-fd host (10 s on a small one); a walk that finds a
# client on a node not watched (a container's own /dev) returns timed walks to WALK_SHARE.
SAFETY_SHARE = 0.00005
_DEVICE_REGIONS = ("vram", "local")  # memory on the card (xe: vram0, i915: local0)
_ClientKey = tuple[str, int]  # (pdev, client id)


class CardUse(NamedTuple):
    """One card's engine classes (% busy over the interval; None on the first reading) and device memory held."""

    engines: tuple[tuple[EngineClass, float | None], ...]
    memory: int | None  # bytes in the card's own memory; None for an integrated GPU


_Times = dict[EngineClass, EngineTime]


class EngineMeter:
    """Keeps each client's engine times between calls, to turn them into shares of the interval."""

    def __init__(self, proc_root: str, walk_seconds: float = FD_WALK_SECONDS,
                 walk_share: float | None = WALK_SHARE, *, dev_root: str | None = None,
                 walk: ClientWalk | None = None) -> None:
        """`walk`: the walk to go on with (another meter's); None: a new one of these settings."""
        self.walk = walk if walk is not None else ClientWalk(proc_root, walk_seconds, walk_share=walk_share,
                                                             safety_share=SAFETY_SHARE, dev_root=dev_root)
        self._previous: dict[_ClientKey, _Seen] = {}
        self._then: float | None = None
        self._idle: dict[str, tuple[IntelCard, CardUse, CardUse]] = {}  # pdev -> card, its use unmeasured, measured
        # pdev -> (card, measured, memory), classes seen, shares and the use built from them on the last tick
        self._last_use: dict[str, tuple[tuple[IntelCard, bool, int], set[EngineClass], dict[EngineClass, float],
                                        CardUse]] = {}
        self._pdevs: tuple[str, ...] | None = None  # the cards' addresses `_wants` knows
        self._wants: Callable[[DrmClient], bool] = lambda client: False
        # Last tick's clients, whether it measured and its cards; its uses; whether every client was the record
        # of the tick before (then the same inputs again give the same uses).
        self._inputs: tuple[list[tuple[int, str, DrmClient]], bool, tuple[str, ...], tuple[IntelCard, ...]] | None \
            = None
        self._uses: list[CardUse] = []
        self._settled = False

    def read(self, now: float, cards: Mapping[str, IntelCard]) -> list[CardUse]:
        """Use per card, in the order of `cards` (keyed by PCI address); every card gets one, clients or not. While
        nothing moved it is last tick's very list: the caller must not change it."""
        return self.account(now, cards, self.walk.read(now, self.wants(cards)))

    def wants(self, cards: Mapping[str, IntelCard]) -> Callable[[DrmClient], bool]:
        """Whether a client is of one of the cards: one predicate while the addresses stay (the walk asks it only of
        new records)."""
        pdevs = tuple(cards)
        if pdevs != self._pdevs:
            self._pdevs, self._wants = pdevs, of_cards(pdevs)
        return self._wants

    def carry_on(self, kept: Mapping[_ClientKey, _Times], then: float | None) -> None:
        """Goes on from another meter's state: each client's kept engine times and the last tick's time."""
        self._previous = {key: _Seen(_UNREAD, times, 0) for key, times in kept.items()}
        self._then, self._settled = then, False

    def account(self, now: float, cards: Mapping[str, IntelCard],
                found: list[tuple[int, str, DrmClient]]) -> list[CardUse]:
        """`read` on the clients found now (`found`: the walk's answer to `wants(cards)`)."""
        interval = None if self._then is None or now <= self._then else now - self._then
        measured = interval is not None
        pdevs = tuple(cards)
        inputs = (found, measured, pdevs, tuple(cards.values()))
        if self._settled and inputs == self._inputs:
            # Last tick's clients (equal records), whose were those of the tick before: no engine moved and the sums
            # are last tick's, so are the uses (a pure function of them).
            self._then = now
            return self._uses
        tallies: dict[str, _Tally] = {}  # only the cards that have clients now
        previous, current = self._previous, {}
        settled = True  # every client last tick's record
        # One loop a client, every step inline: each card's client is read on every tick.
        for _, _, client in found:
            pdev = (client.pdev or "").lower()
            key = (pdev, client.client_id)
            if key in current:
                continue  # one client shared through several fds or processes counts once
            tally = tallies.get(pdev)
            if tally is None:
                tally = tallies[pdev] = _Tally(cards[pdev])
            before = previous.get(key)
            if before is not None and before.client is client:
                # The same record as last tick (its text did not change): no engine moved, the shares it adds are 0.
                tally.memory += before.memory
                tally.seen.update(before.times)
                current[key] = before
                continue
            settled = False
            if before is not None and client.regions == before.client.regions:
                memory = before.memory  # an xe client's clock moved, its memory did not
            else:
                memory = device_memory(client)
            tally.memory += memory
            engines = by_class(client)
            tally.seen.update(engines)
            current[key] = _Seen(client, engines if before is None else
                                 _advance(tally.shares, before.times, engines, interval), memory)
        self._previous, self._then = current, now
        self._uses = [self._use(tally, measured) if (tally := tallies.get(pdev)) is not None
                      else self._idle_use(card, measured) for pdev, card in cards.items()]
        self._settled, self._inputs = settled, inputs
        return self._uses

    def _use(self, tally: _Tally, measured: bool) -> CardUse:
        """The card's use; last tick's record when its sums are the same (an idle client, or none that moved)."""
        last = self._last_use.get(tally.card.bus_id)
        if last is not None and last[0] == (tally.card, measured, tally.memory) and last[1] == tally.seen \
                and last[2] == tally.shares:
            return last[3]
        use = _card_use(tally.card, tally.seen, tally.shares, tally.memory, measured)
        self._last_use[tally.card.bus_id] = ((tally.card, measured, tally.memory), tally.seen, tally.shares, use)
        return use

    def _idle_use(self, card: IntelCard, measured: bool) -> CardUse:
        """A card without clients: the same use every tick, built once (per card found: a rescan makes new ones)."""
        kept = self._idle.get(card.bus_id)
        if kept is None or kept[0] is not card:
            kept = self._idle[card.bus_id] = (card, _card_use(card, set(card.engines), {}, 0, False),
                                              _card_use(card, set(card.engines), {}, 0, True))
        return kept[2] if measured else kept[1]


# A record no client read equals (a region no fdinfo line names): a client carried on has its memory summed anew.
_UNREAD = DrmClient("", None, 0, (), (RegionMemory("", -1),))


class _Seen(NamedTuple):
    """A client as last read: its record, its engine times per class (kept larger) and its memory on the card."""

    client: DrmClient
    times: _Times
    memory: int


class _Tally:
    """One card's sums over its clients on one tick."""

    __slots__ = ("card", "memory", "seen", "shares")

    def __init__(self, card: IntelCard) -> None:
        self.card = card
        self.memory = 0
        self.seen: set[EngineClass] = set(card.engines)
        self.shares: dict[EngineClass, float] = {}


def of_cards(pdevs: tuple[str, ...]) -> Callable[[DrmClient], bool]:
    """Whether a client is of one of the cards at these (lower-case) PCI addresses."""
    known = frozenset(pdevs)
    return lambda client: (client.pdev or "").lower() in known


def by_class(client: DrmClient) -> _Times:
    """The client's engine times per class (a class named twice: its last engine); engines of no class left out."""
    found: _Times = {}
    for engine in client.engines:
        cls = _CLASSES.get(engine.name) or engine_class(engine.name)
        if cls is not None:
            found[cls] = engine
    return found


def device_memory(client: DrmClient) -> int:
    """Bytes the client holds in the card's own memory."""
    return sum(r.bytes for r in client.regions if r.region.startswith(_DEVICE_REGIONS))


def _advance(shares: dict[EngineClass, float], before: _Times, now: _Times, interval: float | None) -> _Times:
    """Adds each class's share of the interval (None: none) to `shares` and returns the times kept: one loop over the
    classes for the share (`busy_percent`) and the kept-larger rule of each pair.

    drm-usage-stats: a value below the one read before is ignored until the counter catches up (kept larger), and
    gives no share. An engine the client did not list before has no earlier value to count from; an idle one adds
    0 (or nothing, without a clock delta): as absent to _card_use."""
    kept: _Times = {}
    for cls, engine in now.items():
        start = before.get(cls)
        if start is None:
            kept[cls] = engine
            continue
        busy = engine.busy - start.busy
        if busy < 0:
            kept[cls] = start
            continue
        kept[cls] = engine
        if busy and interval is not None and (share := busy_percent(start, engine, interval)):
            shares[cls] = shares.get(cls, 0.0) + share
    return kept


def _card_use(card: IntelCard, seen: set[EngineClass], shares: dict[EngineClass, float], memory: int,
              measured: bool) -> CardUse:
    engines = tuple(
        (cls, round(min(100.0, shares.get(cls, 0.0)), 1) if measured else None) for cls in ENGINE_ORDER if cls in seen
    )
    return CardUse(engines, memory if card.discrete else None)


# The engine names xe and i915 write (rcs, render, ccs, ...) looked up without a call; others by engine_class.
_CLASSES: dict[str, EngineClass] = {name: cls for name in ("rcs", "bcs", "vcs", "vecs", "ccs", "render", "copy",
                                                           "video", "video-enhance", "compute")
                                    if (cls := engine_class(name)) is not None}
