"""Readers for kernel files (a leaf: imports nothing of the package): missing or unreadable is None, never 0.

Every open is non-blocking and refuses anything but a regular file, so a FIFO or device node planted
under a root can neither hang a read nor be read as a counter.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

_CHUNK = 65536
_PAGE = 4096  # a sysfs attribute's whole text fits one page
NOT_REGULAR = "not a regular file"  # the reason both hot-path backends give for a FIFO, socket or device

# Windows has neither O_CLOEXEC nor O_NONBLOCK (nor the kernel files read here): their absence must not crash imports.
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)


def open_regular(path: str) -> tuple[int, tuple[int, int]]:
    """A read-only descriptor of `path` and its (device, inode); OSError if it is not a regular file."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError(errno.EINVAL, NOT_REGULAR, path)
    except BaseException:
        os.close(fd)
        raise
    return fd, (info.st_dev, info.st_ino)


def read_fd(fd: int) -> bytes:
    """Everything from offset 0 to the end: seq_file files hand out about a page per read."""
    chunks = []
    offset = 0
    while chunk := os.pread(fd, _CHUNK, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def read_text(path: str) -> str | None:
    """The file's text, or None when it is missing, unreadable or not a regular file."""
    try:
        fd, _ = open_regular(path)
    except OSError:
        return None
    try:
        return read_fd(fd).decode("utf-8", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


class KeptFile:
    """A file read every tick through one kept descriptor (pread from 0), reopened when it changes.

    Before a read the path is stat()ed (about a microsecond): a file deleted, or renamed over by a
    new one, is reopened, so a replaced file never keeps serving its old text. `recheck_every` > 1
    does that only every so many reads, for files read by the hundred per tick (one cpufreq file per
    CPU): sysfs never renames over an attribute, and a removed one fails to read. A failed read
    drops the descriptor, so the next read opens the path again (an offlined CPU's files come
    back). `read` gives None while the file cannot be opened or read; `read_or_raise` says why.
    """

    __slots__ = ("_fd", "_identity", "_reads", "_recheck_every", "_whole", "path")

    def __init__(self, path: str, *, whole: bool = False, recheck_every: int = 1) -> None:
        """`whole`: read until EOF (multi-record /proc files); else one pread (one-value files, 64 KiB)."""
        self.path = path
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._whole = whole
        self._recheck_every = recheck_every
        self._reads = 0

    def read(self) -> str | None:
        try:
            return self.read_or_raise()
        except OSError:
            return None

    def read_or_raise(self) -> str:
        return self._bytes(-1 if self._whole else _CHUNK).decode("utf-8", "replace")

    def read_bytes(self) -> bytes | None:
        """The bytes `read` decodes, or None where it gives None."""
        try:
            return self._bytes(-1 if self._whole else _CHUNK)
        except OSError:
            return None

    def read_page_or_raise(self) -> bytes:
        """The file's first page (a sysfs attribute whole: one pread) as bytes; the same rules as `read_or_raise`."""
        return self._bytes(_PAGE)

    def read_page(self) -> bytes | None:
        """`read_page_or_raise`, or None when the file cannot be opened or read."""
        try:
            return self.read_page_or_raise()
        except OSError:
            return None

    def _bytes(self, size: int) -> bytes:
        """`size` bytes from offset 0 (one pread), or everything until EOF when `size` is -1."""
        fd = self._current()
        try:
            return read_fd(fd) if size < 0 else os.pread(fd, size, 0)
        except OSError as exc:  # the next read opens the path again; say which file failed, as open does
            self.close()
            raise OSError(exc.errno, exc.strerror, self.path) from exc

    def read_int(self) -> int | None:
        """The file as an integer (a sysfs attribute: one value, at most a page); None when it cannot be read or
        is not one. The same descriptor rules as `read`, without the text's decoding (`int` reads bytes)."""
        data = self.read_page()
        if data is None:
            return None
        try:
            return int(data)
        except ValueError:
            return None

    def _current(self) -> int:
        if self._fd is not None:
            self._reads += 1
            if self._reads >= self._recheck_every:
                self._reads = 0
                if not self._same_file():
                    self.close()
        if self._fd is None:
            self._fd, self._identity = open_regular(self.path)
            self._reads = 0
        return self._fd

    def _same_file(self) -> bool:
        try:
            info = os.stat(self.path)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) == self._identity

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: os may already be gone
            self.close()


class KeptAttribute(KeptFile):
    """A KeptFile for a sysfs attribute whose folder is watched by other means: before each read the kept
    descriptor is fstat()ed (no path lookup: a third of a stat's cost) and reopened when its file has no
    link left, i.e. was deleted or renamed over (a fixture tree's file replaced). On sysfs a removed
    attribute fails its read (ENODEV), which reopens it too; a folder renamed away is not noticed, so use it
    only where the collector finds its devices again on its own (InfiniBand ports, every 30 s).
    """

    __slots__ = ()

    def _same_file(self) -> bool:
        try:
            return self._fd is not None and os.fstat(self._fd).st_nlink > 0
        except OSError:
            return False


class MovingFile(KeptFile):
    """A KeptFile for a file read every tick whose text usually moves (a counter: RAPL's energy_uj): the read comes
    first, and the file is looked at (`_same_file`: KeptFile's stat of the path) only when that read failed, repeats
    the one before it or is longer than COMPARED bytes (what the C helpers keep of it); a file that is another one
    now is then opened and read again. A text that moved was read from a file still being written, so a busy tick
    skips the check of every counter that moved: only a write through the old file after it was replaced (or its
    folder renamed away) could make it read otherwise than a check before every read.
    """

    __slots__ = ("_last",)
    COMPARED = 64  # native/ibports.h IB_TEXT, native/sysints.h SI_SEEN

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._last: bytes | None = None

    def read_page_or_raise(self) -> bytes:
        return self._moving(_PAGE)

    def _moving(self, size: int) -> bytes:
        """One pread of `size` bytes under the rule above."""
        fd = self._fd
        if fd is None:
            data = self._bytes(size)  # opened now: nothing to look at
        else:
            try:
                data, failed = os.pread(fd, size, 0), None
            except OSError as exc:
                data, failed = b"", exc
            if failed is not None or len(data) > self.COMPARED or data == self._last:
                if not self._same_file():
                    self.close()
                    data, failed = self._bytes(size), None  # the path opened and read again
                elif failed is not None:  # the next read opens the path again; say which file failed, as open does
                    self.close()
                    raise OSError(failed.errno, failed.strerror, self.path) from failed
        self._last = data
        return data


class MovingAttribute(MovingFile, KeptAttribute):
    """MovingFile's rule with KeptAttribute's look (the kept descriptor fstat()ed: reopened when its file has no link
    left): for attributes of folders found again by other means (InfiniBand's data counters and state).
    """

    __slots__ = ()


class MovingText(MovingAttribute):
    """A MovingAttribute of a whole text that usually moves (a DRM client's fdinfo: xe's drm-total-cycles is the GPU
    clock), read by `read_bytes` (one pread of 64 KiB) and compared whole with the last one, as the C helper keeps it
    (native/sysints.c, si_attr_read)."""

    __slots__ = ()
    COMPARED = _CHUNK  # all of one read

    def read_bytes(self) -> bytes | None:
        try:
            return self._moving(_CHUNK)
        except OSError:
            return None


def list_dir(path: str) -> list[str]:
    """Sorted entries of a directory, [] when it is missing or unreadable."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
