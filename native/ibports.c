/* tracklab-sysmon C helper, InfiniBand ports: the per-tick files of every port in one call (see ibports.h). */
#include "ibports.h"
#include "counter_rates.h"
#include "kept.h"
#include "numbers.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint64_t SATURATED_32 = 0xFFFFFFFFu; /* the legacy 32-bit counters stop here */
static const uint64_t BYTES_PER_WORD = 4;

/* The length of the whitespace character at s[0, n) as str.isspace() sees it in UTF-8, or 0: ASCII
 * \t \n \v \f \r, \x1c-\x1f and space; U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
 * U+205F and U+3000. */
static size_t space_at(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20))
        return 1;
    if (c == 0xC2 && n >= 2 && (s[1] == 0x85 || s[1] == 0xA0))
        return 2;
    if (n < 3)
        return 0;
    if (c == 0xE1 && s[1] == 0x9A && s[2] == 0x80)
        return 3;
    if (c == 0xE2 && s[1] == 0x80 && ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;
    if (c == 0xE2 && s[1] == 0x81 && s[2] == 0x9F)
        return 3;
    if (c == 0xE3 && s[1] == 0x80 && s[2] == 0x80)
        return 3;
    return 0;
}

/* Whitespace, ASCII digits, whitespace: nothing else decodes to a text parse_counter accepts (any other
 * byte, or a broken sequence, is a character that is neither). */
int ib_parse_counter(const char *text, size_t n, uint64_t *value)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, step;
    while (i < n && (step = space_at(s + i, n - i)) > 0)
        i += step;
    size_t digits = i;
    uint64_t v = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        unsigned d = s[i] - '0';
        if (v > (UINT64_MAX - d) / 10)
            return 0; /* over 64 bits */
        v = v * 10 + d;
    }
    if (i == digits)
        return 0;
    while (i < n && (step = space_at(s + i, n - i)) > 0)
        i += step;
    if (i != n)
        return 0;
    *value = v;
    return 1;
}

static void closed_fd(int *fd)
{
    close(*fd);
    *fd = -1;
}

/* One page from offset 0 (Python retries an interrupted call). */
static ssize_t pread_page(int fd, char *page)
{
    ssize_t got;
    do
        got = pread(fd, page, IB_PAGE, 0);
    while (got < 0 && errno == EINTR);
    return got;
}

/* One file as KeptAttribute reads it into page: the bytes read, or why not (ibports.h). */
static int32_t read_file(ib_file *file, char *page)
{
    int *fd = &file->fd;
    struct stat st;
    if (*fd >= 0 && (fstat(*fd, &st) != 0 || st.st_nlink == 0))
        closed_fd(fd); /* deleted or renamed over: open the path again */
    if (*fd < 0) {
        int f = kept_open_path(file->path, IB_NOT_REGULAR, &st);
        if (f < 0)
            return f;
        *fd = f;
    }
    ssize_t got = pread_page(*fd, page);
    if (got < 0) {
        int e = errno;
        closed_fd(fd);
        return -e;
    }
    return (int32_t)got;
}

/* Whether a kept descriptor's file must be looked at (ibports.h): its read failed, repeats the one before it, or is
 * longer than the IB_TEXT bytes kept of that one. */
static int repeats(const ib_seen *seen, const char *page, ssize_t got)
{
    return got < 0 || got > IB_TEXT || (got == seen->length && memcmp(seen->text, page, (size_t)got) == 0);
}

/* One per-tick file as _sysfs.MovingAttribute reads it into page: through its kept descriptor, fstat()ed only when
 * the read repeats (above), reopened and read again when its file has no link left; the bytes read, or why not. */
