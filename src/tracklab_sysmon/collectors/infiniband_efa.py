"""EFA ports: no PMA (no counters/ folder), so their data counters are the driver's hw_counters, in bytes.

The names are the efa driver's port statistics (drivers/infiniband/hw/efa/efa_verbs.c,
EFA_DEFINE_PORT_STATS): `tx_bytes`, `rx_bytes`, `tx_pkts`, `rx_pkts`. Each read is served from the
core's hw_stats cache (`lifespan`, 10 ms by default), so the four files of one tick cost the device
one statistics query.
"""

from __future__ import annotations

import os

# In the order of the collector's counters/ files: bytes sent, bytes received, packets sent, received.
HW_DATA = ("tx_bytes", "rx_bytes", "tx_pkts", "rx_pkts")


def hw_data_files(port_path: str) -> tuple[str, ...] | None:
    """The hw_counters data files' paths of a port that has no counters/ folder but has all four; else None."""
    if os.path.isdir(os.path.join(port_path, "counters")):
        return None
    folder = os.path.join(port_path, "hw_counters")
    if not all(os.path.isfile(os.path.join(folder, name)) for name in HW_DATA):
        return None
    return tuple(os.path.join(folder, name) for name in HW_DATA)
