/* tracklab-sysmon C helper, sysfs integer files: kept descriptors, one pread each, int() parsed (see sysints.h). */
#define _GNU_SOURCE
#include "sysints.h"
#include "kept.h"

#include <stdlib.h>
#include <string.h>

enum { MAX_DIGITS = 18 }; /* 18 decimal digits always fit in int64 */

struct si_file {
    char *path;
    struct kept_fd kept;
    char *text; /* si_read_text: the last text read (SI_PAGE bytes, allocated on the first read) */
    size_t len;
    int readable; /* -1: never read as text */
    int32_t seen_length; /* SI_MOVING: the last read's length and first SI_SEEN bytes (a read after an open is */
    char seen[SI_SEEN];  /* never compared) */
};

struct si_files {
    size_t n;
    int recheck_every;
    struct si_file files[];
};

si_files *si_open(const char *const *paths, size_t n, int recheck_every)
{
    si_files *f = calloc(1, sizeof *f + n * sizeof f->files[0]);
    if (f == NULL)
        return NULL;
    f->n = n;
    f->recheck_every = recheck_every;
    for (size_t i = 0; i < n; i++) {
        f->files[i].kept.fd = -1;
        f->files[i].readable = -1;
        f->files[i].path = strdup(paths[i]);
        if (f->files[i].path == NULL) {
            f->n = i;
            si_close(f);
            return NULL;
        }
    }
    return f;
}

void si_close(si_files *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++) {
        kept_drop(&f->files[i].kept);
        free(f->files[i].path);
        free(f->files[i].text);
    }
    free(f);
}

int si_fd(const si_files *f, size_t i)
{
    return i < f->n ? f->files[i].kept.fd : -1;
}

/* Py_ISSPACE: what int() strips around the number. */
static int ascii_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

int si_parse(const char *text, size_t len, int64_t *value)
{
    size_t at = 0, end = len;
    while (at < end && ascii_space((unsigned char)text[at]))
        at++;
    while (end > at && ascii_space((unsigned char)text[end - 1]))
        end--;
    int negative = 0;
    if (at < end && (text[at] == '+' || text[at] == '-'))
        negative = text[at++] == '-';
    if (at == end)
        return SI_NONE; /* nothing, or a sign alone */
    int64_t v = 0;
    for (size_t i = at; i < end; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '_' || c >= 0x80)
            return SI_DEFER; /* digit separators, or Unicode digits and spaces: int() decides */
        if (c < '0' || c > '9')
            return SI_NONE;
    }
    if (end - at > MAX_DIGITS)
        return SI_DEFER; /* a counter past 18 digits: Python's int is not bounded */
    for (size_t i = at; i < end; i++)
        v = v * 10 + (text[i] - '0');
    *value = negative ? -v : v;
    return SI_INT;
}

