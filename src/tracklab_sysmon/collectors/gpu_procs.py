"""GPU memory and utilisation per process across vendors, keyed by pids of the service's own namespace.

NVIDIA through NVML (host pids, translated with NSpid); AMD and Intel through DRM fdinfo. Costly on
big machines (every process's fdinfo is read), so it runs only when someone asks for processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import _nvml
from ..errors import GpuLost, NvmlUnavailable
from ..model import GpuProcessUse
from .drm_clients import FD_WALK_SECONDS, DrmUsageReader
from .pid_namespace import PidTranslator


class GpuProcessReader:
    """Keeps what utilisation needs between calls: NVML's last-seen timestamps and DRM engine times."""

    def __init__(
        self,
        proc_root: str = "/proc",
        sys_root: str = "/sys",
        *,
        nvidia: bool = True,
        clock: Callable[[], float] = time.monotonic,
        fd_walk_seconds: float = FD_WALK_SECONDS,
        dev_root: str | None = "/dev",
    ) -> None:
        """`dev_root`: where opens of DRM nodes are watched, so fds are walked after them (None: every
        `fd_walk_seconds` alone, as for a captured tree)."""
        self.proc_root = proc_root
        self.nvidia = nvidia
        self._pids = PidTranslator(proc_root)
        self._drm = DrmUsageReader(proc_root, sys_root, clock, fd_walk_seconds, dev_root)
        self._window = _nvml.ProcessUtilizationWindow()

    def gpu_usage_by_pid(self) -> dict[int, tuple[GpuProcessUse, ...]]:
        """Every process using a GPU, with one record per device it uses; at most one call per tick."""
        found: dict[int, list[GpuProcessUse]] = {}
        for pid, use in self._nvidia_uses() + self._drm_uses():
            found.setdefault(pid, []).append(use)
        return {pid: tuple(uses) for pid, uses in sorted(found.items())}

    def _drm_uses(self) -> list[tuple[int, GpuProcessUse]]:
        uses: list[tuple[int, GpuProcessUse]] = []
        for use in self._drm.read():
            pid = use.pid if self._pids.depth == 0 else self._pids.to_service(use.pid)
            if pid is not None:
                uses.append((pid, GpuProcessUse(use.card.device, use.card.vendor, use.memory, use.utilization)))
        return uses

    def _nvidia_uses(self) -> list[tuple[int, GpuProcessUse]]:
        if not self.nvidia or not self._pids.host_view():
            return []  # NVML names host pids: a container's own /proc cannot say which process they are
        try:
            devices = _nvml.devices()
        except NvmlUnavailable:
            return []
        uses: list[tuple[int, GpuProcessUse]] = []
        for dev in devices:
            if dev.handle is None:
                continue
            try:
                memory = _nvml.read_process_memory(dev) or {}
                utilization = self._window.read(dev)
            except GpuLost:
                continue
            for host_pid in sorted(memory.keys() | (utilization or {}).keys()):
                pid = self._pids.to_service(host_pid)
                if pid is not None:
                    util = utilization.get(host_pid, 0.0) if utilization is not None else None
                    uses.append((pid, GpuProcessUse(dev.index, "nvidia", memory.get(host_pid), util)))
        return uses
