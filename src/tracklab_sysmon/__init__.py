"""tracklab-sysmon: a small, cheap system-metrics service with REST, WebSocket and Prometheus."""

__version__ = "0.1.0"

__all__ = ["__version__"]
