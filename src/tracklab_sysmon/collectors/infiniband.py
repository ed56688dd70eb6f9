"""InfiniBand and RoCE ports from /sys/class/infiniband under `sys_root`: data and packet rates, state, errors.

Data counters and the port state are read every tick through kept descriptors; the physical state,
rate, link layer and error counters every SLOW_SECONDS (and whenever the state changed), since each
PMA counter read may cost the HCA a management datagram; the driver's hw_counters (dozens per mlx5
port) every HW_SECONDS. Ports take these reads in turn, and are found again every RESCAN_SECONDS.
Every file is kept open once read (the slow tiers' too: an open and close cost more than the read); the
per-tick files of all ports are read, parsed and rated in one call, a port's slow-tier texts and error counters in
one, its hw_counters in one (`infiniband_ports`: the C helper or its Python twin). A slow tier that reads as it did
the last time keeps what was made of it (parsed texts, error record, hw_counters): the usual slow read parses
nothing and makes no record.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._sysfs import list_dir
from ..errors import Unavailable
from ..model import HwCounter, InfinibandErrors, InfinibandPort, InfinibandSample
from . import infiniband_files as ib
from .base import Partial
from .infiniband_backend import ports_backend
from .infiniband_efa import hw_data_files
from .infiniband_ports import DATA, CounterFiles, PortsBackend, PortSpec, PortsTick, Tier, parsed

SLOW_SECONDS = 5.0
HW_SECONDS = 30.0
SPREAD = 5  # the ports' slow reads are spread over this many parts of the period
RESCAN_SECONDS = 30.0
CLASS_DIR = "class/infiniband"
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
_SLOW_TEXTS = ("link_layer", "phys_state", "rate")

_new = tuple.__new__


@dataclass(frozen=True, slots=True)
class _Slow:
    """What a port reports on the slow tier, and the read of its files it was made of (None: not read yet)."""

    read: Tier | None = None
    link_layer: str | None = None
    physical_state: str | None = None
    rate: float | None = None
    errors: InfinibandErrors = field(default_factory=InfinibandErrors)


@dataclass(slots=True)
class PortFiles:
    """One port's folder and its kept slow-tier files, found at discovery (the per-tick files are the meter's)."""

    device: str
    port: int
    path: str
    data: tuple[str, ...]  # the data counters' paths, in DATA order
    hw_names: tuple[str, ...]  # the driver's names of its hw_counters
    hw_counters: CounterFiles  # those files, in that order
    slow_files: CounterFiles  # _SLOW_TEXTS' files, then the ERROR_FILES, in order
    slow: _Slow = field(default_factory=_Slow)
    slow_at: float | None = None
    hw_at: float | None = None
    hw_read: Tier | None = None  # the hw_counters' read that hw_values were made of
    hw_values: tuple[HwCounter, ...] = ()
    slot: int = 0  # discovery order, which spreads the ports' slow reads over the period
    last_state: str | None = None
    words: bool = True  # counters/ count data in 4-byte words; EFA's hw_counters (infiniband_efa) in bytes
    key: str = field(init=False)

    def __post_init__(self) -> None:
        self.key = f"{self.device}/{self.port}"

    def spec(self) -> PortSpec:
        return PortSpec(self.key, self.data, os.path.join(self.path, "state"), self.words)


def discover(sys_root: str, known: Mapping[str, PortFiles] | None = None,
             backend: PortsBackend | None = None) -> tuple[PortFiles, ...] | None:
    """Every port of every RDMA device in (device, port) order; None when the class folder is absent. A port in
    `known` (by key) is that one, its files and slow tiers as they are: only new ones are looked into, their
    counter files read by `backend` (the chosen one by default)."""
    counters = (backend or ports_backend()).counters
    root = os.path.join(sys_root, CLASS_DIR)
    if not os.path.isdir(root):
        return None
    found: list[PortFiles] = []
    for device in list_dir(root):
        ports = os.path.join(root, device, "ports")
        for port in sorted((int(p) for p in list_dir(ports) if p.isdigit()), key=int):
            seen = known.get(f"{device}/{port}") if known else None
            if seen is not None:
                found.append(seen)
                continue
            path = os.path.join(ports, str(port))
            efa = hw_data_files(path)
            hw_names = tuple(n for n in list_dir(os.path.join(path, "hw_counters")) if n not in NOT_COUNTERS)
            found.append(PortFiles(
                device=device, port=port, path=path, slot=len(found), words=efa is None,
                data=efa or tuple(os.path.join(path, "counters", name) for name in DATA),
                hw_names=hw_names, hw_counters=counters([os.path.join(path, "hw_counters", n) for n in hw_names]),
                slow_files=counters([os.path.join(path, "counters", file) for _, file in ERROR_FILES],
                                    [os.path.join(path, name) for name in _SLOW_TEXTS]),
            ))
    return tuple(found)


class InfinibandCollector:
    name = "infiniband"
    # Each counters/ read is a management datagram the driver sends to the HCA's firmware and waits
    # for (tens of microseconds or more on real hardware): kept off the event loop like NVML calls.
    blocking = True

    def __init__(self, sys_root: str = "/sys", backend: PortsBackend | None = None) -> None:
        """`backend`: the C helper's readers or their Python twin's (TRACKLAB_SYSMON_NATIVE's choice by default)."""
        self.sys_root = sys_root
        self._ports: tuple[PortFiles, ...] | None = None
        self._found_at: float | None = None
        self._backend = backend or ports_backend()
        self._meter = self._backend.meter()

    def collect(self, now: float) -> InfinibandSample | Partial[InfinibandSample]:
        ports = self._discover(now)
        if not ports:
            root = os.path.join(self.sys_root, CLASS_DIR)
            if ports is None:
                raise Unavailable(f"no RDMA driver loaded: {root} is absent")
            raise Unavailable(f"no InfiniBand or RoCE port under {root}")
        tick = self._meter.read(now)
        unreadable = tick.unreadable
        if len(unreadable) == len(ports) * len(DATA):  # nothing of the source works: the collector failed
            raise OSError(f"no data counter of any port could be read: {unreadable[0]}")
        sample = InfinibandSample(tuple(_records(ports, tick, now)))
        problems = unreadable + tick.problems
        return Partial(sample, "; ".join(problems)) if problems else sample

    def _discover(self, now: float) -> tuple[PortFiles, ...] | None:
        if self._found_at is None or now - self._found_at >= RESCAN_SECONDS:
            # A port seen before keeps its kept files' slow tier: only new ones start afresh.
            known = self._ports or ()
            self._ports = discover(self.sys_root, {p.key: p for p in known}, self._backend)
            self._found_at = now
            # Ports change only here: the files and counters of ports gone are forgotten (one that returns
            # starts afresh), a port seen before keeps its own (the meter knows it by key). The same ports
            # (the usual rescan) leave the meter as it is.
            found = self._ports or ()
            if len(found) != len(known) or any(a is not b for a, b in zip(found, known, strict=True)):
                self._meter.set_ports([p.spec() for p in found])
        return self._ports


def _records(ports: tuple[PortFiles, ...], tick: PortsTick, now: float) -> list[InfinibandPort]:
    """Each port's record from its tick (state, then four values and four rates), reading its slow tiers when they
    are due; made by tuple.__new__ (what InfinibandPort's own constructor does, in half the time), in one loop."""
    values, rates = tick.values, tick.rates
    records = []
    at = 0
    for files, state in zip(ports, tick.states, strict=True):
        if files.slow_at is None or now - files.slow_at >= SLOW_SECONDS or state != files.last_state:
            # Ports take their slow reads in turn, a fifth of the period apart, not all on one tick.
            stagger = files.slot % SPREAD * SLOW_SECONDS / SPREAD if files.slow_at is None else 0.0
            files.slow, files.slow_at = _read_slow(files), now - stagger
        if files.hw_at is None or now - files.hw_at >= HW_SECONDS:
            stagger = files.slot % SPREAD * HW_SECONDS / SPREAD if files.hw_at is None else 0.0
            _read_hw(files)
            files.hw_at = now - stagger
        files.last_state = state
        slow = files.slow
        records.append(_new(InfinibandPort, (
            files.device, files.port, slow.link_layer, state, slow.physical_state, slow.rate,
            *values[at:at + 4], *rates[at:at + 4], slow.errors, files.hw_values)))
        at += 4
    return records


def _read_slow(files: PortFiles) -> _Slow:
    """The port's slow tier in one call (three texts, the error counters); what reads as before is kept as it was
    made (the texts' parse, the error record), and the record itself when all of it does."""
    slow = files.slow
    read = files.slow_files.read_tier()
    if read is slow.read:
        return slow
    texts, counters = read
    if slow.read is not None and texts is slow.read[0]:
        link_layer, physical_state, rate = slow.link_layer, slow.physical_state, slow.rate
    else:
        link_layer = parsed(texts[0], ib.parse_link_layer)
        physical_state = parsed(texts[1], ib.parse_state)
        rate = parsed(texts[2], ib.parse_rate)
    same_errors = slow.read is not None and counters is slow.read[1]
    return _Slow(read, link_layer, physical_state, rate, slow.errors if same_errors else InfinibandErrors(*counters))


def _read_hw(files: PortFiles) -> None:
    """The port's hw_counters, each under the driver's name (one that cannot be read is left out), made again only
    when they read otherwise than the last time."""
    read = files.hw_counters.read_tier()
    if read is not files.hw_read:
        files.hw_read = read
        files.hw_values = tuple(HwCounter(name, value) for name, value in zip(files.hw_names, read[1], strict=True)
                                if value is not None)
