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


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)  # Windows has no O_CLOEXEC (nor the files read here)


class KeptFile:
    """A one-value file read every tick through one kept descriptor (pread at 0), never reopened.

    Reads give None, like `read_text`, while the file cannot be opened or read; a failed read
    drops the descriptor so the next one opens the path again (an offlined CPU's files come back).
    """

    __slots__ = ("path", "_fd")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self) -> str | None:
        if self._fd is None:
            try:
                self._fd = os.open(self.path, _READ_FLAGS)
            except OSError:
                return None
        try:
            return os.pread(self._fd, 65536, 0).decode("utf-8", "replace")
        except OSError:
            self.close()
            return None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: os may already be gone
            pass


def list_dir(path: str) -> list[str]:
    """Sorted entries of a directory, [] when it is missing or unreadable."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
