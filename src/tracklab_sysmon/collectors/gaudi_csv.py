"""Pure parser of `hl-smi --query-aip=... --format=csv,noheader,nounits` rows into Gaudi device samples.

One row per device per loop period, the columns in `FIELDS` order, separated by ", " as hl-smi
writes them. A value hl-smi cannot give (`N/A`, `[N/A]`, `Not Supported`) is None; a unit that
`nounits` should have dropped (`512 MiB`, `97 W`) is tolerated. Memory is MiB on the wire of hl-smi
and bytes here.
"""

from __future__ import annotations

import math
import re

from ..errors import ParseError
from ..model import AcceleratorMemory, AcceleratorSample, EccErrors, HabanaDetails
from ..rates import percent

# The --query-aip columns, in the order hl-smi prints them.
FIELDS = (
    "index", "module_id", "name", "uuid", "bus_id", "utilization.aip", "memory.used", "memory.total", "power.draw",
    "temperature.aip", "ecc.errors.corrected.volatile.total", "ecc.errors.uncorrected.volatile.total",
)
MIB = 1024 * 1024
_NUMBER = re.compile(r"^(-?\d+(?:\.\d+)?)\s*(?:%|W|C|MiB|MB)?$")
_MISSING = frozenset({"", "n/a", "[n/a]", "not supported", "[not supported]", "unknown", "[unknown]"})


def parse_row(line: str) -> AcceleratorSample:
    """One device row; ParseError when it is not one (wrong column count, no device index)."""
    cells = [c.strip() for c in line.split(",")]
    if len(cells) != len(FIELDS):
        raise ParseError(f"hl-smi printed a line with {len(cells)} columns, not {len(FIELDS)}: {line[:80]!r}")
    row = dict(zip(FIELDS, cells, strict=True))
    index = row["index"]
    if not (index.isascii() and index.isdigit()) or len(index) > 6:  # "²" is a digit to isdigit, not to int
        raise ParseError(f"hl-smi printed a row without a device index: {line[:80]!r}")
    used, total = _mib(row["memory.used"]), _mib(row["memory.total"])
    return AcceleratorSample(
        id=int(index),
        type="npu",
        name=_text(row["name"]),
        utilization=_bounded(_number(row["utilization.aip"]), 100.0),
        memory=AcceleratorMemory(used=used, total=total, percentage=percent(used, total)),
        temperature=_bounded(_number(row["temperature.aip"]), 200.0, low=-100.0),
        power=_bounded(_number(row["power.draw"]), 10_000.0),
        fan_speed=None,  # hl-smi's CSV query has no fan column (Gaudi cards are passively cooled)
        vendor="habana",
        uuid=_text(row["uuid"]),
        details=HabanaDetails(
            bus_id=_text(row["bus_id"]),
            module_id=_count(row["module_id"]),
            ecc_errors=EccErrors(
                corrected=_count(row["ecc.errors.corrected.volatile.total"]),
                uncorrected=_count(row["ecc.errors.uncorrected.volatile.total"]),
            ),
        ),
    )


def _text(cell: str) -> str | None:
    return None if cell.lower() in _MISSING else cell


def _number(cell: str) -> float | None:
    if cell.lower() in _MISSING:
        return None
    match = _NUMBER.match(cell)
    return float(match.group(1)) if match else None


def _bounded(value: float | None, high: float, low: float = 0.0) -> float | None:
    """A reading outside what the device can report is garbage, not a value: None."""
    return value if value is not None and math.isfinite(value) and low <= value <= high else None


def _mib(cell: str) -> int | None:
    value = _number(cell)
    return int(value * MIB) if value is not None and 0 <= value < 2**40 else None


def _count(cell: str) -> int | None:
    value = _number(cell)
    return int(value) if value is not None and value.is_integer() and 0 <= value < 2**63 else None
