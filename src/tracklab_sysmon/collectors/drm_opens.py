"""Opens of DRM device nodes (dev_root/dri/card*, renderD*), told by inotify IN_OPEN watches read once a tick.

A process becomes a DRM client by opening one of these nodes, and fsnotify reports opens of device inodes on
devtmpfs: a walk of every process's fds is needed only after such an open. Only the set-up goes through
ctypes (libc's inotify_init1 and inotify_add_watch, at start and at a card rescan); a tick costs one poll of
the inotify descriptor with no wait (about 0.7 µs when nothing happened; a read that fails with EAGAIN raises, 2 µs),
and a read only when an event is pending.

A watch follows an inode, not a path: a process that opens another node of the same device (a container's
own /dev made by mknod) makes no event here; `sees` tells whether an fd is on a watched node.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import struct
import sys
import weakref

from .._sysfs import list_dir

IN_OPEN = 0x20
IN_IGNORED = 0x8000  # the watch is gone (the node was deleted)
_EVENT = struct.Struct("@iIII")  # wd, mask, cookie, len (name bytes follow; none for a watched file)
_READ_BYTES = 4096  # 256 events without names; a full read is followed by another
_NODE = re.compile(r"(card|renderD)\d+$")  # card0-DP-1 connectors live in sysfs, not here; by-path/ is skipped

_libc: ctypes.CDLL | None = None


def _inotify() -> ctypes.CDLL | None:
    """libc with its inotify calls typed; None off Linux or where libc lacks them."""
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.inotify_init1.argtypes, libc.inotify_init1.restype = [ctypes.c_int], ctypes.c_int
            libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
            libc.inotify_add_watch.restype = ctypes.c_int
        except (OSError, AttributeError):
            return None
        _libc = libc
    return _libc


class DrmOpens:
    """IN_OPEN watches on every DRM node under `dev_root`/dri: all of them or none (`watching` False: a node
    that cannot be watched or was deleted, no dri folder, no inotify), so no open goes unseen while `watching`."""

    def __init__(self, dev_root: str) -> None:
        self.dri = os.path.join(dev_root, "dri")
        self._fd = -1
        self._pending: select.poll | None = None  # polls the fd: whether an event waits (no read, no exception)
        self._nodes: frozenset[tuple[int, int]] = frozenset()  # (device, inode) of every watched node
        self._closer: weakref.finalize[[int], DrmOpens] | None = None  # closes the fd, at the latest on drop

    @property
    def watching(self) -> bool:
        return bool(self._nodes)

    def watch(self) -> bool:
        """Watches every node now under dri/ (again: a watch already there is kept); True when a node not watched
        before now is (opens made before its watch are to be looked for by a walk), or an open was pending."""
        told = self.opened()  # first: a deleted node's IGNORED still queued must not drop the watches made here
        libc = _inotify()
        names = [name for name in list_dir(self.dri) if _NODE.match(name)]
        if libc is None or not names:
            self.close()
            return told
        if self._fd < 0:
            self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if self._fd < 0:
                return told
            self._closer = weakref.finalize(self, os.close, self._fd)
            self._pending = select.poll()
            self._pending.register(self._fd, select.POLLIN)
        nodes = set()
        for name in names:
            path = os.path.join(self.dri, name)
            wd = libc.inotify_add_watch(self._fd, os.fsencode(path), IN_OPEN)
            try:
                info = os.stat(path)
            except OSError:
                wd = -1
            if wd < 0:  # no permission, or gone since the listing: an open of it would go unseen
                self.close()
                return told
            nodes.add((info.st_dev, info.st_ino))
        new, self._nodes = nodes - self._nodes, frozenset(nodes)
        return told or bool(new)

    def opened(self) -> bool:
        """True when a watched node was opened since the last call (every pending event is drained); a node
        deleted meanwhile drops every watch (`watching` goes False until `watch` is called again)."""
        if self._fd < 0:
            return False
        if self._pending is not None and not self._pending.poll(0):
            return False  # nothing pending: what a read failing with EAGAIN would say, for a third of its cost
        chunks = []
        try:
            while len(chunk := os.read(self._fd, _READ_BYTES)) == _READ_BYTES:
                chunks.append(chunk)
            chunks.append(chunk)
        except BlockingIOError:  # nothing (more) pending
            pass
        except OSError:  # never seen from a live inotify descriptor: stop trusting it, walk to be safe
            self.close()
            return True
        data = b"".join(chunks)
        if not data:
            return False
        offset = 0
        while offset + _EVENT.size <= len(data):
            _, mask, _, length = _EVENT.unpack_from(data, offset)
            if mask & IN_IGNORED:  # a node deleted: one made again at its path would go unseen until watched
                self.close()
            offset += _EVENT.size + length
        return True

    def sees(self, path: str) -> bool:
        """Whether the file `path` names (a /proc/PID/fd link, followed) is a watched node; True when it cannot
        be told (the fd closed since, or a captured tree's link to a node of another machine)."""
        try:
            info = os.stat(path)
        except OSError:
            return True
        return (info.st_dev, info.st_ino) in self._nodes

    def close(self) -> None:
        """Drops every watch (with the descriptor): opens are no longer told."""
        if self._closer is not None:
            self._closer()
        self._fd, self._nodes, self._pending = -1, frozenset(), None
