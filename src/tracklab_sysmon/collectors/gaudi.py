"""Intel Gaudi (Habana) devices from one long-lived, supervised `hl-smi` in its CSV query loop."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

from ..model import AcceleratorSample
from .gaudi_csv import FIELDS, parse_row
from .neuron import period_seconds
from .supervise import DEFAULT_BACKOFF, Backoff
from .tool_source import ToolSource

COMMAND = "hl-smi"


def hl_smi_arguments(interval: float) -> list[str]:
    """The CSV query loop: one row per device every `interval` (whole seconds) until killed."""
    return [f"--query-aip={','.join(FIELDS)}", "--format=csv,noheader,nounits", "-l", str(period_seconds(interval))]


class _Rows:
    """The newest row of each device and when it came; fed on the supervisor's thread, one line at a time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._rows: dict[int, tuple[AcceleratorSample, float]] = {}

    def feed(self, line: str) -> tuple[tuple[AcceleratorSample, float], ...]:
        sample = parse_row(line)  # ParseError: the source reports the garbage line
        self._rows[sample.id] = (sample, self._clock())
        return tuple(self._rows[i] for i in sorted(self._rows))


class GaudiCollector:
    name = "gaudi"
    blocking = False  # a tick reads the rows the reader thread already parsed: microseconds

    def __init__(
        self,
        *,
        interval: float = 1.0,
        stall_after: float | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        period = period_seconds(interval)
        self._clock = clock
        self._source = ToolSource(
            COMMAND, lambda path: _line_buffered([path, *hl_smi_arguments(interval)]), _Rows(clock).feed,
            stale_after=max(5.0, 3 * period), stall_after=stall_after or max(10.0, 5 * period),
            backoff=backoff, clock=clock,
        )

    def collect(self, now: float) -> tuple[AcceleratorSample, ...]:
        rows = self._source.latest()
        fresh = self._clock() - self._source.stale_after
        return tuple(sample for sample, at in rows if at >= fresh)  # a device hl-smi stopped listing goes

    def close(self) -> None:
        """Stop hl-smi (its whole process group)."""
        self._source.close()


def _line_buffered(argv: list[str]) -> list[str]:
    """hl-smi writes through C stdio, which keeps output to a pipe in 4 KB blocks unless the tool flushes:
    where coreutils' `stdbuf` exists, hl-smi runs under `stdbuf -oL` so each row arrives when printed."""
    stdbuf = shutil.which("stdbuf")
    return argv if stdbuf is None else [stdbuf, "-oL", *argv]
