"""Windows' established-TCP count: iphlpapi's GetTcpStatisticsEx (dwCurrEstab), v4 + v6, one call each.

It is the counter /proc/net/snmp's CurrEstab is on Linux: O(1), no privilege, no socket table walk.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

AF_INET, AF_INET6 = 2, 23  # Windows' values (AF_INET6 is 10 on Linux)
_MIB_TCPSTATS_DWORDS = 15  # dwRtoAlgorithm ... dwNumConns
_CURR_ESTAB = 8  # index of dwCurrEstab in MIB_TCPSTATS
NO_ERROR = 0


def load_iphlpapi() -> Any:
    """The iphlpapi DLL; OSError anywhere but Windows (ctypes has no WinDLL there)."""
    win_dll = getattr(ctypes, "WinDLL", None)
    if win_dll is None:
        raise OSError("iphlpapi exists only on Windows")
    return win_dll("iphlpapi")


class TcpEstablished:
    """Counts established TCP connections through a loaded iphlpapi (or a stand-in with the same function)."""

    def __init__(self, load: Callable[[], Any] = load_iphlpapi) -> None:
        self._load = load
        self._get: Any = None

    def __call__(self) -> int:
        if self._get is None:
            self._get = self._load().GetTcpStatisticsEx
        counts = [self._family(family) for family in (AF_INET, AF_INET6)]
        if counts[0] is None:
            raise OSError("GetTcpStatisticsEx(AF_INET) failed")
        return counts[0] + (counts[1] or 0)  # no IPv6 stack: its table does not exist, so none there

    def _family(self, family: int) -> int | None:
        stats = (ctypes.c_ulong * _MIB_TCPSTATS_DWORDS)()
        if self._get(ctypes.byref(stats), family) != NO_ERROR:
            return None
        return int(stats[_CURR_ESTAB])
