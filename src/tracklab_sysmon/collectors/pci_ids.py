"""Device names from the PCI ID database (`pci.ids`, as lspci reads it): a pure parser and where the file lives."""

from __future__ import annotations

import os

# Where distributions install the database (hwdata on Fedora/Arch, pciutils on Debian/Ubuntu).
PCI_IDS_PATHS = ("/usr/share/hwdata/pci.ids", "/usr/share/misc/pci.ids", "/usr/share/pci.ids")


def find_pci_ids(paths: tuple[str, ...] = PCI_IDS_PATHS) -> str | None:
    """The first database file that exists, or None (a minimal container has none)."""
    return next((path for path in paths if os.path.isfile(path)), None)


def device_name(text: str, vendor: str, device: str) -> str | None:
    """The name `pci.ids` gives device `device` of vendor `vendor` (hex ids, any case), or None.

    The format: a vendor line `8086  Intel Corporation`, then its devices indented by one tab
    (`\\t56a0  DG2 [Arc A770]`), their subsystems by two. Lines starting with `#` are comments.
    """
    vendor, device = vendor.lower(), device.lower()
    in_vendor = False
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            if in_vendor:
                return None  # the next vendor: the device is not listed
            in_vendor = line[:4].lower() == vendor and line[4:6] == "  "
        elif in_vendor and not line.startswith("\t\t") and line[1:5].lower() == device and line[5:7] == "  ":
            return line[7:].strip() or None
    return None


def marketing_name(vendor_name: str, entry: str) -> str:
    """`Intel Arc A770` from `DG2 [Arc A770]`: the bracketed product name where the entry has one, else the entry."""
    start, end = entry.rfind("["), entry.rfind("]")
    product = entry[start + 1:end].strip() if 0 <= start < end else ""
    return f"{vendor_name} {product or entry.strip()}"
