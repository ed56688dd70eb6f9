/* tracklab-sysmon C helper, process walk: one call lists proc_root and parses every /proc/PID/stat.
 *
 * It mirrors the Python walker (tracklab_sysmon/_procwalk_py.py) entry by entry: the same entries
 * are read (names of ASCII digits; names with other bytes are handed back for Python to judge), with
 * one read of at most PW_READ_BYTES, and an entry whose stat cannot be opened, read or parsed is
 * skipped, as a process that exited between the listing and the read is. The stat parser is pure
 * and decides only canonical text (printable ASCII, tabs and newlines around the name, unsigned
 * decimals); on anything else it returns PW_DEFER and the walk hands the bytes it read to Python,
 * which parses them with the Python parser, so both backends agree by construction on odd input.
 *
 * The caller provides the output (pw_buffers). pw_walk returns the number of entries found, which
 * may exceed `capacity`, and sets the text bytes it needed, which may exceed the text buffers: only
 * what fits is written, and the caller grows its buffers and walks again.
 */
#ifndef TRACKLAB_PROCWALK_H
#define TRACKLAB_PROCWALK_H

#include <stddef.h>
#include <stdint.h>

/* Columns of a walk's rows, column-major: column k of row i is rows[k * capacity + i]. */
enum { PW_KIND, PW_PID, PW_PPID, PW_CPU_TICKS, PW_THREADS, PW_START_TICKS, PW_RSS_PAGES, PW_RAW_AT,
       PW_RAW_LEN, PW_COLUMNS };
/* PW_KIND: parsed here; stat text for Python to parse (in `raw`); an entry name for Python to judge. */
enum { PW_PARSED, PW_DEFERRED_STAT, PW_DEFERRED_ENTRY };
/* pw_parse_stat's fields: the stat's numbers, where the name lies in the text, and the state byte. */
enum { PW_F_PID, PW_F_PPID, PW_F_CPU_TICKS, PW_F_THREADS, PW_F_START_TICKS, PW_F_RSS_PAGES, PW_F_NAME_AT,
       PW_F_NAME_LEN, PW_F_STATE, PW_FIELDS };
enum { PW_READ_BYTES = 16384 }; /* the Python walker's os.read size */
/* Below -4095 so they never collide with a negated errno. */
enum { PW_DEFER = -4096, PW_EPARSE = -4097 };

typedef struct {
    int64_t *rows;     /* PW_COLUMNS * capacity */
    char *states;      /* capacity: a parsed row's state; ' ' for a deferred one */
    size_t capacity;
    char *names;       /* each row's name followed by a NUL (empty for a deferred row) */
    size_t names_cap;
    char *raw;         /* deferred rows' bytes, at PW_RAW_AT for PW_RAW_LEN */
    size_t raw_cap;
    size_t names_used; /* out: bytes the names took, or would have */
    size_t raw_used;   /* out: likewise for raw */
    size_t deferred;   /* out: rows of a PW_DEFERRED_* kind */
} pw_buffers;

typedef struct pw_walker pw_walker;

/* A walker of proc_root; NULL only when memory is exhausted. Opens nothing yet. */
pw_walker *pw_open(const char *proc_root);
void pw_close(pw_walker *walker);
/* Close the kept directory descriptor; the next walk opens it again. */
void pw_reset(pw_walker *walker);
/* One walk of proc_root: the number of entries found (see above), or -errno when proc_root cannot
 * be listed. The kept descriptor is reopened when proc_root names another directory now. */
long pw_walk(pw_walker *walker, pw_buffers *out);

/* One /proc/PID/stat text: 0 with fields[PW_FIELDS] set, PW_EPARSE (the Python parser raises
 * ParseError on this text) or PW_DEFER. */
int pw_parse_stat(const char *text, size_t len, int64_t *fields);

#endif
