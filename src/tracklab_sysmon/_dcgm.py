"""Optional DCGM profiling, found at run time: the DCGM install's Python bindings and a reachable host engine."""

from __future__ import annotations

import importlib
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from .model import Profiling

BINDINGS_ENV = "TRACKLAB_SYSMON_DCGM_BINDINGS"
HOST_ENV = "TRACKLAB_SYSMON_DCGM_HOST"
DEFAULT_BINDINGS = "/usr/local/dcgm/bindings/python3"  # where DCGM's own packages install them
DEFAULT_HOST = "127.0.0.1"  # nv-hostengine's default address (port 5555)
RETRY_SECONDS = 60.0
BLANK = 1e14  # DCGM marks missing values with huge sentinels (DCGM_FP64_BLANK, DCGM_INT64_BLANK)

# DCGM profiling field id -> (Profiling field, scale to its unit): ratios become percent.
FIELDS = (
    (1002, "sm_active", 100.0),
    (1003, "sm_occupancy", 100.0),
    (1004, "tensor_active", 100.0),
    (1005, "dram_active", 100.0),
    (1009, "pcie_tx_bytes", 1.0),
    (1010, "pcie_rx_bytes", 1.0),
    (1011, "nvlink_tx_bytes", 1.0),
    (1012, "nvlink_rx_bytes", 1.0),
)


class DcgmProfiler:
    """Reads the profiling fields through DCGM's `DcgmReader`; `reason` says why it is not available."""

    def __init__(
        self,
        bindings: str | None = None,
        host: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bindings = bindings or os.environ.get(BINDINGS_ENV) or DEFAULT_BINDINGS
        self.host = host or os.environ.get(HOST_ENV) or DEFAULT_HOST
        self.reason: str | None = "DCGM has not been tried yet"
        self._reader: Any = None
        self._failed_at: float | None = None
        self._monotonic = monotonic

    @property
    def available(self) -> bool:
        return self._reader is not None

    def read(self) -> dict[int, Profiling] | None:
        """Latest profiling values per GPU id, or None (with `reason` set) when DCGM is not usable."""
        if self._reader is None and not self._connect():
            return None
        try:
            latest = self._reader.GetLatestGpuValuesAsFieldIdDict()
        except Exception as exc:  # the bindings raise their own error types; any of them means "lost"
            self._fail(f"DCGM host engine at {self.host} stopped answering: {type(exc).__name__}: {exc}")
            return None
        return {int(gpu): _profiling(values) for gpu, values in latest.items()}

    def _connect(self) -> bool:
        if self._failed_at is not None and self._monotonic() - self._failed_at < RETRY_SECONDS:
            return False
        try:
            module = _import_reader(self.bindings)
        except ImportError as exc:
            self._fail(f"DCGM Python bindings not found (install DCGM or set {BINDINGS_ENV}): {exc}")
            return False
        try:
            reader = module.DcgmReader(
                fieldIds=[field_id for field_id, _, _ in FIELDS], updateFrequency=1_000_000, hostname=self.host
            )
            reader.GetLatestGpuValuesAsFieldIdDict()  # connects to the host engine and watches the fields
        except Exception as exc:  # DCGMError and friends come from the bindings, not from us
            self._fail(f"DCGM host engine not reachable at {self.host}: {type(exc).__name__}: {exc}")
            return False
        self._reader, self.reason, self._failed_at = reader, None, None
        return True

    def _fail(self, reason: str) -> None:
        self._reader, self.reason, self._failed_at = None, reason, self._monotonic()


def _import_reader(bindings: str) -> Any:
    if bindings and os.path.isdir(bindings) and bindings not in sys.path:
        sys.path.append(bindings)  # appended: an installed module of the same name wins
    return importlib.import_module("DcgmReader")


def _profiling(values: dict[Any, Any]) -> Profiling:
    fields: dict[str, float | None] = {}
    for field_id, key, scale in FIELDS:
        value = values.get(field_id)
        ok = isinstance(value, int | float) and abs(value) < BLANK
        fields[key] = round(float(value) * scale, 3) if ok and value is not None else None
    return Profiling(**fields)
