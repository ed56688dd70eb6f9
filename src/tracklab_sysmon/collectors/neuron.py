"""AWS Trainium/Inferentia devices from one long-lived, supervised `neuron-monitor` streaming JSON reports."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import weakref
from collections.abc import Callable

import orjson

from ..errors import Unavailable
from ..model import AcceleratorSample
from .neuron_report import neuron_devices, parse_report
from .supervise import DEFAULT_BACKOFF, Backoff
from .tool_source import ToolSource

COMMAND = "neuron-monitor"
NEURON_BIN = "/opt/aws/neuron/bin"  # where aws-neuron-tools installs it, often not on a service's PATH


def monitor_config(period: float) -> dict[str, object]:
    """neuron-monitor's configuration: only the metric groups the collector reads, all on one period."""
    return {
        "period": f"{period_seconds(period)}s",
        "neuron_runtimes": [{
            "tag_filter": ".*",
            "metrics": [{"type": "neuroncore_counters"}, {"type": "memory_used"}, {"type": "execution_stats"}],
        }],
        "system_metrics": [{"type": "neuron_hw_counters"}],
    }


def period_seconds(interval: float) -> int:
    """neuron-monitor and hl-smi take whole seconds: the service's interval, at least 1 s."""
    return max(1, round(interval))


class NeuronCollector:
    name = "neuron"
    blocking = False  # a tick reads the report the reader thread already parsed: microseconds

    def __init__(
        self,
        *,
        interval: float = 1.0,
        stall_after: float | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        period = period_seconds(interval)
        self._interval = interval
        self._config_path: str | None = None
        self._source = ToolSource(
            COMMAND, self._argv, _devices_or_why, extra_dirs=[NEURON_BIN],
            stale_after=max(5.0, 3 * period), stall_after=stall_after or max(10.0, 5 * period),
            backoff=backoff, clock=clock,
        )

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        devices = self._source.latest()
        if isinstance(devices, str):
            raise Unavailable(devices)
        return devices

    def close(self) -> None:
        """Stop neuron-monitor (its whole process group) and remove its configuration file."""
        self._source.close()
        if self._config_path is not None:
            _remove(self._config_path)

    def _argv(self, path: str) -> list[str]:
        """`neuron-monitor -c FILE`, the file written once neuron-monitor is found (removed by `close`, or at exit)."""
        if self._config_path is None:
            fd, self._config_path = tempfile.mkstemp(prefix="tracklab-sysmon-neuron-", suffix=".json")
            with os.fdopen(fd, "wb") as handle:
                handle.write(orjson.dumps(monitor_config(self._interval)))
            weakref.finalize(self, _remove, self._config_path)
        return [path, "-c", self._config_path]


def _devices_or_why(line: str) -> tuple[AcceleratorSample, ...] | str:
    """One report's devices, built on the reader thread (a tick only hands them over); or why there are none."""
    report = parse_report(line)
    if report.hardware is None:
        return f"neuron-monitor sees no Neuron device: {report.hardware_error}"
    if report.hardware.device_count == 0:
        return "neuron-monitor reports 0 Neuron devices"
    return neuron_devices(report, report.hardware)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
