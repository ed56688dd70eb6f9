"""Network: rates over every interface but loopback, and established TCP connections."""

from __future__ import annotations

from ..errors import describe
from ..hotpath import CounterReader
from ..model import NetworkSample
from .base import Partial

LOOPBACK = "lo"


class NetworkCollector:
    name = "network"
    blocking = False

    def __init__(self, reader: CounterReader) -> None:
        self._reader = reader
        self._ticker = reader.net_ticker(lambda names: [name != LOOPBACK for name in names])

    def collect(self, now: float) -> NetworkSample | Partial[NetworkSample]:
        connections = self._connections()
        try:
            tick = self._ticker.tick(now)
        except OSError as exc:
            if connections is None:
                raise  # nothing readable: the collector's error says why
            # /proc/net/dev hidden (sandboxes) or unreadable: rates unknown, connections still known.
            # Absent is a normal state of such a host; a file that fails to read is worth a `degraded`.
            sample = NetworkSample(bytes_in=None, bytes_out=None, packets_in=None, packets_out=None,
                                   connections=connections, interfaces=())
            return sample if isinstance(exc, FileNotFoundError) else Partial(sample, describe(exc))
        # Only loopback (or nothing) to count: the totals are None, rates unknown, not zero.
        bytes_in, bytes_out, packets_in, packets_out = tick.totals
        sample = NetworkSample(bytes_in=bytes_in, bytes_out=bytes_out, packets_in=packets_in,
                               packets_out=packets_out, connections=connections, interfaces=tick.devices)
        problems = tick.devices.overflow_problems()
        return Partial(sample, "; ".join(problems)) if problems else sample

    def _connections(self) -> int | None:
        try:
            return self._reader.tcp_established()
        except (OSError, ValueError):
            return None  # e.g. /proc/net/snmp hidden in a hardened container
