"""Pure parsers for the RDMA port files under /sys/class/infiniband: text in, values out; no I/O (a leaf module).

Formats follow the kernel's Documentation/ABI/stable/sysfs-class-infiniband and the `show`
functions of drivers/infiniband/core/sysfs.c: `state` and `phys_state` are "N: NAME", `rate` is
"<Gb/s> Gb/sec (<width>X <speed>)", every counter is one unsigned decimal. Each parser raises only
`ParseError` on text that is not of its format.
"""

from __future__ import annotations

import re

from ..errors import ParseError

BYTES_PER_WORD = 4  # port_xmit_data / port_rcv_data count octets divided by 4 (one per lane)
SATURATED_32 = 2**32 - 1  # the legacy PortCounters data fields stop here instead of wrapping
MAX_COUNTER = 2**64 - 1

_STATE = re.compile(r"(\d+): ?([A-Za-z][A-Za-z_ ]*)")
_RATE = re.compile(r"(\d+(?:\.\d+)?) Gb/sec(?: \((\d+)X ?([A-Za-z0-9]*)\))?")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def parse_counter(text: str) -> int:
    """One counter file: an unsigned decimal that fits 64 bits ("N/A (no PMA)" and the like are refused)."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()):
        raise ParseError(f"not an unsigned counter: {value[:40]!r}")
    number = int(value)
    if number > MAX_COUNTER:
        raise ParseError(f"counter {value[:40]} does not fit 64 bits")
    return number


def parse_state(text: str) -> str:
    """`state` or `phys_state` ("4: ACTIVE", "5: LinkUp", "7: Phy Test") as a lower snake-case name."""
    match = _STATE.fullmatch(text.strip())
    if match is None:
        raise ParseError(f"not a port state: {text.strip()[:40]!r}")
    name = _CAMEL.sub("_", match.group(2).strip())
    return re.sub(r"[ _]+", "_", name).lower()


def parse_rate(text: str) -> float:
    """`rate` ("100 Gb/sec (4X EDR)", "2.5 Gb/sec (1X SDR)") in bits per second."""
    match = _RATE.fullmatch(text.strip())
    if match is None:
        raise ParseError(f"not a port rate: {text.strip()[:40]!r}")
    return float(match.group(1)) * 1e9


def parse_link_layer(text: str) -> str:
    """`link_layer`: InfiniBand or Ethernet (RoCE), as the kernel writes it."""
    value = text.strip()
    if not value or not value.isascii() or not value.isalpha():
        raise ParseError(f"not a link layer: {value[:40]!r}")
    return value


def words_to_bytes(words: int) -> int:
    """A data counter's 4-byte words in bytes."""
    return words * BYTES_PER_WORD
