/* tracklab-sysmon C helper, InfiniBand ports: every port's per-tick files read, parsed and rated in one call.
 *
 * It mirrors the Python twin (tracklab_sysmon/collectors/infiniband_ports_py.py) value for value. Each
 * port has five files read every tick: its four data counters (port_xmit_data, port_rcv_data, port_xmit_packets,
 * port_rcv_packets, or EFA's hw_counters in bytes) and its state. Each is read as _sysfs.MovingAttribute
 * reads it: one pread of a page from offset 0 through a kept descriptor (opened non-blocking, refused unless a
 * regular file); when that read failed, repeats the one before it or is longer than IB_TEXT, the descriptor is
 * fstat()ed and, when its file has no link left (deleted or renamed over), the path opened and read again; a
 * failed read closes it, so the next read opens the path again. A counter that moved skips the fstat: only a
 * write through the old file after it was replaced could make it read otherwise than a check before every read.
 *
 * A counter's text parses as infiniband_files.parse_counter parses the text decoded from UTF-8 (with
 * replacement): whitespace as str.strip() strips it (every character str.isspace() accepts), then
 * ASCII digits only, whose value fits 64 bits. The data counters of a port that counts 4-byte words
 * (words != 0) are scaled to bytes; every known counter is rated by rates.CounterRates' rule
 * (counter_rates.h), rounded as round(rate, 2) (numbers.h). Build with -ffp-contract=off.
 * ib_read_tier reads a slow tier's files the same way (a port's link_layer, phys_state and rate texts and its
 * error counters; its hw_counters), telling whether any differ from the previous read.
 */
#ifndef TRACKLAB_IBPORTS_H
#define TRACKLAB_IBPORTS_H

#include <stddef.h>
#include <stdint.h>

#include "fabric.h"

enum { IB_FILES = 5, IB_COUNTERS = 4, IB_STATE = 4 }; /* the state is each port's file IB_STATE */
enum { IB_PAGE = 4096 };                               /* one pread: a sysfs attribute never holds more */
enum { IB_TEXT = 64 }; /* each file's first bytes handed back (the state's text; a counter that failed) */

/* A counter's outcome (status[]): known and rated; absent (ENOENT: not a problem); unreadable (length[]
 * says why); not a counter (its text in text[]); at 2^32-1 in a port of 4-byte words (known, no rate);
 * in bytes over 64 bits (unknown). */
enum { IB_OK = 0, IB_ABSENT = 1, IB_UNREADABLE = 2, IB_BAD_TEXT = 3, IB_SATURATED = 4, IB_TOO_BIG = 5 };

/* length[] of a file that was not read: -errno of the open (kept.h's kept_open_path) or pread (Python's
 * OSError with the path); IB_NOT_REGULAR (not a regular file: _sysfs.NOT_REGULAR, EINVAL). */
enum { IB_NOT_REGULAR = -(1 << 20) };

/* A kept file: its path (owned by the caller, alive while the file is) and descriptor (-1: closed). */
typedef struct {
    const char *path;
    int fd;
} ib_file;

/* What a per-tick file's last read gave through its kept descriptor: its length and first IB_TEXT bytes. */
typedef struct {
    int32_t length;
    char text[IB_TEXT];
} ib_seen;

/* One port: its five files, whether its data counters count 4-byte words, its four counters' baselines, and
 * each file's last read (zeroed: as good as any, the read after an open is never compared). */
typedef struct {
    ib_file file[IB_FILES];
    int words;
    fb_counter counter[IB_COUNTERS];
    ib_seen seen[IB_FILES];
} ib_port;

/* Reads every port's five files and rates its four counters at `now`. Per file f of port p (at
 * p * IB_FILES + f): length[] (bytes read, or why not) and its first IB_TEXT bytes in text[] (at
 * (p * IB_FILES + f) * IB_TEXT). Per counter c (at p * IB_COUNTERS + c): status[], values[] (bytes or
 * packets; 0 when unknown) and rates[] (per second, rounded to cents; NaN when there is none).
 * Returns the number of counters whose status is not IB_OK. */
size_t ib_read(ib_port *const *ports, size_t n, double now, int32_t *length, char *text, uint64_t *values,
               double *rates, uint8_t *status);

/* ib_read_tier's answer: which kind of file read otherwise than the previous call left in its arrays. */
enum { IB_TEXTS_CHANGED = 1, IB_COUNTERS_CHANGED = 2 };

/* One tier's files in one call. files[0, n_texts) are texts, each read whole (IB_PAGE) into its slot of text[]
 * (at i * IB_PAGE), length[i] its bytes or -1 when it could not be opened or read (why is not kept: KeptAttribute's
 * read_page gives None). files[n_texts, n) are counters read as the data counters are (not scaled, not rated):
 * values[c] and known[c] 1 where the file read and parsed, else 0 and 0 (c = i - n_texts). The arrays hold the
 * previous call's answer and are rewritten only where it changed: returns IB_TEXTS_CHANGED when a text's length
 * or bytes differ from it, | IB_COUNTERS_CHANGED when a counter's known or value does; 0 when all read the same.
 * (Zeroed arrays are empty texts and unknown counters.) */
int ib_read_tier(ib_file *files, size_t n_texts, size_t n, int32_t *length, char *text, uint64_t *values,
                 uint8_t *known);

/* Closes the files' kept descriptors. */
void ib_files_close(ib_file *files, size_t n);

/* 1 and the value when text[0, n) is a counter as parse_counter reads it, else 0. */
int ib_parse_counter(const char *text, size_t n, uint64_t *value);

#endif
