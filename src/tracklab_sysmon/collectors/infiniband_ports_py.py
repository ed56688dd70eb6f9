"""Every InfiniBand port's counter files read, parsed and rated in Python: the twin of the C helper's reads."""

from __future__ import annotations

from collections.abc import Sequence

from .._sysfs import KeptAttribute, MovingAttribute
from ..errors import ParseError
from ..rates import CounterRates, rounded
from . import infiniband_files as ib
from .infiniband_ports import PortSpec, PortsTick, Tier, kept_tier, parsed, saturated, state_of, too_big


class _Port:
    """One port's kept files, read as the C helper reads them (MovingAttribute): the four data counters, the state."""

    __slots__ = ("data", "keys", "spec", "state")

    def __init__(self, spec: PortSpec) -> None:
        self.spec = spec
        self.data = tuple(MovingAttribute(path) for path in spec.data)
        self.state = MovingAttribute(spec.state)
        self.keys = tuple((spec.key, index) for index in range(len(spec.data)))  # CounterRates keys, built once


class PyPortsMeter:
    """`PortsMeter` in Python: each file through its MovingAttribute, each counter through CounterRates."""

    def __init__(self) -> None:
        self._ports: tuple[_Port, ...] = ()
        self._rates = CounterRates()

    def set_ports(self, ports: Sequence[PortSpec]) -> None:
        old = {p.spec.key: p for p in self._ports}
        self._ports = tuple(old.get(spec.key) or _Port(spec) for spec in ports)
        self._rates.retain(key for p in self._ports for key in p.keys)

    def read(self, now: float) -> PortsTick:
        tick = PortsTick([], [], [], [], [])
        for port in self._ports:
            self._port(port, now, tick)
        return tick

    def _port(self, port: _Port, now: float, tick: PortsTick) -> None:
        raws = [_counter(kept, tick.unreadable) for kept in port.data]
        state = port.state.read_page()
        tick.states.append(state_of(state) if state is not None else None)
        words = port.spec.words
        rate = self._rates.rate
        for index, (key, raw) in enumerate(zip(port.keys, raws, strict=True)):
            value = raw
            if words and index < 2 and raw is not None:  # the data counters, in 4-byte words: bytes
                value = ib.words_to_bytes(raw)
                value = value if value <= ib.MAX_COUNTER else None
            counter_rate = rounded(rate(key, value, now))
            if raw == ib.SATURATED_32 and words:  # a 32-bit counter stuck at its top: no rate can be told from it
                counter_rate = None
                tick.problems.append(saturated(port.spec.key, index))
            elif raw is not None and value is None:
                tick.problems.append(too_big(port.spec.key, index))
            tick.values.append(value)
            tick.rates.append(counter_rate)


class PyCounterFiles:
    """`CounterFiles` in Python: each file through its KeptAttribute, one page; the counters parsed by parse_counter."""

    def __init__(self, paths: Sequence[str], texts: Sequence[str] = ()) -> None:
        self._texts = tuple(KeptAttribute(path) for path in texts)
        self._files = tuple(KeptAttribute(path) for path in paths)
        self._last: Tier | None = None

    def read_tier(self) -> Tier:
        texts = tuple(kept.read_page() for kept in self._texts)
        counters = tuple(parsed(kept.read_page(), ib.parse_counter) for kept in self._files)
        self._last = kept_tier(self._last, texts, counters)
        return self._last


def _counter(kept: MovingAttribute, unreadable: list[str]) -> int | None:
    """A data counter, or None; one that fails says why in `unreadable` (an absent file is not a problem)."""
    try:
        return ib.parse_counter(kept.read_page_or_raise().decode("utf-8", "replace"))
    except FileNotFoundError:
        return None
    except (OSError, ParseError) as exc:
        unreadable.append(f"{kept.path}: {exc}")
        return None
