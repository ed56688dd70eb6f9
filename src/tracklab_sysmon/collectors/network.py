"""Network: rates over every interface but loopback, and established TCP connections."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..model import InterfaceSample, NetCounters, NetworkSample
from ..rates import counter_rate

if TYPE_CHECKING:  # the hot path imports this package's parsers, so only for typing
    from ..hotpath import CounterReader

LOOPBACK = "lo"


class NetworkCollector:
    name = "network"
    section = "network"
    blocking = False

    def __init__(self, reader: CounterReader) -> None:
        self._reader = reader
        self._previous: dict[str, NetCounters] = {}
        self._previous_at: float | None = None

    def collect(self, now: float) -> NetworkSample:
        connections = self._connections()
        try:
            counters = [c for c in self._reader.net_dev() if c.name != LOOPBACK]
        except OSError:
            if connections is None:
                raise  # nothing readable: the collector's error says why
            # /proc/net/dev hidden or unreadable (sandboxes): rates unknown, connections still known
            return NetworkSample(bytes_in=None, bytes_out=None, packets_in=None, packets_out=None,
                                 connections=connections, interfaces=())
        elapsed = now - self._previous_at if self._previous_at is not None else 0.0
        interfaces = tuple(_interface(c, self._previous.get(c.name), elapsed) for c in counters)
        self._previous = {c.name: c for c in counters}
        self._previous_at = now
        known = bool(interfaces)  # only loopback (or nothing) to count: rates unknown, not zero
        return NetworkSample(
            bytes_in=round(sum(i.bytes_in for i in interfaces), 2) if known else None,
            bytes_out=round(sum(i.bytes_out for i in interfaces), 2) if known else None,
            packets_in=round(sum(i.packets_in for i in interfaces), 2) if known else None,
            packets_out=round(sum(i.packets_out for i in interfaces), 2) if known else None,
            connections=connections,
            interfaces=interfaces,
        )

    def _connections(self) -> int | None:
        try:
            return self._reader.tcp_established()
        except (OSError, ValueError):
            return None  # e.g. /proc/net/snmp hidden in a hardened container


def _interface(cur: NetCounters, prev: NetCounters | None, elapsed: float) -> InterfaceSample:
    base = prev or cur  # an interface seen for the first time has no rate yet
    return InterfaceSample(
        name=cur.name,
        bytes_recv=cur.bytes_recv,
        bytes_sent=cur.bytes_sent,
        packets_recv=cur.packets_recv,
        packets_sent=cur.packets_sent,
        bytes_in=round(counter_rate(base.bytes_recv, cur.bytes_recv, elapsed), 2),
        bytes_out=round(counter_rate(base.bytes_sent, cur.bytes_sent, elapsed), 2),
        packets_in=round(counter_rate(base.packets_recv, cur.packets_recv, elapsed), 2),
        packets_out=round(counter_rate(base.packets_sent, cur.packets_sent, elapsed), 2),
    )