/* At most SI_PAGE bytes of the file through its kept descriptor: their count, or -1 when it cannot be read. */
static ssize_t read_page(struct si_file *file, int recheck_every, char *text)
{
    if (kept_current(&file->kept, file->path, recheck_every, -EINVAL) < 0)
        return -1;
    ssize_t got;
    do
        got = pread(file->kept.fd, text, SI_PAGE, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        kept_drop(&file->kept); /* the next read opens the path again */
    return got < 0 ? -1 : got;
}

/* Whether a moving file's read must be looked at: it failed, repeats the one before it or is longer than what was
 * kept of that one. */
static int repeats(const struct si_file *file, const char *text, ssize_t got)
{
    return got < 0 || got > SI_SEEN || (got == file->seen_length && memcmp(file->seen, text, (size_t)got) == 0);
}

/* A file read as _sysfs.MovingFile reads it (SI_MOVING): through its kept descriptor first; the path stat()ed only
 * when that read must be looked at, and opened and read again when it names another file now. */
static ssize_t read_moving(struct si_file *file, char *text)
{
    ssize_t got = -1;
    int kept = 0;
    if (file->kept.fd >= 0) {
        do
            got = pread(file->kept.fd, text, SI_PAGE, 0);
        while (got < 0 && errno == EINTR);
        struct stat st;
        kept = !repeats(file, text, got) ||
               (stat(file->path, &st) == 0 && st.st_dev == file->kept.dev && st.st_ino == file->kept.ino);
        if (!kept || got < 0)
            kept_drop(&file->kept); /* another file now, or a failed read: the path opened again (next time) */
    }
    if (!kept)
        got = read_page(file, 1, text); /* opened now: nothing to compare */
    if (got >= 0) {
        file->seen_length = (int32_t)got;
        memcpy(file->seen, text, (size_t)got < SI_SEEN ? (size_t)got : SI_SEEN);
    }
    return got;
}

/* A file read by its set's rule: every `recheck_every` reads checked, or SI_MOVING's. */
static ssize_t read_kept(struct si_file *file, int recheck_every, char *text)
{
    return recheck_every == SI_MOVING ? read_moving(file, text) : read_page(file, recheck_every, text);
}

static int read_one(struct si_file *file, int recheck_every, int64_t *value)
{
    *value = 0;
    char text[SI_PAGE];
    ssize_t got = read_kept(file, recheck_every, text);
    return got < 0 ? SI_NONE : si_parse(text, (size_t)got, value);
}

size_t si_read_text(si_files *f, uint8_t *changed)
{
    for (size_t i = 0; i < f->n; i++) /* every buffer first: without memory, no file has been read */
        if (f->files[i].text == NULL && (f->files[i].text = malloc(SI_PAGE)) == NULL)
            return (size_t)-1;
    size_t count = 0;
    for (size_t i = 0; i < f->n; i++) {
        struct si_file *file = &f->files[i];
        char text[SI_PAGE];
        ssize_t got = read_kept(file, f->recheck_every, text);
        int readable = got >= 0;
        size_t len = readable ? (size_t)got : 0;
        changed[i] = readable != file->readable || len != file->len || memcmp(text, file->text, len) != 0;
        if (changed[i]) {
            memcpy(file->text, text, len);
            file->len = len;
            file->readable = readable;
            count++;
        }
    }
    return count;
}

const char *si_text(const si_files *f, size_t i, size_t *len)
{
    if (i >= f->n || f->files[i].readable != 1) {
        *len = 0;
        return NULL;
    }
    *len = f->files[i].len;
    return f->files[i].text;
}

size_t si_read(si_files *f, const uint8_t *want, int64_t *values, uint8_t *states)
{
    size_t other = 0;
    for (size_t i = 0; i < f->n; i++) {
        int state = want[i] ? read_one(&f->files[i], f->recheck_every, &values[i]) : SI_SKIPPED;
        if (state != SI_INT)
            values[i] = 0;
        states[i] = (uint8_t)state;
        other += state != SI_INT;
    }
    return other;
}

struct si_attr {
    char *path;
    int fd;       /* -1: closed */
    int readable; /* the last read: -1 none yet, 0 failed, 1 its bytes are in text */
    char *text;
    size_t len, capacity;
};

si_attr *si_attr_open(const char *path)
{
    si_attr *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->fd = -1;
    a->readable = -1;
    if ((a->path = strdup(path)) == NULL) {
        free(a);
        return NULL;
    }
    return a;
}

void si_attr_close(si_attr *a)
{
    if (a == NULL)
        return;
    if (a->fd >= 0)
        close(a->fd);
    free(a->path);
    free(a->text);
    free(a);
}

static ssize_t pread_chunk(int fd, char *page)
{
    ssize_t got;
    do
        got = pread(fd, page, SI_CHUNK, 0);
    while (got < 0 && errno == EINTR);
    return got;
}

/* The path opened again into a->fd and read into page: the bytes read, or -1 (closed again after a failed read). */
static ssize_t attr_reopen(si_attr *a, char *page)
{
    struct stat st;
    int fd = kept_open_path(a->path, -EINVAL, &st);
    if (fd < 0)
        return -1;
    a->fd = fd;
    ssize_t got = pread_chunk(fd, page);
    if (got < 0) {
        close(a->fd); /* the next read opens the path again */
        a->fd = -1;
    }
    return got;
}

/* One read as _sysfs.MovingText.read_bytes makes it, into page (SI_CHUNK bytes): the read through the kept
 * descriptor first; the descriptor is fstat()ed only when that read failed or repeats the last text (kept whole,
 * so compared exactly), and a file with no link left (deleted or renamed over) is opened again and read. A text
 * that moved was read from a file still being written: a busy tick skips the fstat of every client that moved.
 * The bytes read, or -1; *same is 1 where they are known to be the last text. */
static ssize_t attr_read(si_attr *a, char *page, int *same)
{
    *same = 0;
    if (a->fd < 0)
        return attr_reopen(a, page);
    ssize_t got = pread_chunk(a->fd, page);
    int repeats = got < 0 || a->readable != 1 || ((size_t)got == a->len && memcmp(page, a->text, a->len) == 0);
    if (!repeats)
        return got; /* the usual busy tick: a text that moved, no fstat */
    struct stat st;
    if (fstat(a->fd, &st) == 0 && st.st_nlink > 0) {
        if (got < 0) {
            close(a->fd); /* the next read opens the path again */
            a->fd = -1;
        }
        *same = got >= 0 && a->readable == 1;
        return got;
    }
    close(a->fd); /* deleted or renamed over: open the path again */
    a->fd = -1;
    return attr_reopen(a, page);
}

size_t si_attr_read(si_attr *const *files, size_t n, uint8_t *states, char *page)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        si_attr *a = files[i];
        int same;
        ssize_t got = attr_read(a, page, &same);
        if (got < 0) {
            a->readable = 0;
            a->len = 0;
            states[i] = SI_UNREADABLE;
            count++;
            continue;
        }
        size_t len = (size_t)got;
        if (same || (a->readable == 1 && len == a->len && memcmp(page, a->text, len) == 0)) {
            states[i] = SI_SAME;
            continue;
        }
        if (len > a->capacity || a->text == NULL) {
            char *grown = realloc(a->text, len ? len : 1);
            if (grown == NULL) { /* every text is forgotten: the caller saw none of this call's changes */
                for (size_t j = 0; j < n; j++) {
                    files[j]->readable = -1;
                    files[j]->len = 0;
                }
                return (size_t)-1;
            }
            a->text = grown;
            a->capacity = len ? len : 1;
        }
        memcpy(a->text, page, len);
        a->len = len;
        a->readable = 1;
        states[i] = SI_CHANGED;
        count++;
    }
    return count;
}

const char *si_attr_text(const si_attr *a, size_t *len)
{
    if (a->readable != 1) {
        *len = 0;
        return NULL;
    }
    *len = a->len;
    return a->text;
}
