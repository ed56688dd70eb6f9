"""Pure parsers for /proc/PID/{stat,status,io,cmdline} and /proc/stat's btime: text in, records out (a leaf).

Like `_procfs`, it imports only `errors` and `model`; formats as proc(5) documents them.
"""

from __future__ import annotations

from .errors import ParseError
from .model import PidIo, PidStat

MAX_CMDLINE = 1024  # characters of a command line kept in a process row; the rest is cut
_STAT_FIELDS_AFTER_COMM = 22  # state (field 3) .. rss (field 24)


def parse_pid_stat(text: str) -> PidStat:
    """/proc/PID/stat; the name sits in the outermost parentheses and may itself hold spaces and ')'."""
    open_paren, close_paren = text.find("("), text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ParseError(f"/proc/PID/stat: no '(comm)' in {text[:60]!r}")
    rest = text[close_paren + 1 :].split(None, _STAT_FIELDS_AFTER_COMM)  # the ~28 fields after rss stay unsplit
    if len(rest) < _STAT_FIELDS_AFTER_COMM:
        raise ParseError(f"/proc/PID/stat: {len(rest)} fields after the name, expected >= {_STAT_FIELDS_AFTER_COMM}")
    try:
        # proc(5) numbers fields from 1; field n is rest[n - 3] (pid and comm come before `rest`). Positional
        # arguments: pid, name, state, ppid, utime (14) + stime (15), num_threads (20), starttime (22), rss (24).
        return PidStat(int(text[:open_paren]), text[open_paren + 1 : close_paren], rest[0], int(rest[1]),
                       int(rest[11]) + int(rest[12]), int(rest[17]), int(rest[19]), int(rest[21]))
    except ValueError as exc:
        raise ParseError(f"/proc/PID/stat: a number field is not a number ({exc})") from None


def parse_status_uid(text: str) -> int:
    """The effective user id of /proc/PID/status (`Uid: real effective saved fs`), as `ps -o user` shows it."""
    fields = _line_after(text, "Uid:", "/proc/PID/status").split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise ParseError(f"/proc/PID/status: malformed Uid line {fields!r}")
    return int(fields[1])


def parse_pid_io(text: str) -> PidIo:
    """read_bytes and write_bytes of /proc/PID/io (the storage layer's counts, not rchar/wchar)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key in ("read_bytes", "write_bytes"):
            try:
                values[key] = int(value)
            except ValueError:
                raise ParseError(f"/proc/PID/io: {key} is not a number: {value.strip()[:30]!r}") from None
    if len(values) != 2:
        raise ParseError("/proc/PID/io lacks read_bytes or write_bytes")
    return PidIo(values["read_bytes"], values["write_bytes"])


def parse_statm_resident(text: str) -> int:
    """Resident pages, the second field of /proc/PID/statm (what top shows as RES; stat's rss lags it a little)."""
    fields = text.split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise ParseError(f"/proc/PID/statm: expected 'size resident ...', got {text[:40]!r}")
    return int(fields[1])


def parse_cmdline(data: bytes, limit: int = MAX_CMDLINE) -> str:
    """/proc/PID/cmdline's NUL-separated arguments joined by spaces, cut to `limit` characters."""
    text = data.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
    return text[:limit]


def parse_btime(stat_text: str) -> int:
    """Boot time in seconds since the epoch: the `btime` line of /proc/stat."""
    value = _line_after(stat_text, "btime ", "/proc/stat").strip()
    if not value.isdigit():
        raise ParseError(f"/proc/stat: malformed btime line {value[:30]!r}")
    return int(value)


def _line_after(text: str, key: str, what: str) -> str:
    """The rest of the line that starts with `key` (found by search: status has ~55 lines)."""
    start = 0 if text.startswith(key) else text.find("\n" + key) + 1
    if start == 0 and not text.startswith(key):
        raise ParseError(f"{what} has no {key.strip()} line")
    end = text.find("\n", start)
    return text[start + len(key) : end if end >= 0 else len(text)]
