"""Small readers for one-value sysfs files: missing or unreadable means None, never 0."""

from __future__ import annotations

import os


def read_text(path: str) -> str | None:
    """The file's text, or None when it is missing, unreadable or not a file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def list_dir(path: str) -> list[str]:
    """Sorted entries of a directory, [] when it is missing or unreadable."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
