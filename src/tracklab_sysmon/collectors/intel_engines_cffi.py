"""`intel_engines.EngineMeter` with its per-tick parse and accounting in C (native/engines.c): the same uses."""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from typing import Any

from .._sysmon_cffi import ffi, lib  # ImportError when the extension was not built
from ..model import EngineClass
from .drm_clients import FD_WALK_SECONDS, ClientWalk, new_fdinfo_parser
from .drm_fdinfo import DrmClient, EngineTime
from .intel_cards import ENGINE_ORDER, IntelCard
from .intel_engines import SAFETY_SHARE, WALK_SHARE, CardUse, EngineMeter, by_class, device_memory, of_cards
from .sysfs_ints_cffi import CffiKeptTexts, kept_texts

_OK, _DEFER = lib.EM_OK, lib.EM_DEFER  # AttributeError from an extension built before the meter existed
_NO_MEMORY = int(ffi.cast("size_t", -1))
_TIME, _ID, _MEMORY = 1 << 63, 1 << 64, 1 << 96  # what C holds of a client read in Python (numbers below these)
_CLASS = {cls: k for k, cls in enumerate(ENGINE_ORDER)}
# One card's sums read with `struct` in native layout (one unpack a tick for every card): checked against cffi.
_CARD = struct.Struct("@5dQQB0Q")  # shares, memory_lo, memory_hi, classes (padded to the struct's size)
if _CARD.size != ffi.sizeof("em_card") or len(ENGINE_ORDER) != lib.EM_CLASSES:
    raise ImportError("em_card's layout is not the one intel_engines_cffi unpacks")  # the Python meter serves
_Key = tuple[int, str]  # (pid, fd)


