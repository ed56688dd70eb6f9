"""The service's options as one frozen, validated record."""

from __future__ import annotations

import ipaddress
import math
import os
import re
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from .errors import ConfigError
from .platforms import select

MIN_INTERVAL = 0.05
MAX_HISTORY = 1_000_000
DEFAULT_WS_CLIENTS = 1000  # the one definition of the WebSocket client limits (CLI, config, hub)
MAX_WS_CLIENTS = 100_000
# HTTP connection limits (CLI defaults, config defaults and docs/rest-api.md "Limits" agree on these).
DEFAULT_MAX_CONNECTIONS = 8192
MAX_CONNECTIONS = 1_000_000
DEFAULT_KEEPALIVE_TIMEOUT = 5.0  # seconds an idle kept-alive connection stays open
DEFAULT_HEADER_TIMEOUT = 5.0  # seconds a new connection has to send a complete request head
DEFAULT_WRITE_TIMEOUT = 10.0  # seconds a response write may stall before the connection is reset
DEFAULT_HISTORY_MIB = 32  # an hour of a 2-CPU host is ~9 MiB; of 256 CPUs and disks ~5 minutes
MAX_HISTORY_MIB = 65536
DEFAULT_HISTORY_STREAMS = 32  # history responses written at once; more get 503
MAX_TIMEOUT = 3600.0

HANDOFF_VAR = "TRACKLAB_SYSMON_HANDOFF_FD"  # set only by `service_main.hand_over`, for the image it executes

@dataclass(frozen=True, slots=True)
class PeerSpec:
    """Another node to aggregate: its base URL and the token it wants (never shown in repr)."""

    url: str
    token: str | None = field(default=None, repr=False)


def parse_peer(text: str) -> PeerSpec:
    """`URL`, `URL,token=TOKEN` or `URL,token-env=VARIABLE` (keeps the token out of `ps`)."""
    url, _, option = text.partition(",")
    url = url.strip().rstrip("/")
    parts = split_url(url, "peer")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ConfigError(f"peer must be an http(s)://host:port URL, got {redact(url)!r}")
    key, _, value = option.partition("=")
    if not option:
        return PeerSpec(url)
    if key == "token" and value:
        return PeerSpec(url, value)
    if key == "token-env" and value:
        if not os.environ.get(value):
            raise ConfigError(f"peer {redact(url)}: environment variable {value} is not set")
        return PeerSpec(url, os.environ[value])
    raise ConfigError(f"peer {redact(url)}: expected ',token=TOKEN' or ',token-env=VARIABLE' after the URL")


_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")  # `user:pass@` after a scheme, wherever a URL is quoted


def redact(text: str) -> str:
    """Any URL credentials quoted in `text` (a URL, an exception's message) removed."""
    return _USERINFO.sub("", text)


