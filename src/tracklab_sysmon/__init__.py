"""tracklab-sysmon: a small, cheap system-metrics service with REST, WebSocket and Prometheus."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> module that defines it; imported on first use so `import tracklab_sysmon`
# stays cheap (no aiohttp, no subprocess machinery, never fastapi).
_LAZY = {
    "SystemMonitor": "monitor",
    "MonitorStartError": "monitor",
    "start_system_monitor": "monitor",
    "get_global_monitor": "monitor",
    "stop_system_monitor": "monitor",
    "SystemMonitorClient": "client",
    "ClientError": "errors",
    "ServiceUnavailable": "errors",
    "ProtocolError": "errors",
    "ResponseError": "errors",
    "NotFound": "errors",
    "SystemMetricsConfig": "sdk",
    "init_system_metrics": "sdk",
    "shutdown_system_metrics": "sdk",
    "get_system_metrics": "sdk",
    "wrap_log": "sdk",
    "init": "sdk",
    "Run": "sdk",
    "SysmonError": "errors",
    "ConfigError": "errors",
    "BackendUnavailable": "errors",
}

# Written out so readers and tools see the API; tests/test_public_api.py checks it against _LAZY.
__all__ = [
    "BackendUnavailable",
    "ClientError",
    "ConfigError",
    "MonitorStartError",
    "NotFound",
    "ProtocolError",
    "ResponseError",
    "Run",
    "ServiceUnavailable",
    "SysmonError",
    "SystemMetricsConfig",
    "SystemMonitor",
    "SystemMonitorClient",
    "__version__",
    "get_global_monitor",
    "get_system_metrics",
    "init",
    "init_system_metrics",
    "shutdown_system_metrics",
    "start_system_monitor",
    "stop_system_monitor",
    "wrap_log",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tracklab_sysmon' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .client import SystemMonitorClient
    from .errors import (
        BackendUnavailable,
        ClientError,
        ConfigError,
        MonitorStartError,
        NotFound,
        ProtocolError,
        ResponseError,
        ServiceUnavailable,
        SysmonError,
    )
    from .monitor import (
        SystemMonitor,
        get_global_monitor,
        start_system_monitor,
        stop_system_monitor,
    )
    from .sdk import (
        Run,
        SystemMetricsConfig,
        get_system_metrics,
        init,
        init_system_metrics,
        shutdown_system_metrics,
        wrap_log,
    )