static int32_t read_moving(ib_file *file, ib_seen *seen, char *page)
{
    int *fd = &file->fd;
    int32_t got;
    if (*fd >= 0) {
        ssize_t kept = pread_page(*fd, page);
        int e = errno;
        struct stat st;
        if (!repeats(seen, page, kept) || (fstat(*fd, &st) == 0 && st.st_nlink > 0)) {
            if (kept < 0) {
                closed_fd(fd);
                return -e;
            }
            got = (int32_t)kept; /* the usual busy tick: a counter that moved, no fstat */
        } else {
            closed_fd(fd); /* deleted or renamed over: open the path again */
            got = read_file(file, page);
        }
    } else {
        got = read_file(file, page);
    }
    if (got >= 0) {
        seen->length = got;
        memcpy(seen->text, page, (size_t)got < IB_TEXT ? (size_t)got : IB_TEXT);
    }
    return got;
}

/* A counter's status from its file's outcome, and its value when known: a data counter of a port that counts
 * 4-byte words in bytes. The rules in the collector's order: saturated first, then too big. */
static uint8_t counter_of(int32_t got, const char *page, int words, int data, uint64_t *value)
{
    if (got < 0)
        return got == -ENOENT ? IB_ABSENT : IB_UNREADABLE;
    uint64_t raw;
    if (!ib_parse_counter(page, (size_t)got, &raw))
        return IB_BAD_TEXT;
    uint64_t factor = words && data ? BYTES_PER_WORD : 1;
    if (raw == SATURATED_32 && words) {
        *value = raw * factor;
        return IB_SATURATED;
    }
    if (raw > UINT64_MAX / factor)
        return IB_TOO_BIG;
    *value = raw * factor;
    return IB_OK;
}

size_t ib_read(ib_port *const *ports, size_t n, double now, int32_t *length, char *text, uint64_t *values,
               double *rates, uint8_t *status)
{
    char page[IB_PAGE];
    size_t odd = 0;
    for (size_t p = 0; p < n; p++) {
        ib_port *port = ports[p];
        for (size_t f = 0; f < IB_FILES; f++) {
            size_t at = p * IB_FILES + f;
            int32_t got = read_moving(&port->file[f], &port->seen[f], page);
            length[at] = got;
            if (got > 0)
                memcpy(text + at * IB_TEXT, page, (size_t)got < IB_TEXT ? (size_t)got : IB_TEXT);
            if (f == IB_STATE)
                continue;
            size_t c = p * IB_COUNTERS + f;
            values[c] = 0;
            rates[c] = NAN;
            uint8_t s = counter_of(got, page, port->words, f < 2, &values[c]); /* data: the first two */
            status[c] = s;
            if (s == IB_OK || s == IB_SATURATED) {
                fb_counter *k = &port->counter[f];
                double rate = round2(counter_rates_step(k->value, k->at, &k->count, values[c], now));
                if (s == IB_OK)
                    rates[c] = rate;
            }
            odd += s != IB_OK;
        }
    }
    return odd;
}

int ib_read_tier(ib_file *files, size_t n_texts, size_t n, int32_t *length, char *text, uint64_t *values,
                 uint8_t *known)
{
    char page[IB_PAGE];
    int changed = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t got = read_file(&files[i], page);
        if (i < n_texts) {
            got = got < 0 ? -1 : got; /* unreadable, whatever the reason */
            char *slot = text + i * IB_PAGE;
            if (got != length[i] || (got > 0 && memcmp(slot, page, (size_t)got) != 0)) {
                length[i] = got;
                if (got > 0)
                    memcpy(slot, page, (size_t)got);
                changed |= IB_TEXTS_CHANGED;
            }
            continue;
        }
        size_t c = i - n_texts;
        uint64_t value = 0; /* the parser writes only a counter it read */
        uint8_t is = got >= 0 && ib_parse_counter(page, (size_t)got, &value);
        if (is != known[c] || value != values[c]) {
            known[c] = is;
            values[c] = value;
            changed |= IB_COUNTERS_CHANGED;
        }
    }
    return changed;
}

void ib_files_close(ib_file *files, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (files[i].fd >= 0)
            closed_fd(&files[i].fd);
}