class CffiEngineMeter:
    """`EngineMeter`, with the walk's known clients read, parsed and accounted in C: a tick builds no record per
    client or engine, only each card's `CardUse` from its sums (rounded here, as `_card_use` rounds). A walk's
    clients are handed to C as readings; text the C parser leaves to Python is parsed here and handed back.

    A client C cannot hold (a number past its bounds, which the kernel's u64 counters do not reach) hands the
    meter's state to an `EngineMeter`, which goes on from there."""

    def __init__(self, proc_root: str, walk_seconds: float = FD_WALK_SECONDS,
                 walk_share: float | None = WALK_SHARE, *, dev_root: str | None = None) -> None:
        self._texts: CffiKeptTexts[_Key] = kept_texts()()  # the walk's, read by em_read
        self.walk = ClientWalk(proc_root, walk_seconds, walk_share=walk_share, safety_share=SAFETY_SHARE,
                               dev_root=dev_root, texts=self._texts)
        meter = lib.em_new()
        if meter == ffi.NULL:
            raise MemoryError("em_new")
        self._meter = ffi.gc(meter, lib.em_free)
        self._parse = new_fdinfo_parser()  # text C leaves to Python
        self._then: float | None = None
        self._python: EngineMeter | None = None  # after a hand-over
        self._pdevs: tuple[str, ...] = ()
        self._index: dict[str, int] = {}
        self._wants: Callable[[DrmClient], bool] = lambda client: False
        self._cards: tuple[IntelCard, ...] = ()
        self._masks: list[int] = []  # each card's own classes, as bits
        self._out = ffi.new("em_card[]", 0)
        self._view = memoryview(ffi.buffer(self._out))
        self._last: list[tuple[tuple[Any, ...], bool, CardUse] | None] = []
        self._array: Any = None  # the kept texts' array em_read last read, and its states
        self._states = ffi.new("uint8_t[]", 0)
        self._one = ffi.new("em_reading *")

    def read(self, now: float, cards: Mapping[str, IntelCard]) -> list[CardUse]:
        """As `EngineMeter.read` (a new list each tick)."""
        if self._python is not None:
            return self._python.read(now, cards)
        measured = self._then is not None and now > self._then
        interval = now - self._then if measured and self._then is not None else 0.0
        if tuple(cards.values()) != self._cards:
            self._set_cards(cards)
        walk, meter = self.walk, self._meter
        if walk.due(now):
            found = walk.walk_all(now, self._wants)
            readings = self._readings(found)
            if readings is None:
                return self._hand_over(now, cards, found)
            got = lib.em_account(meter, readings, len(found), measured, interval, self._out)
        else:
            array, order = self._texts.array
            if array is not self._array:
                self._array, self._states = array, ffi.new("uint8_t[]", len(order))
            bad = lib.em_read(meter, array, len(order), self._states)
            if bad == _NO_MEMORY:
                raise MemoryError("em_read")
            gone = self._settle(order) if bad else []
            if gone is None:
                return self._hand_over(now, cards, self._known(order))
            got = lib.em_account_members(meter, measured, interval, self._out)
            walk.lose(gone)
        if got < 0:
            raise MemoryError("em_account")
        self._then = now
        return self._uses(measured)

    def _set_cards(self, cards: Mapping[str, IntelCard]) -> None:
        pdevs = tuple(cards)
        if pdevs != self._pdevs:
            names = [ffi.new("char[]", pdev.encode("utf-8", "surrogatepass")) for pdev in pdevs]
            if lib.em_cards(self._meter, ffi.new("char *[]", names), len(names)) < 0:
                raise MemoryError("em_cards")
            self._pdevs, self._wants = pdevs, of_cards(pdevs)
            self._index = {pdev: k for k, pdev in enumerate(pdevs)}
            self._out = ffi.new("em_card[]", len(pdevs))
            self._view = memoryview(ffi.buffer(self._out))
        self._cards = tuple(cards.values())
        self._masks = [sum(1 << _CLASS[cls] for cls in set(card.engines)) for card in self._cards]
        self._last = [None] * len(self._cards)

    def _fill(self, client: DrmClient, r: Any) -> bool:
        """The client's reading into `r`; False where C cannot hold it."""
        times, memory = by_class(client), device_memory(client)
        if client.client_id >= _ID or memory >= _MEMORY or any(
                t.busy >= _TIME or (t.total or 0) >= _TIME or t.capacity >= _TIME for t in times.values()):
            return False
        r.card, r.client_id, r.memory_lo, r.memory_hi = self._index[(client.pdev or "").lower()], client.client_id, \
            memory & (_ID - 1), memory >> 64
        classes = 0
        for cls, t in times.items():
            k = _CLASS[cls]
            classes |= 1 << k
            r.times[k] = (t.busy, t.total or 0, t.capacity, t.total is not None)
        r.classes = classes
        return True

    def _readings(self, found: list[tuple[int, str, DrmClient]]) -> Any:
        """A walk's clients as C readings; None where one cannot be held."""
        readings = ffi.new("em_reading[]", len(found))
        for k, (_, _, client) in enumerate(found):
            if not self._fill(client, readings[k]):
                return None
        return readings

    def _settle(self, order: list[tuple[_Key, Any]]) -> list[_Key] | None:
        """The members em_read did not take: those C deferred parsed here and handed back; the keys gone (None: a
        client C cannot hold)."""
        gone, one, texts = [], self._one, self.walk.texts
        for k, state in enumerate(ffi.unpack(self._states, len(order))):
            if state == _OK:
                continue
            key = order[k][0]
            if state == _DEFER:
                text = texts.text(key)
                client = self._parse(text) if text is not None else None
                if client is not None and self._wants(client):
                    if not self._fill(client, one):
                        return None
                    lib.em_set(self._meter, k, one)
                    continue
            lib.em_set(self._meter, k, ffi.NULL)
            gone.append(key)
        return gone

    def _known(self, order: list[tuple[_Key, Any]]) -> list[tuple[int, str, DrmClient]]:
        """The members' clients parsed here from their last texts (ClientWalk.read's answer); the others lost."""
        found, gone, texts = [], [], self.walk.texts
        for key, _ in order:
            text = texts.text(key)
            client = self._parse(text) if text is not None else None
            if client is not None and self._wants(client):
                found.append((key[0], key[1], client))
            else:
                gone.append(key)
        self.walk.lose(gone)
        return found

    def _hand_over(self, now: float, cards: Mapping[str, IntelCard],
                   found: list[tuple[int, str, DrmClient]]) -> list[CardUse]:
        """An `EngineMeter` goes on from this meter's kept times, with this tick's clients."""
        count = lib.em_kept(self._meter, ffi.NULL, 0)
        kept = ffi.new("em_reading[]", count)
        lib.em_kept(self._meter, kept, count)
        times: dict[tuple[str, int], dict[EngineClass, EngineTime]] = {}
        for r in kept:
            if r.card >= 0:  # a card no longer there: none of its clients is found
                times[(self._pdevs[r.card], r.client_id)] = {
                    cls: EngineTime(cls, t.busy, t.total if t.has_total else None, t.capacity)
                    for k, cls in enumerate(ENGINE_ORDER) if r.classes >> k & 1 for t in (r.times[k],)}
        self._python = EngineMeter(self.walk.proc_root, walk=self.walk)
        self._python.carry_on(times, self._then)
        return self._python.account(now, cards, found)

    def _uses(self, measured: bool) -> list[CardUse]:
        """Each card's use from its sums, as `_card_use` makes it; last tick's record where the sums repeat."""
        uses, last = [], self._last
        for k, sums in enumerate(_CARD.iter_unpack(self._view)):
            kept = last[k]
            if kept is not None and kept[0] == sums and kept[1] == measured:
                uses.append(kept[2])
                continue
            seen = sums[7] | self._masks[k]
            engines = tuple([(cls, round(min(100.0, sums[i]), 1) if measured else None)
                             for i, cls in enumerate(ENGINE_ORDER) if seen >> i & 1])
            use = CardUse(engines, (sums[6] << 64 | sums[5]) if self._cards[k].discrete else None)
            last[k] = (sums, measured, use)
            uses.append(use)
        return uses
