"""InfiniBand and RoCE ports from /sys/class/infiniband under `sys_root`: data and packet rates, state, errors.

Data counters and the port state are read every tick through kept descriptors; the physical state,
rate, link layer and error counters every SLOW_SECONDS (and whenever the state changed), since each
PMA counter read may cost the HCA a management datagram; the driver's hw_counters (dozens per mlx5
port) every HW_SECONDS. Ports take these reads in turn, and are found again every RESCAN_SECONDS.
Every file is kept open once read (the slow tiers' too: an open and close cost more than the read).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .._sysfs import KeptAttribute, KeptFile, list_dir
from ..errors import ParseError, Unavailable
from ..model import HwCounter, InfinibandErrors, InfinibandPort, InfinibandSample
from ..rates import CounterRates, rounded
from . import infiniband_files as ib
from .base import Partial
from .infiniband_efa import hw_data_files

SLOW_SECONDS = 5.0
HW_SECONDS = 30.0
SPREAD = 5  # the ports' slow reads are spread over this many parts of the period
RESCAN_SECONDS = 30.0
CLASS_DIR = "class/infiniband"
_DATA = ("port_xmit_data", "port_rcv_data", "port_xmit_packets", "port_rcv_packets")
_RATE_FIELDS = ("tx_bytes", "rx_bytes", "tx_packets", "rx_packets")
# InfinibandErrors field -> counters/ file (the ABI document's names; VL15_dropped keeps its capitals).
ERROR_FILES = (
    ("symbol_errors", "symbol_error"),
    ("link_error_recovery", "link_error_recovery"),
    ("link_downed", "link_downed"),
    ("rcv_errors", "port_rcv_errors"),
    ("rcv_remote_physical_errors", "port_rcv_remote_physical_errors"),
    ("rcv_switch_relay_errors", "port_rcv_switch_relay_errors"),
    ("xmit_discards", "port_xmit_discards"),
    ("xmit_constraint_errors", "port_xmit_constraint_errors"),
    ("rcv_constraint_errors", "port_rcv_constraint_errors"),
    ("local_link_integrity_errors", "local_link_integrity_errors"),
    ("excessive_buffer_overrun_errors", "excessive_buffer_overrun_errors"),
    ("vl15_dropped", "VL15_dropped"),
)
NOT_COUNTERS = frozenset({"lifespan"})  # hw_counters/lifespan is the cache period (ms), not a count

T = TypeVar("T")


@dataclass(slots=True)
class _Slow:
    """What a port reports on the slow tier."""

    link_layer: str | None = None
    physical_state: str | None = None
    rate: float | None = None
    errors: InfinibandErrors = field(default_factory=InfinibandErrors)


@dataclass(slots=True)
class PortFiles:
    """One port's folder and its kept files, found at discovery."""

    device: str
    port: int
    path: str
    data: tuple[KeptFile, ...]
    state: KeptFile
    hw_counters: tuple[tuple[str, KeptFile], ...]  # (driver's name, its file)
    slow_files: tuple[KeptFile, ...]  # link_layer, phys_state, rate, then the ERROR_FILES in order
    slow: _Slow = field(default_factory=_Slow)
    slow_at: float | None = None
    hw_at: float | None = None
    hw_values: tuple[HwCounter, ...] = ()
    slot: int = 0  # discovery order, which spreads the ports' slow reads over the period
    last_state: str | None = None
    words: bool = True  # counters/ count data in 4-byte words; EFA's hw_counters (infiniband_efa) in bytes
    key: str = field(init=False)
    rate_keys: tuple[tuple[str, str], ...] = field(init=False)  # the data counters' CounterRates keys, built once

    def __post_init__(self) -> None:
        self.key = f"{self.device}/{self.port}"
        self.rate_keys = tuple((self.key, name) for name in _RATE_FIELDS)


def discover(sys_root: str) -> tuple[PortFiles, ...] | None:
    """Every port of every RDMA device in (device, port) order; None when the class folder is absent."""
    root = os.path.join(sys_root, CLASS_DIR)
    if not os.path.isdir(root):
        return None
    found: list[PortFiles] = []
    for device in list_dir(root):
        ports = os.path.join(root, device, "ports")
        for port in sorted((int(p) for p in list_dir(ports) if p.isdigit()), key=int):
            path = os.path.join(ports, str(port))
            efa = hw_data_files(path)
            found.append(PortFiles(
                device=device, port=port, path=path, slot=len(found), words=efa is None,
                data=efa or tuple(KeptAttribute(os.path.join(path, "counters", name)) for name in _DATA),
                state=KeptAttribute(os.path.join(path, "state")),
                hw_counters=tuple((n, KeptAttribute(os.path.join(path, "hw_counters", n)))
                                  for n in list_dir(os.path.join(path, "hw_counters")) if n not in NOT_COUNTERS),
                slow_files=_slow_files(path),
            ))
    return tuple(found)


