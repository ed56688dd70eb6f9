"""Which Intel GPU and RAPL collectors a machine (or a captured tree) gets; kept apart from the main list."""

from __future__ import annotations

import os

from .base import Collector, reading_host
from .intel import IntelCollector
from .intel_cards import intel_slots
from .pci_ids import find_pci_ids
from .rapl import RaplCollector


def energy_collectors(proc_root: str, sys_root: str, *, host: bool) -> tuple[Collector, ...]:
    """Intel GPUs and RAPL zones: always on the host (health says why one is unavailable); on a captured tree
    only when it holds i915/xe cards or a powercap folder, like the AMD collector. Device names come from the
    host's pci.ids only when reading the host (a captured tree falls back to PCI ids); opens of the host's DRM
    nodes are watched only when reading the host's own /proc (a captured tree's clients open none of them)."""
    found: tuple[Collector, ...] = ()
    if host or intel_slots(sys_root):
        dev_root = "/dev" if reading_host(proc_root, sys_root) else None
        found += (IntelCollector(sys_root, proc_root, pci_ids=find_pci_ids() if host else None, dev_root=dev_root),)
    if host or os.path.isdir(os.path.join(sys_root, "class/powercap")):
        found += (RaplCollector(sys_root),)
    return found
