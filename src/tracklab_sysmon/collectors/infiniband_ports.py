"""The reads of every InfiniBand port's counter files (per tick and slow tiers): their contract and backend choice.

Two backends give identical results: the C helper (native/ibports.c, `infiniband_ports_cffi`), one call for
every port's per-tick files and one for a port's slow tier (its texts and error counters) or its hw_counters, and
its Python twin (`infiniband_ports_py`), chosen by TRACKLAB_SYSMON_NATIVE as the hot path is (`infiniband_backend`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol, TypeVar

from ..errors import ParseError
from . import infiniband_files as ib

T = TypeVar("T")

# The data counters in the order of every port's four values: counters/ file names (EFA reads its own).
DATA = ("port_xmit_data", "port_rcv_data", "port_xmit_packets", "port_rcv_packets")


class PortSpec(NamedTuple):
    """What a port's per-tick reads need: its key ("device/port"), data counter files in DATA order, state file."""

    key: str
    data: tuple[str, ...]
    state: str
    words: bool  # counters/ count data in 4-byte words; EFA's hw_counters count bytes


class PortsTick(NamedTuple):
    """One tick of every port, in the order the ports were set: four values and rates a port, in DATA order."""

    values: list[int | None]  # bytes sent, bytes received, packets sent, packets received
    rates: list[float | None]  # per second, rounded to 2 decimals; None when unknown or saturated
    states: list[str | None]
    unreadable: list[str]  # a data counter that could not be read or parsed: "path: why"
    problems: list[str]  # a counter saturated at 2^32-1, or over 64 bits in bytes


class PortsMeter(Protocol):
    """Every port's per-tick files, kept open, and its data counters' baselines."""

    def set_ports(self, ports: Sequence[PortSpec]) -> None:
        """The ports to read from now on, in order: one seen before (same key) keeps its files and baselines
        (its spec then is the one it came with), one gone is closed and forgotten."""

    def read(self, now: float) -> PortsTick: ...


# A tier's read: each text file's first page (None where it cannot be read), each counter (None where it cannot be
# read or is not a counter), in the order given.
Tier = tuple[tuple[bytes | None, ...], tuple[int | None, ...]]


class CounterFiles(Protocol):
    """One tier's files kept open and read together: counter files (a port's error counters, its hw_counters), after
    the tier's text files where it has some (the slow tier's link_layer, phys_state and rate)."""

    def read_tier(self) -> Tier:
        """The texts and the counters (each counter None where it cannot be read or is not a counter). While they
        read as at the previous call, each of the two tuples is the very one that call returned, and so is the pair
        when both do: whatever was made of them can be kept (by identity)."""


class CounterFilesType(Protocol):
    """A backend's CounterFiles, made from the counter files' paths and those of the texts read before them."""

    def __call__(self, paths: Sequence[str], texts: Sequence[str] = ()) -> CounterFiles: ...


class PortsBackend(NamedTuple):
    """One backend's two readers."""

    meter: Callable[[], PortsMeter]
    counters: CounterFilesType


def kept_tier(last: Tier | None, texts: tuple[bytes | None, ...], counters: tuple[int | None, ...]) -> Tier:
    """A tier just read, where it reads as `last` did made of `last`'s own tuples (CounterFiles.read_tier's rule)."""
    if last is None:
        return texts, counters
    same_texts, same_counters = texts == last[0], counters == last[1]
    if same_texts and same_counters:
        return last
    return last[0] if same_texts else texts, last[1] if same_counters else counters


def parsed(data: bytes | None, parse: Callable[[str], T]) -> T | None:
    """A file's bytes (one page) parsed, or None when they were not read or do not parse."""
    if data is None:
        return None
    try:
        return parse(data.decode("utf-8", "replace"))
    except ParseError:
        return None


def saturated(key: str, index: int) -> str:
    return f"{key} {DATA[index]} is saturated at 2^32-1 (no 64-bit PortCountersExtended)"


def too_big(key: str, index: int) -> str:
    return f"{key} {DATA[index]} in bytes does not fit 64 bits"


def parse_problem(path: str, text: bytes) -> str:
    """Why a counter's text is not one, as parse_counter says it (the C helper hands back only the verdict)."""
    try:
        ib.parse_counter(text.decode("utf-8", "replace"))
    except ParseError as exc:
        return f"{path}: {exc}"
    return f"{path}: not a counter when read, {text[:40]!r} when read again"  # it changed in between


@functools.lru_cache(maxsize=64)
def state_of(data: bytes) -> str | None:
    """A state file's text as parse_state names it, None when it is not a state; remembered, as a port's
    state file reads the same text tick after tick."""
    try:
        return ib.parse_state(data.decode("utf-8", "replace"))
    except ParseError:
        return None
