/* tracklab-sysmon C helper, process walk: getdents64 on a kept descriptor, openat per PID (see procwalk.h). */
#define _GNU_SOURCE
#include "procwalk.h"
#include "canonical.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { DENTS_BYTES = 32768, MAX_DIGITS = 18 }; /* 18 decimal digits always fit in int64 */
enum { STAT_TOKENS = 22 };                      /* state (field 3) .. rss (field 24), as the Python parser */

struct pw_walker {
    char *root;
    int dir_fd;
    dev_t dev; /* identity of the kept directory: a root that now names another is reopened */
    ino_t ino;
    char *dents;
    char *text; /* one stat file: PW_READ_BYTES */
};

/* ------------------------------------------------------------------ the stat parser */

/* Python's int() on [s, s + n) of canonical text, which has no surrounding space: plain digits are
 * ours, signs and underscores are Python's, anything else is its ValueError. */
static int parse_uint(const char *s, size_t n, int64_t *out)
{
    int digits = 1;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c < '0' || c > '9') {
            digits = 0;
            if (c != '+' && c != '-' && c != '_')
                return NUM_BAD;
        }
    }
    if (n == 0)
        return NUM_BAD;
    if (!digits || n > MAX_DIGITS)
        return NUM_DEFER;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    *out = v;
    return NUM_OK;
}

int pw_parse_stat(const char *text, size_t len, int64_t *fields)
{
    /* The name sits in the outermost parentheses: the first '(' and the last ')', which may be in it. */
    const char *open = len ? memchr(text, '(', len) : NULL;
    const char *close = len ? memrchr(text, ')', len) : NULL;
    if (open == NULL || close == NULL || close < open)
        return PW_EPARSE;
    /* str.split(None, 22) after the ')': only the bytes up to the end of the 22nd token matter (the rest
     * stays one unsplit string), so only those must be canonical. A byte that is not ends a run of
     * spaces and starts a token, so it is always met inside a token. */
    const char *p = close + 1, *end = text + len;
    const char *tok[STAT_TOKENS];
    size_t tok_len[STAT_TOKENS], count = 0;
    while (count < STAT_TOKENS) {
        while (p < end && is_space(*p))
            p++;
        if (p == end)
            break;
        tok[count] = p;
        for (; p < end && !is_space(*p); p++)
            if (!canonical(p, 1))
                return PW_DEFER;
        tok_len[count] = (size_t)(p - tok[count]);
        count++;
    }
    if (count < STAT_TOKENS)
        return PW_EPARSE;
    /* The pid: int() strips the space around it. */
    const char *pid = text, *pid_end = open;
    int pid_rc = NUM_DEFER;
    if (canonical(pid, (size_t)(pid_end - pid))) {
        while (pid < pid_end && is_space(*pid))
            pid++;
        while (pid_end > pid && is_space(pid_end[-1]))
            pid_end--;
        pid_rc = parse_uint(pid, (size_t)(pid_end - pid), &fields[PW_F_PID]);
    }
    /* Tokens as the Python parser indexes them: rest[1], rest[11], rest[12], rest[17], rest[19], rest[21]. */
    static const int AT[6] = {1, 11, 12, 17, 19, 21};
    int64_t v[6];
    int rc[7];
    rc[0] = pid_rc;
    for (int k = 0; k < 6; k++)
        rc[k + 1] = parse_uint(tok[AT[k]], tok_len[AT[k]], &v[k]);
    /* Every failure is the same ParseError, so any BAD wins over any DEFER. */
    int defer = tok_len[0] != 1; /* a state of more than one character: Python keeps it, we don't */
    for (int k = 0; k < 7; k++) {
        if (rc[k] == NUM_BAD)
            return PW_EPARSE;
        defer |= rc[k] == NUM_DEFER;
    }
    if (defer)
        return PW_DEFER;
    fields[PW_F_PPID] = v[0];
    fields[PW_F_CPU_TICKS] = v[1] + v[2];
    fields[PW_F_THREADS] = v[3];
    fields[PW_F_START_TICKS] = v[4];
    fields[PW_F_RSS_PAGES] = v[5];
    fields[PW_F_NAME_AT] = (int64_t)(open + 1 - text);
    fields[PW_F_NAME_LEN] = (int64_t)(close - open - 1);
    fields[PW_F_STATE] = (unsigned char)tok[0][0];
    return 0;
}

/* ------------------------------------------------------------------ the walker */

pw_walker *pw_open(const char *proc_root)
{
    pw_walker *w = calloc(1, sizeof *w);
    if (w == NULL)
        return NULL;
    w->dir_fd = -1;
    w->root = strdup(proc_root);
    w->dents = malloc(DENTS_BYTES);
    w->text = malloc(PW_READ_BYTES);
    if (w->root == NULL || w->dents == NULL || w->text == NULL) {
        pw_close(w);
        return NULL;
    }
    return w;
}

void pw_reset(pw_walker *w)
{
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    w->dir_fd = -1;
}

void pw_close(pw_walker *w)
{
    if (w == NULL)
        return;
    pw_reset(w);
    free(w->text);
    free(w->dents);
    free(w->root);
    free(w);
}