def split_url(url: str, what: str) -> SplitResult:
    """`urlsplit` that also checks the port, turning its ValueError into a one-line ConfigError."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # parsed lazily: raises for a port outside 0-65535 or not a number
    except ValueError as exc:
        raise ConfigError(f"{what} {redact(url)!r} is not a valid URL: {exc}") from None
    return parts


def check_cgroup_option(value: str) -> str:
    """`auto`, `self`, or an absolute cgroup path without `..` (relative to each hierarchy's root)."""
    if value in ("auto", "self"):
        return value
    if not value.startswith("/") or ".." in value.split("/") or "\0" in value:
        raise ConfigError(f"cgroup must be auto, self or an absolute cgroup path without '..', got {value!r}")
    return value


def is_loopback(host: str) -> bool:
    """True for localhost and loopback literals (127.0.0.0/8, ::1, 127.x mapped into IPv6, [::1], an IPv6 %zone
    left out); any other name or address may face a network."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    node_id: str | None = None  # None: the hostname
    interval: float = 1.0
    history: int = 3600
    history_mib: int = DEFAULT_HISTORY_MIB  # the history's JSON together, at most; the oldest go first
    proc_root: str = "/proc"
    sys_root: str = "/sys"
    enable_dcgm: bool = False
    verbose: bool = False
    portfile: str | None = None
    parent_pid: int | None = None
    allow_origins: tuple[str, ...] = field(default=())  # browser origins allowed on the WebSocket; "*": any
    max_ws_clients: int = DEFAULT_WS_CLIENTS
    peers: tuple[PeerSpec, ...] = field(default=())
    token: str | None = field(default=None, repr=False)
    insecure: bool = False  # serve a non-loopback address without a token, on purpose
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    write_timeout: float = DEFAULT_WRITE_TIMEOUT
    max_history_streams: int = DEFAULT_HISTORY_STREAMS
    collectors: str = "auto"  # auto (procfs + C helper on Linux, psutil elsewhere), procfs or psutil
    cgroup: str = "auto"  # which cgroup the container section describes: auto, self or a path
    tpu_metrics_addr: str | None = None  # libtpu's metrics service; None: localhost:8431 when a TPU is on the bus

    def __post_init__(self) -> None:
        if not (0 <= self.port <= 65535):
            raise ConfigError(f"port must be 0-65535, got {self.port}")
        if not math.isfinite(self.interval) or self.interval < MIN_INTERVAL:
            raise ConfigError(f"interval must be at least {MIN_INTERVAL} s, got {self.interval}")
        if not (1 <= self.history <= MAX_HISTORY):
            raise ConfigError(f"history must be 1-{MAX_HISTORY} snapshots, got {self.history}")
        if not (1 <= self.history_mib <= MAX_HISTORY_MIB):
            raise ConfigError(f"history MiB must be 1-{MAX_HISTORY_MIB}, got {self.history_mib}")
        if self.node_id is not None and not self.node_id.strip():
            raise ConfigError("node id must not be empty")
        if self.parent_pid is not None and self.parent_pid <= 0:
            raise ConfigError(f"parent pid must be positive, got {self.parent_pid}")
        self._check_access()
        self._check_websocket()
        self._check_limits()
        self._check_collectors()

    def _check_collectors(self) -> None:
        select(collectors=self.collectors, on_host=self.on_host)  # ConfigError for a choice this OS cannot run
        check_cgroup_option(self.cgroup)
        if self.tpu_metrics_addr is not None:
            if not re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", self.tpu_metrics_addr):
                raise ConfigError(f"tpu metrics address must be HOST:PORT, got {self.tpu_metrics_addr!r}")
            # libtpu takes local connections only; and a name to resolve could stall the sampler's first probes.
            if not is_loopback(self.tpu_metrics_addr.rpartition(":")[0]):
                raise ConfigError("tpu metrics address must be on this host (localhost, 127.x.x.x or [::1]): libtpu's "
                                  f"service takes local connections only, got {self.tpu_metrics_addr!r}")

    def _check_access(self) -> None:
        if self.token is not None and not self.token.strip():
            raise ConfigError("token must not be empty")
        if self.token is None and not self.insecure and not is_loopback(self.host):
            raise ConfigError(
                f"refusing to serve {self.host} without a token: pass --token (or set "
                "TRACKLAB_SYSMON_TOKEN), or --insecure to expose the metrics to anyone"
            )
        urls = [p.url for p in self.peers]
        if len(set(urls)) != len(urls):
            raise ConfigError("the same peer URL is given twice")

    def _check_websocket(self) -> None:
        if not (1 <= self.max_ws_clients <= MAX_WS_CLIENTS):
            raise ConfigError(f"max WebSocket clients must be 1-{MAX_WS_CLIENTS}, got {self.max_ws_clients}")
        for origin in self.allow_origins:
            if origin == "*":
                continue
            parts = split_url(origin, "allowed origin")
            if (parts.scheme not in ("http", "https") or not parts.hostname
                    or parts.path.strip("/") or parts.query):
                raise ConfigError(f"allowed origin must be scheme://host[:port] or *, got {origin!r}")

    def _check_limits(self) -> None:
        if not (1 <= self.max_connections <= MAX_CONNECTIONS):
            raise ConfigError(f"max connections must be 1-{MAX_CONNECTIONS}, got {self.max_connections}")
        if not (1 <= self.max_history_streams <= MAX_CONNECTIONS):
            raise ConfigError(f"max history streams must be 1-{MAX_CONNECTIONS}, got {self.max_history_streams}")
        for name in ("keepalive_timeout", "header_timeout", "write_timeout"):
            value = getattr(self, name)
            if not math.isfinite(value) or not (0 < value <= MAX_TIMEOUT):
                raise ConfigError(f"{name.replace('_', ' ')} must be more than 0 and at most {MAX_TIMEOUT:g} s, "
                                  f"got {value}")

    @property
    def on_host(self) -> bool:
        """True when reading this machine rather than a captured tree."""
        return self.proc_root == "/proc" and self.sys_root == "/sys"
