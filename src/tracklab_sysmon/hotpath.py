"""Picks the hot-path backend once (C helper or Python twin) and exports `BACKEND`."""

from __future__ import annotations

from ._hotpath_py import PyHotReader

HotReader = PyHotReader
BACKEND = "python"


def open_reader(proc_root: str = "/proc") -> PyHotReader:
    """A reader of the per-tick counters under `proc_root`, from the chosen backend."""
    return HotReader(proc_root)


__all__ = ["BACKEND", "HotReader", "open_reader"]