/* The kept descriptor of the root, at its start; reopened when the root names another directory. */
static int rewind_root(pw_walker *w)
{
    struct stat st;
    if (stat(w->root, &st) < 0) {
        pw_reset(w);
        return -errno;
    }
    if (w->dir_fd >= 0 && (st.st_dev != w->dev || st.st_ino != w->ino))
        pw_reset(w);
    if (w->dir_fd < 0) {
        w->dir_fd = open(w->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (w->dir_fd < 0)
            return -errno;
        if (fstat(w->dir_fd, &st) < 0) {
            int err = -errno;
            pw_reset(w);
            return err;
        }
        w->dev = st.st_dev;
        w->ino = st.st_ino;
    } else if (lseek(w->dir_fd, 0, SEEK_SET) < 0) {
        int err = -errno;
        pw_reset(w);
        return err;
    }
    return 0;
}

enum { SKIP, READ_STAT, ASK_PYTHON };

/* What str.isdigit() says of a name: all ASCII digits, some ASCII non-digit (never a digit), or bytes
 * past ASCII with only digits among the ASCII ones (a Unicode digit, maybe: Python decides). */
static int classify(const char *name, size_t n)
{
    int ascii = 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 0x80)
            ascii = 0;
        else if (c < '0' || c > '9')
            return SKIP;
    }
    return n == 0 ? SKIP : ascii ? READ_STAT : ASK_PYTHON;
}

/* One read of at most PW_READ_BYTES, as os.read; -1 when the file cannot be opened or read. */
static ssize_t read_stat(pw_walker *w, const char *name, size_t n)
{
    char path[300];
    if (n + sizeof "/stat" > sizeof path)
        return -1;
    memcpy(path, name, n);
    memcpy(path + n, "/stat", sizeof "/stat");
    /* Non-blocking: a FIFO planted in a captured tree must not hang the walk. */
    int fd = openat(w->dir_fd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    ssize_t got;
    do
        got = read(fd, w->text, PW_READ_BYTES);
    while (got < 0 && errno == EINTR);
    close(fd);
    return got;
}

static size_t put_text(char *buffer, size_t cap, size_t used, const char *bytes, size_t n, int terminate)
{
    if (used + n + (size_t)terminate <= cap) {
        if (n)
            memcpy(buffer + used, bytes, n);
        if (terminate)
            buffer[used + n] = '\0';
    }
    return used + n + (size_t)terminate;
}

/* Row `at` of `out`: `kind`, the parsed fields (a parsed row) or where its raw bytes lie. */
static void put_row(pw_buffers *out, size_t at, int kind, const int64_t *f, size_t raw_at, size_t raw_len)
{
    if (at >= out->capacity)
        return;
    int64_t *col = out->rows;
    size_t cap = out->capacity;
    col[PW_KIND * cap + at] = kind;
    col[PW_PID * cap + at] = kind == PW_PARSED ? f[PW_F_PID] : 0;
    col[PW_PPID * cap + at] = kind == PW_PARSED ? f[PW_F_PPID] : 0;
    col[PW_CPU_TICKS * cap + at] = kind == PW_PARSED ? f[PW_F_CPU_TICKS] : 0;
    col[PW_THREADS * cap + at] = kind == PW_PARSED ? f[PW_F_THREADS] : 0;
    col[PW_START_TICKS * cap + at] = kind == PW_PARSED ? f[PW_F_START_TICKS] : 0;
    col[PW_RSS_PAGES * cap + at] = kind == PW_PARSED ? f[PW_F_RSS_PAGES] : 0;
    col[PW_RAW_AT * cap + at] = (int64_t)raw_at;
    col[PW_RAW_LEN * cap + at] = (int64_t)raw_len;
    out->states[at] = kind == PW_PARSED ? (char)f[PW_F_STATE] : ' ';
}

/* One entry of the listing: its row, or nothing when it is skipped. Returns 1 for a row. */
static int walk_entry(pw_walker *w, pw_buffers *out, size_t at, const char *name, size_t n)
{
    int what = classify(name, n);
    if (what == SKIP)
        return 0;
    int64_t f[PW_FIELDS] = {0};
    int kind = PW_DEFERRED_ENTRY;
    const char *raw = name;
    size_t raw_len = n;
    if (what == READ_STAT) {
        ssize_t got = read_stat(w, name, n);
        if (got < 0) /* gone between the listing and the read, or never a process */
            return 0;
        int rc = pw_parse_stat(w->text, (size_t)got, f);
        if (rc == PW_EPARSE)
            return 0;
        /* A NUL in the name would split the packed names: Python takes that rare one. */
        int plain = rc == 0 && memchr(w->text + f[PW_F_NAME_AT], '\0', (size_t)f[PW_F_NAME_LEN]) == NULL;
        kind = plain ? PW_PARSED : PW_DEFERRED_STAT;
        raw = w->text;
        raw_len = (size_t)got;
    }
    if (kind == PW_PARSED) {
        out->names_used = put_text(out->names, out->names_cap, out->names_used, w->text + f[PW_F_NAME_AT],
                                   (size_t)f[PW_F_NAME_LEN], 1);
        put_row(out, at, kind, f, 0, 0);
    } else {
        out->names_used = put_text(out->names, out->names_cap, out->names_used, NULL, 0, 1);
        put_row(out, at, kind, f, out->raw_used, raw_len);
        out->raw_used = put_text(out->raw, out->raw_cap, out->raw_used, raw, raw_len, 0);
        out->deferred++;
    }
    return 1;
}

long pw_walk(pw_walker *w, pw_buffers *out)
{
    out->names_used = out->raw_used = out->deferred = 0;
    int rc = rewind_root(w);
    if (rc < 0)
        return rc;
    size_t found = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, w->dir_fd, w->dents, DENTS_BYTES);
        if (n < 0) {
            int err = -errno;
            pw_reset(w);
            return err;
        }
        if (n == 0)
            break;
        /* linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name */
        for (long off = 0; off + 19 < n;) {
            unsigned short reclen;
            memcpy(&reclen, w->dents + off + 16, sizeof reclen);
            if (reclen < 20 || off + reclen > n) /* never from a sane kernel: stop, don't overread */
                break;
            const char *name = w->dents + off + 19;
            found += (size_t)walk_entry(w, out, found, name, strnlen(name, (size_t)reclen - 19));
            off += reclen;
        }
    }
    return (long)found;
}
