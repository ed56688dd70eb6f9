"""The service's options as one frozen, validated record."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import ConfigError

MIN_INTERVAL = 0.05
MAX_HISTORY = 1_000_000


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    node_id: str | None = None  # None: the hostname
    interval: float = 1.0
    history: int = 3600
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    enable_dcgm: bool = False
    verbose: bool = False
    portfile: str | None = None
    parent_pid: int | None = None
    allow_origins: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not (0 <= self.port <= 65535):
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if not math.isfinite(self.interval) or self.interval < MIN_INTERVAL:
            raise ConfigError(f"interval must be at least {MIN_INTERVAL} s, got {self.interval}")
        if not (1 <= self.history <= MAX_HISTORY):
            raise ConfigError(f"history must be 1-{MAX_HISTORY} snapshots, got {self.history}")
        if self.node_id is not None and not self.node_id.strip():
            raise ConfigError("node id must not be empty")
        if self.parent_pid is not None and self.parent_pid <= 0:
            raise ConfigError(f"parent pid must be positive, got {self.parent_pid}")

    @property
    def on_host(self) -> bool:
        """True when reading this machine rather than a captured tree."""
        return self.proc_root == "/proc" and self.sys_root == "/sys"
