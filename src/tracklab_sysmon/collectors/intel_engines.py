"""Intel GPU use per engine class and device memory, summed over each card's DRM clients (drm-usage-stats fdinfo).

The clients come from `drm_clients.ClientWalk`: every process's fds are walked every `walk_seconds` (10 s by
default, stretched so that walks cost at most `walk_share` of one core), and between walks only the fds found
holding an Intel client are read again. A client is keyed by (card, `drm-client-id`), so one shared through
several fds or processes counts once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..model import EngineClass
from .drm_clients import FD_WALK_SECONDS, ClientWalk
from .drm_fdinfo import DrmClient, EngineTime, busy_percent
from .intel_cards import ENGINE_ORDER, IntelCard, engine_class

WALK_SHARE = 0.0005  # walks take at most 0.05 % of one core: 0.5 ms a second, however many fds the host has
_DEVICE_REGIONS = ("vram", "local")  # memory on the card (xe: vram0, i915: local0)
_ClientKey = tuple[str, int]  # (pdev, client id)


@dataclass(frozen=True, slots=True)
class CardUse:
    """One card's engine classes (% busy over the interval; None on the first reading) and device memory held."""

    engines: tuple[tuple[EngineClass, float | None], ...]
    memory: int | None  # bytes in the card's own memory; None for an integrated GPU


class EngineMeter:
    """Keeps each client's engine times between calls, to turn them into shares of the interval."""

    def __init__(self, proc_root: str, walk_seconds: float = FD_WALK_SECONDS,
                 walk_share: float | None = WALK_SHARE) -> None:
        self.walk = ClientWalk(proc_root, walk_seconds, walk_share=walk_share)
        self._previous: dict[_ClientKey, dict[EngineClass, EngineTime]] = {}
        self._then: float | None = None

    def read(self, now: float, cards: Mapping[str, IntelCard]) -> dict[str, CardUse]:
        """Use per card, keyed by PCI address (as `cards` is); every card gets an entry, clients or not."""
        clients: dict[_ClientKey, dict[EngineClass, EngineTime]] = {}
        memory: dict[str, int] = dict.fromkeys(cards, 0)
        for _, _, client in self.walk.read(now, lambda c: (c.pdev or "").lower() in cards):
            key = ((client.pdev or "").lower(), client.client_id)
            if key not in clients:
                clients[key] = _by_class(client)
                memory[key[0]] += sum(r.bytes for r in client.regions if r.region.startswith(_DEVICE_REGIONS))
        interval = None if self._then is None or now <= self._then else now - self._then
        shares: dict[str, dict[EngineClass, float]] = {pdev: {} for pdev in cards}
        seen: dict[str, set[EngineClass]] = {pdev: set(card.engines) for pdev, card in cards.items()}
        current: dict[_ClientKey, dict[EngineClass, EngineTime]] = {}
        for key, engines in clients.items():
            seen[key[0]].update(engines)
            before = self._previous.get(key)
            current[key] = _kept_larger(before or {}, engines)
            if interval is not None and before is not None:
                _add_shares(shares[key[0]], before, engines, interval)
        self._previous, self._then = current, now
        return {pdev: _card_use(card, seen[pdev], shares[pdev], memory[pdev], interval is not None)
                for pdev, card in cards.items()}


def _by_class(client: DrmClient) -> dict[EngineClass, EngineTime]:
    found: dict[EngineClass, EngineTime] = {}
    for engine in client.engines:
        cls = engine_class(engine.name)
        if cls is not None:
            found[cls] = engine
    return found


_Times = dict[EngineClass, EngineTime]


def _kept_larger(before: _Times, now: _Times) -> _Times:
    """drm-usage-stats: a value below the one read before is ignored until the counter catches up."""
    return {cls: before[cls] if cls in before and engine.busy < before[cls].busy else engine
            for cls, engine in now.items()}


def _add_shares(shares: dict[EngineClass, float], before: dict[EngineClass, EngineTime],
                now: dict[EngineClass, EngineTime], interval: float) -> None:
    for cls, engine in now.items():
        start = before.get(cls)
        if start is None:
            continue  # an engine the client did not list before has no earlier value to count from
        share = busy_percent(start, engine, interval)
        shares[cls] = shares.get(cls, 0.0) + (share or 0.0)


def _card_use(card: IntelCard, seen: set[EngineClass], shares: dict[EngineClass, float], memory: int,
              measured: bool) -> CardUse:
    engines = tuple(
        (cls, round(min(100.0, shares.get(cls, 0.0)), 1) if measured else None) for cls in ENGINE_ORDER if cls in seen
    )
    return CardUse(engines=engines, memory=memory if card.discrete else None)
