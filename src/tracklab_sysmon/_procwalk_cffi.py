"""The process walk through the C helper: the same PidStat records, in the same order, as the Python walk."""

from __future__ import annotations

import errno
import os
from itertools import repeat

from ._procfs_pid import parse_pid_stat
from ._procwalk_py import no_process_list, read_stat
from ._sysmon_cffi import ffi, lib  # ImportError when the extension was not built
from .errors import ParseError
from .model import PidStat

_new_tuple = tuple.__new__
_COLUMNS = lib.PW_COLUMNS  # AttributeError from an extension built before the walk existed
_PID, _PPID, _CPU, _THREADS, _START, _RSS = (lib.PW_PID, lib.PW_PPID, lib.PW_CPU_TICKS, lib.PW_THREADS,
                                             lib.PW_START_TICKS, lib.PW_RSS_PAGES)


class Deferred:
    """Returned by the C stat parser for text outside its canonical subset: the Python parser decides."""

    def __repr__(self) -> str:
        return "DEFERRED"


DEFERRED = Deferred()


class _Buffers:
    """The caller-provided output of a walk (pw_buffers), grown when a walk found more than fits."""

    def __init__(self, rows: int = 1024) -> None:
        self.out = ffi.new("pw_buffers *")
        self.grow(rows, 24 * rows, 4096)

    def grow(self, rows: int, names: int, raw: int) -> None:
        out = self.out
        # Kept as attributes: the struct's pointers do not keep the arrays alive.
        self.rows, self.states = ffi.new("int64_t[]", rows * _COLUMNS), ffi.new("char[]", rows)
        self.names, self.raw = ffi.new("char[]", names), ffi.new("char[]", raw)
        out.rows, out.states, out.capacity = self.rows, self.states, rows
        out.names, out.names_cap, out.raw, out.raw_cap = self.names, names, self.raw, raw

    def fits(self, found: int) -> bool:
        out = self.out
        return bool(found <= out.capacity and out.names_used <= out.names_cap and out.raw_used <= out.raw_cap)

    def grow_for(self, found: int) -> None:
        """Room for a quarter more than the last walk needed, so a growing host does not walk twice a call."""
        out = self.out
        self.grow(max(out.capacity, found + found // 4), max(out.names_cap, out.names_used + out.names_used // 4),
                  max(out.raw_cap, out.raw_used + out.raw_used // 4))


class CffiProcWalker:
    """Walks `proc_root` in one C call per collection; rows C declined are finished by the Python parser.

    One walk at a time (its buffers are reused): `ProcessesCollector` never overlaps its collections."""

    def __init__(self, proc_root: str = "/proc") -> None:
        self.proc_root = proc_root
        raw = lib.pw_open(os.fsencode(proc_root))
        if raw == ffi.NULL:
            raise MemoryError("cannot allocate the C process walker")
        self._walker = ffi.gc(raw, lib.pw_close)
        self._buffers = _Buffers()
        self._found = 0  # rows of the last walk

    def stats(self) -> list[PidStat]:
        """One record per process, in the order of the listing; `Unavailable` without `proc_root`."""
        buffers, out = self._buffers, self._buffers.out
        while True:
            found = lib.pw_walk(self._walker, out)
            if found < 0:
                if found == -errno.ENOENT:
                    raise no_process_list(self.proc_root)
                raise OSError(-found, os.strerror(-found), self.proc_root)
            if buffers.fits(found):
                break
            buffers.grow_for(found)  # a walk is a fresh look: walk again into the larger buffers
        self._found = found
        rows, capacity = buffers.rows, out.capacity

        def column(k: int) -> list[int]:
            return ffi.unpack(rows + k * capacity, found)  # type: ignore[no-any-return]

        names = ffi.unpack(buffers.names, out.names_used).decode("utf-8", "replace").split("\0")
        names.pop()  # the empty string after the last name's NUL
        states = ffi.unpack(buffers.states, found).decode("ascii")
        # Columns zipped into tuples and made records by tuple.__new__ (what PidStat._make does) build the rows at C
        # speed: calling PidStat runs a Python-level __new__ per row, 0.7 us of the ~1.5 us a row costs here.
        records: list[PidStat | None] = list(map(_new_tuple, repeat(PidStat), zip(
            column(_PID), names, states, column(_PPID), column(_CPU), column(_THREADS), column(_START), column(_RSS),
            strict=True)))
        if out.deferred:
            self._finish_deferred(records, column(lib.PW_KIND), column(lib.PW_RAW_AT), column(lib.PW_RAW_LEN))
            return [record for record in records if record is not None]
        return records  # type: ignore[return-value]  # no None without a deferred row

    def _finish_deferred(self, records: list[PidStat | None], kinds: list[int], at: list[int],
                         lengths: list[int]) -> None:
        """Rows C handed back, decided as the Python walk decides them; None where it skips one."""
        raw = ffi.unpack(self._buffers.raw, self._buffers.out.raw_used)
        for i, kind in enumerate(kinds):
            if kind == lib.PW_PARSED:
                continue
            data = raw[at[i] : at[i] + lengths[i]]
            if kind == lib.PW_DEFERRED_STAT:
                try:
                    records[i] = parse_pid_stat(data.decode("utf-8", "replace"))
                except ParseError:
                    records[i] = None
            else:  # an entry name past ASCII: what os.listdir gives, and str.isdigit judges
                entry = os.fsdecode(data)
                records[i] = read_stat(self.proc_root, entry) if entry.isdigit() else None

    def close(self) -> None:
        """Close the kept directory descriptor; the next walk opens it again."""
        lib.pw_reset(self._walker)


def deferred_rows(walker: CffiProcWalker) -> list[tuple[str, bytes]]:
    """What the walker's last walk handed to Python: ("stat", the bytes read) or ("entry", the name); for tests."""
    buffers, found = walker._buffers, walker._found
    out = buffers.out
    kinds = ffi.unpack(buffers.rows + lib.PW_KIND * out.capacity, found)
    at = ffi.unpack(buffers.rows + lib.PW_RAW_AT * out.capacity, found)
    lengths = ffi.unpack(buffers.rows + lib.PW_RAW_LEN * out.capacity, found)
    raw = ffi.unpack(buffers.raw, out.raw_used)
    names = {lib.PW_DEFERRED_STAT: "stat", lib.PW_DEFERRED_ENTRY: "entry"}
    return [(names[kind], raw[at[i] : at[i] + lengths[i]]) for i, kind in enumerate(kinds) if kind != lib.PW_PARSED]


def parse_stat_native(data: bytes) -> PidStat | Deferred:
    """Run the C stat parser on `data` alone (no Python fallback): a record, DEFERRED, or ParseError."""
    fields = ffi.new("int64_t[]", lib.PW_FIELDS)
    rc = lib.pw_parse_stat(ffi.from_buffer(data), len(data), fields)
    if rc == lib.PW_DEFER:
        return DEFERRED
    if rc == lib.PW_EPARSE:
        raise ParseError("/proc/PID/stat: malformed (the C parser)")
    f = ffi.unpack(fields, lib.PW_FIELDS)
    at = f[lib.PW_F_NAME_AT]
    name = data[at : at + f[lib.PW_F_NAME_LEN]].decode("utf-8", "replace")
    return PidStat(f[lib.PW_F_PID], name, chr(f[lib.PW_F_STATE]), f[lib.PW_F_PPID], f[lib.PW_F_CPU_TICKS],
                   f[lib.PW_F_THREADS], f[lib.PW_F_START_TICKS], f[lib.PW_F_RSS_PAGES])