class InfinibandCollector:
    name = "infiniband"
    # Each counters/ read is a management datagram the driver sends to the HCA's firmware and waits
    # for (tens of microseconds or more on real hardware): kept off the event loop like NVML calls.
    blocking = True

    def __init__(self, sys_root: str = "/sys") -> None:
        self.sys_root = sys_root
        self._ports: tuple[PortFiles, ...] | None = None
        self._found_at: float | None = None
        self._rates = CounterRates()

    def collect(self, now: float) -> InfinibandSample | Partial[InfinibandSample]:
        ports = self._discover(now)
        root = os.path.join(self.sys_root, CLASS_DIR)
        if ports is None:
            raise Unavailable(f"no RDMA driver loaded: {root} is absent")
        if not ports:
            raise Unavailable(f"no InfiniBand or RoCE port under {root}")
        problems: list[str] = []
        unreadable: list[str] = []
        sample = InfinibandSample(tuple(self._port(p, now, problems, unreadable) for p in ports))
        if len(unreadable) == len(ports) * len(_DATA):  # nothing of the source works: the collector failed
            raise OSError(f"no data counter of any port could be read: {unreadable[0]}")
        problems = unreadable + problems
        return Partial(sample, "; ".join(problems)) if problems else sample

    def _discover(self, now: float) -> tuple[PortFiles, ...] | None:
        if self._found_at is None or now - self._found_at >= RESCAN_SECONDS:
            old = {p.key: p for p in self._ports or ()}
            found = discover(self.sys_root)
            # A port seen before keeps its kept files' slow tier: only new ones start afresh.
            self._ports = None if found is None else tuple(old.get(p.key, p) for p in found)
            self._found_at = now
            # Ports change only here: the counters of ports gone are forgotten (one that returns starts afresh).
            self._rates.retain(k for p in self._ports or () for k in p.rate_keys)
        return self._ports

    def _port(self, files: PortFiles, now: float, problems: list[str], unreadable: list[str]) -> InfinibandPort:
        counters = [_read(f, ib.parse_counter, unreadable) for f in files.data]
        state = _read(files.state, _state, None)
        if files.slow_at is None or now - files.slow_at >= SLOW_SECONDS or state != files.last_state:
            # Ports take their slow reads in turn, a fifth of the period apart, not all on one tick.
            stagger = files.slot % SPREAD * SLOW_SECONDS / SPREAD if files.slow_at is None else 0.0
            files.slow, files.slow_at = _read_slow(files), now - stagger
        if files.hw_at is None or now - files.hw_at >= HW_SECONDS:
            stagger = files.slot % SPREAD * HW_SECONDS / SPREAD if files.hw_at is None else 0.0
            files.hw_values, files.hw_at = _read_hw(files), now - stagger
        files.last_state = state
        words_tx, words_rx, packets_tx, packets_rx = counters
        values = (_bytes(words_tx), _bytes(words_rx), packets_tx, packets_rx) if files.words else tuple(counters)
        rate = self._rates.rate
        rates = [rate(key, value, now) for key, value in zip(files.rate_keys, values, strict=True)]
        for name, raw, value in zip(_DATA, counters, values, strict=True):
            if raw == ib.SATURATED_32 and files.words:  # a 32-bit counter stuck at its top: no rate can be told from it
                rates[_DATA.index(name)] = None
                problems.append(f"{files.key} {name} is saturated at 2^32-1 (no 64-bit PortCountersExtended)")
            elif raw is not None and value is None:
                problems.append(f"{files.key} {name} in bytes does not fit 64 bits")
        slow = files.slow
        return InfinibandPort(
            device=files.device, port=files.port, link_layer=slow.link_layer, state=state,
            physical_state=slow.physical_state, rate=slow.rate,
            tx_bytes=values[0], rx_bytes=values[1], tx_packets=values[2], rx_packets=values[3],
            tx_rate=rounded(rates[0]), rx_rate=rounded(rates[1]),
            tx_packets_rate=rounded(rates[2]), rx_packets_rate=rounded(rates[3]),
            errors=slow.errors, hw_counters=files.hw_values,
        )


def _slow_files(path: str) -> tuple[KeptFile, ...]:
    """The port's slow-tier files, kept like the per-tick ones (nothing is opened before the first read)."""
    names = ("link_layer", "phys_state", "rate", *(os.path.join("counters", file) for _, file in ERROR_FILES))
    return tuple(KeptAttribute(os.path.join(path, name)) for name in names)


def _read_slow(files: PortFiles) -> _Slow:
    """The port's slow-tier files, one pread each through their kept descriptors."""
    link_layer, phys_state, rate, *errors = (kept.read_page() for kept in files.slow_files)
    return _Slow(
        link_layer=_parsed(link_layer, ib.parse_link_layer),
        physical_state=_parsed(phys_state, ib.parse_state),
        rate=_parsed(rate, ib.parse_rate),
        errors=InfinibandErrors(*(_parsed(data, ib.parse_counter) for data in errors)),
    )


def _read_hw(files: PortFiles) -> tuple[HwCounter, ...]:
    """The port's hw_counters, each under the driver's name; one that cannot be read is left out."""
    return tuple(
        HwCounter(name, value) for name, kept in files.hw_counters
        if (value := _parsed(kept.read_page(), ib.parse_counter)) is not None
    )


def _read(kept: KeptFile, parse: Callable[[str], T], problems: list[str] | None) -> T | None:
    """A kept file parsed, or None; a data counter that fails says why in `problems` (absent is not a problem)."""
    try:
        return parse(kept.read_or_raise())
    except FileNotFoundError:
        return None
    except (OSError, ParseError) as exc:
        if problems is not None:
            problems.append(f"{kept.path}: {exc}")
        return None


@functools.lru_cache(maxsize=64)
def _state(text: str) -> str:
    """parse_state, remembered: a port's state file reads the same text tick after tick."""
    return ib.parse_state(text)


def _parsed(data: bytes | None, parse: Callable[[str], T]) -> T | None:
    if data is None:
        return None
    try:
        return parse(data.decode("utf-8", "replace"))
    except ParseError:
        return None


def _bytes(words: int | None) -> int | None:
    if words is None:
        return None
    value = ib.words_to_bytes(words)
    return value if value <= ib.MAX_COUNTER else None
