"""Which collector backend runs (procfs or psutil), asked without loading psutil."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..platforms import PlatformChoice
from .base import Collector

_PORTABLE_CPU = "tracklab_sysmon.collectors.portable.cpu"


def portable_choice(collectors: Sequence[Collector]) -> PlatformChoice | None:
    """The psutil backend's platform choice when its cpu collector is among `collectors`, else None.
    Imports nothing: no such collector exists unless its module (and psutil with it) is loaded already."""
    module = sys.modules.get(_PORTABLE_CPU)
    if module is None:
        return None
    cpu = next((c for c in collectors if isinstance(c, module.PortableCpuCollector)), None)
    choice: PlatformChoice | None = cpu.choice if cpu is not None else None
    return choice


def backend_health(collectors: Sequence[Collector]) -> dict[str, object]:
    """What /api/health shows as `collectorsBackend`: which backend runs and, for psutil, what it leaves null."""
    choice = portable_choice(collectors)
    if choice is None:
        return {"name": "procfs", "platform": sys.platform, "nulls": {}}
    return {"name": "psutil", "platform": choice.platform, "nulls": dict(choice.null_fields)}
