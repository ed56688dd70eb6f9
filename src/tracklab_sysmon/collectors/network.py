"""Network: rates over every interface but loopback, and established TCP connections."""

from __future__ import annotations

from ..errors import describe
from ..hotpath import CounterReader
from ..model import InterfaceSample, NetCounters, NetworkSample
from ..rates import CounterRates, rounded, total_rate
from .base import Partial

LOOPBACK = "lo"
_FIELDS = ("bytes_recv", "bytes_sent", "packets_recv", "packets_sent")


class NetworkCollector:
    name = "network"
    blocking = False

    def __init__(self, reader: CounterReader) -> None:
        self._reader = reader
        self._rates = CounterRates()

    def collect(self, now: float) -> NetworkSample | Partial[NetworkSample]:
        connections = self._connections()
        try:
            rows = self._reader.net_dev()
        except OSError as exc:
            if connections is None:
                raise  # nothing readable: the collector's error says why
            # /proc/net/dev hidden (sandboxes) or unreadable: rates unknown, connections still known.
            # Absent is a normal state of such a host; a file that fails to read is worth a `degraded`.
            sample = NetworkSample(bytes_in=None, bytes_out=None, packets_in=None, packets_out=None,
                                   connections=connections, interfaces=())
            return sample if isinstance(exc, FileNotFoundError) else Partial(sample, describe(exc))
        counters = [c for c in rows if c.name != LOOPBACK]
        problems: list[str] = []
        interfaces = tuple(self._interface(c, now, problems) for c in counters)
        self._rates.retain((c.name, field) for c in counters for field in _FIELDS)
        known = bool(interfaces)  # only loopback (or nothing) to count: rates unknown, not zero
        sample = NetworkSample(
            bytes_in=total_rate([i.bytes_in for i in interfaces]) if known else None,
            bytes_out=total_rate([i.bytes_out for i in interfaces]) if known else None,
            packets_in=total_rate([i.packets_in for i in interfaces]) if known else None,
            packets_out=total_rate([i.packets_out for i in interfaces]) if known else None,
            connections=connections,
            interfaces=interfaces,
        )
        return Partial(sample, "; ".join(problems)) if problems else sample

    def _connections(self) -> int | None:
        try:
            return self._reader.tcp_established()
        except (OSError, ValueError):
            return None  # e.g. /proc/net/snmp hidden in a hardened container

    def _interface(self, cur: NetCounters, now: float, problems: list[str]) -> InterfaceSample:
        counters = (cur.bytes_recv, cur.bytes_sent, cur.packets_recv, cur.packets_sent)
        (bytes_recv, bytes_sent, packets_recv, packets_sent), (b_in, b_out, p_in, p_out) = self._rates.device(
            cur.name, _FIELDS, counters, now, problems)
        return InterfaceSample(
            name=cur.name, bytes_recv=bytes_recv, bytes_sent=bytes_sent, packets_recv=packets_recv,
            packets_sent=packets_sent, bytes_in=rounded(b_in), bytes_out=rounded(b_out),
            packets_in=rounded(p_in), packets_out=rounded(p_out),
        )
