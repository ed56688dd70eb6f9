"""`Partial`: a collector's section with some values dropped to null, and why (a leaf: imports nothing)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Partial:
    """Returned by `collect` instead of the bare section when some values had to be nulled.

    The sampler publishes `value` and marks the collector `degraded` with `reason`.
    """

    value: object
    reason: str
