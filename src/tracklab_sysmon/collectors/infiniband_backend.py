"""Which InfiniBand port reader runs: the C helper's where it was built, else its Python twin (as for the hot path)."""

from __future__ import annotations

import functools
import os

from ..hotpath import ENV_VAR, native_or_python
from .infiniband_ports import PortsBackend
from .infiniband_ports_py import PyCounterFiles, PyPortsMeter


def select_ports_backend(mode: str) -> tuple[PortsBackend, str]:
    """The readers and their backend name for one TRACKLAB_SYSMON_NATIVE value (the hot path's choice)."""
    def load() -> PortsBackend:
        from .infiniband_ports_cffi import CffiCounterFiles, CffiPortsMeter
        return PortsBackend(CffiPortsMeter, CffiCounterFiles)

    return native_or_python(mode, "InfiniBand port reader", load, PortsBackend(PyPortsMeter, PyCounterFiles))


@functools.cache
def ports_backend() -> PortsBackend:
    """The chosen backend's readers (chosen on the first call)."""
    return select_ports_backend(os.environ.get(ENV_VAR, "auto"))[0]
