/* tracklab-sysmon C helper: kept descriptors, pread at offset 0, pure parsers (see sysmon.h). */
#define _GNU_SOURCE
#include "sysmon.h"
#include "canonical.h"
#include "numbers.h"
#include "kept.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

static const char *const FILE_NAMES[SM_NFILES] = {
    "stat", "diskstats", "net/dev", "meminfo", "loadavg", "net/snmp",
};

enum { INITIAL_TEXT = 16384, READ_SLACK = 4096, DENTS_BYTES = 32768 };
enum { MAX_DIGITS = 18 };            /* 18 decimal digits always fit in int64 */
#define SECTOR_LIMIT (1ULL << 53)    /* sectors * 512 stays below 2^62 */
#define MEMINFO_LIMIT (1ULL << 50)   /* kB * 1024, and a sum of four, stay below 2^62 */
#define NO_LIMIT UINT64_MAX

struct sm_file {
    struct kept_fd kept;
    char *text;
    size_t cap;
    size_t len;
};

struct sm_reader {
    char *root;
    int dir_fd;
    char *dents;
    struct sm_file files[SM_NFILES];
};

/* ------------------------------------------------------------------ reader */

static void drop(struct sm_file *f)
{
    kept_drop(&f->kept);
}

sm_reader *sm_open(const char *proc_root)
{
    sm_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->root = strdup(proc_root);
    r->dents = malloc(DENTS_BYTES);
    if (r->root == NULL || r->dents == NULL) {
        free(r->root);
        free(r->dents);
        free(r);
        return NULL;
    }
    r->dir_fd = -1;
    for (int i = 0; i < SM_NFILES; i++)
        r->files[i].kept.fd = -1;
    return r;
}

void sm_reset(sm_reader *r)
{
    for (int i = 0; i < SM_NFILES; i++)
        drop(&r->files[i]);
    if (r->dir_fd >= 0)
        close(r->dir_fd);
    r->dir_fd = -1;
}

void sm_close(sm_reader *r)
{
    if (r == NULL)
        return;
    sm_reset(r);
    for (int i = 0; i < SM_NFILES; i++)
        free(r->files[i].text);
    free(r->dents);
    free(r->root);
    free(r);
}

static int path_under(const sm_reader *r, const char *name, char *path, size_t size)
{
    /* os.path.join("", name) is just name; keep the Python twin's behaviour. */
    int n = r->root[0] ? snprintf(path, size, "%s/%s", r->root, name) : snprintf(path, size, "%s", name);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* The kept descriptor of `path` (kept.h), SM_ENOTREG for anything but a regular file. */
static int keep_current(struct sm_file *f, const char *path, int recheck_every)
{
    return kept_current(&f->kept, path, recheck_every, SM_ENOTREG);
}

static int grow(struct sm_file *f)
{
    size_t cap = f->cap ? f->cap * 2 : INITIAL_TEXT;
    char *text = realloc(f->text, cap);
    if (text == NULL)
        return -ENOMEM;
    f->text = text;
    f->cap = cap;
    return 0;
}

long sm_read(sm_reader *r, int file)
{
    if (file < 0 || file >= SM_NFILES)
        return -EINVAL;
    struct sm_file *f = &r->files[file];
    char path[PATH_MAX];
    int rc = path_under(r, FILE_NAMES[file], path, sizeof path);
    if (rc == 0)
        rc = keep_current(f, path, 1);
    if (rc < 0)
        return rc;
    size_t len = 0;
    f->len = 0;
    for (;;) {
        /* seq_file hands out about a page per read for multi-record files: read until 0. */
        if (f->cap - len < READ_SLACK + 1) {
            int rc = grow(f);
            if (rc < 0)
                return rc;
        }
        ssize_t n = pread(f->kept.fd, f->text + len, f->cap - len - 1, (off_t)len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = -errno;
            drop(f); /* any read error: the next read opens the path again */
            return err;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    f->text[len] = '\0';
    f->len = len;
    return (long)len;
}

const char *sm_text(const sm_reader *r, int file)
{
    if (file < 0 || file >= SM_NFILES || r->files[file].text == NULL)
        return "";
    return r->files[file].text;
}

static int all_digits(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

long sm_process_count(sm_reader *r)
{
    if (r->dir_fd < 0) {
        r->dir_fd = open(r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (r->dir_fd < 0)
            return -errno;
    } else if (lseek(r->dir_fd, 0, SEEK_SET) < 0) {
        return -errno;
    }
    long count = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, r->dir_fd, r->dents, DENTS_BYTES);
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        /* linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name */
        for (long off = 0; off + 19 < n;) {
            unsigned short reclen;
            memcpy(&reclen, r->dents + off + 16, sizeof reclen);
            if (reclen < 20 || off + reclen > n) /* never from a sane kernel: stop, don't overread */
                break;
            const char *name = r->dents + off + 19;
            if (all_digits(name, strnlen(name, (size_t)reclen - 19)))
                count++;
            off += reclen;
        }
    }
    return count;
}

/* ------------------------------------------------------------------ lexing */

typedef struct {
    const char *s;
    size_t n;
} tok;

/* Splits [p, end) at whitespace; stores up to max tokens and returns how many there are. */
static size_t split(const char *p, const char *end, tok *out, size_t max)
{
    size_t count = 0;
    while (p < end) {
        while (p < end && is_space(*p))
            p++;
        if (p == end)
            break;
        const char *s = p;
        while (p < end && !is_space(*p))
            p++;
        if (count < max) {
            out[count].s = s;
            out[count].n = (size_t)(p - s);
        }
        count++;
    }
    return count;
}

static tok trim(const char *p, const char *end)
{
    while (p < end && is_space(*p))
        p++;
    while (end > p && is_space(end[-1]))
        end--;
    return (tok){p, (size_t)(end - p)};
}

static int tok_is(tok t, const char *word)
{
    size_t n = strlen(word);
    return t.n == n && memcmp(t.s, word, n) == 0;
}

/* Python's int() on one token: plain digits are ours; signs and underscores are Python's. */
static int parse_uint(tok t, unsigned long long limit, int64_t *out)
{
    int digits = 1, intish = 1;
    for (size_t i = 0; i < t.n; i++) {
        char c = t.s[i];
        if (c < '0' || c > '9') {
            digits = 0;
            if (c != '+' && c != '-' && c != '_')
                intish = 0;
        }
    }
    if (t.n == 0 || !intish)
        return NUM_BAD;
    if (!digits || t.n > MAX_DIGITS)
        return NUM_DEFER;
    unsigned long long v = 0;
    for (size_t i = 0; i < t.n; i++)
        v = v * 10 + (unsigned)(t.s[i] - '0');
    if (v > limit)
        return NUM_DEFER;
    *out = (int64_t)v;
    return NUM_OK;
}

/* Python's float() on one token. `d+(.d+)?` with at most 15 digits is exact (both operands of
 * the division are exact doubles, so it rounds once, as float() does); the rest is Python's. */
static int parse_float(tok t, double *out)
{
    static const char floaty[] = "0123456789.+-_eEiInNfFtTyYaA";
    size_t digits = 0, frac = 0, dots = 0;
    unsigned long long m = 0;
    int plain = t.n > 0;
    for (size_t i = 0; i < t.n; i++) {
        char c = t.s[i];
        if (c >= '0' && c <= '9') {
            if (digits < 16)
                m = m * 10 + (unsigned)(c - '0');
            digits++;
            frac += dots > 0;
        } else if (c == '.') {
            dots++;
        } else {
            plain = 0;
            if (c == '\0' || strchr(floaty, c) == NULL)
                return NUM_BAD;
        }
    }
    if (t.n == 0)
        return NUM_BAD;
    if (!plain || dots > 1 || t.s[0] == '.' || t.s[t.n - 1] == '.' || digits > 15)
        return NUM_DEFER;
    *out = (double)m / POW10[frac];
    return NUM_OK;
}

/* Parses tokens in order as Python evaluates them: the first one that is not a plain number
 * decides (NUM_BAD: Python raises ValueError there; NUM_DEFER: let Python decide). */
static int parse_fields(const tok *t, const int *idx, const unsigned long long *limits, int count,
                        int64_t *out)
{
    for (int k = 0; k < count; k++) {
        int rc = parse_uint(t[idx[k]], limits[k], &out[k]);
        if (rc != NUM_OK)
            return rc;
    }
    return NUM_OK;
}

static const char *line_end(const char *p, const char *end)
{
    if (p >= end) /* also keeps memchr away from a NULL, empty text */
        return end;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl : end;
}

static const char *next_line(const char *e, const char *end)
{
    return e < end ? e + 1 : end;
}

/* Lines as str.splitlines() gives them on canonical text (which has no \r, \v or \f). */
#define FOR_EACH_LINE(text, len, p, e)                                                   \
    for (const char *p = (text), *end_ = (text) + (len), *e = line_end(p, end_); p < end_; \
         p = next_line(e, end_), e = line_end(p, end_))

/* ------------------------------------------------------------------ parsers */

long sm_parse_stat(const char *text, size_t len, double ticks, double *total, double *cores,
                   size_t capacity)
{
    if (!canonical(text, len))
        return SM_DEFER;
    int have_total = 0;
    size_t found = 0;
    FOR_EACH_LINE(text, len, p, e) {
        if (e - p < 3 || memcmp(p, "cpu", 3) != 0)
            continue;
        tok t[9];
        size_t n = split(p, e, t, 9);
        size_t nvalues = n - 1 < 8 ? n - 1 : 8;
        double values[8] = {0};
        int rc = NUM_OK;
        for (size_t k = 0; k < nvalues && rc == NUM_OK; k++) {
            int64_t v = 0;
            rc = parse_uint(t[k + 1], NO_LIMIT, &v);
            values[k] = (double)v / ticks;
        }
        if (rc == NUM_DEFER)
            return SM_DEFER;
        if (rc == NUM_BAD || nvalues < 4)
            continue;
        if (t[0].n == 3) {
            memcpy(total, values, sizeof values);
            have_total = 1;
            continue;
        }
        tok id = {t[0].s + 3, t[0].n - 3};
        if (!all_digits(id.s, id.n))
            continue;
        int64_t cpu;
        if (parse_uint(id, 1ULL << 53, &cpu) != NUM_OK)
            return SM_DEFER;
        if (found < capacity) {
            double *row = cores + found * SM_CPU_ROW;
            row[0] = (double)cpu;
            memcpy(row + 1, values, sizeof values);
        }
        found++;
    }
    return have_total ? (long)found : SM_EPARSE;
}

static void put_row(int64_t *rows, size_t at, size_t capacity, const char *text, tok name,
                    const int64_t *v)
{
    if (at >= capacity)
        return;
    int64_t *row = rows + at * SM_DEV_ROW;
    row[0] = (int64_t)(name.s - text);
    row[1] = (int64_t)name.n;
    memcpy(row + 2, v, 4 * sizeof *v);
}

long sm_parse_diskstats(const char *text, size_t len, int64_t *rows, size_t capacity)
{
    static const int WIDE[4] = {3, 5, 7, 9}, OLD[4] = {3, 4, 5, 6};
    static const unsigned long long LIMITS[4] = {NO_LIMIT, SECTOR_LIMIT, NO_LIMIT, SECTOR_LIMIT};
    if (!canonical(text, len))
        return SM_DEFER;
    size_t found = 0;
    FOR_EACH_LINE(text, len, p, e) {
        tok t[10];
        size_t n = split(p, e, t, 10);
        const int *idx = n >= 14 ? WIDE : n == 7 ? OLD : NULL;
        if (idx == NULL)
            continue;
        int64_t v[4];
        int rc = parse_fields(t, idx, LIMITS, 4, v);
        if (rc == NUM_DEFER)
            return SM_DEFER;
        if (rc == NUM_BAD)
            continue;
        v[1] *= 512;
        v[3] *= 512;
        put_row(rows, found++, capacity, text, t[2], v);
    }
    return (long)found;
}

long sm_parse_net_dev(const char *text, size_t len, int64_t *rows, size_t capacity)
{
    static const int IDX[4] = {0, 1, 8, 9};
    static const unsigned long long LIMITS[4] = {NO_LIMIT, NO_LIMIT, NO_LIMIT, NO_LIMIT};
    if (!canonical(text, len))
        return SM_DEFER;
    size_t found = 0;
    FOR_EACH_LINE(text, len, p, e) {
        const char *colon = memrchr(p, ':', (size_t)(e - p));
        if (colon == NULL || memchr(p, '|', (size_t)(e - p)) != NULL)
            continue;
        tok t[10];
        if (split(colon + 1, e, t, 10) < 10)
            continue;
        int64_t v[4];
        int rc = parse_fields(t, IDX, LIMITS, 4, v);
        if (rc == NUM_DEFER)
            return SM_DEFER;
        if (rc == NUM_BAD)
            continue;
        put_row(rows, found++, capacity, text, trim(p, colon), v);
    }
    return (long)found;
}

int sm_parse_meminfo(const char *text, size_t len, int64_t *fields)
{
    enum { TOTAL, AVAILABLE, FREE, BUFFERS, CACHED, SRECLAIMABLE, SWAP_TOTAL, SWAP_FREE, NKEYS };
    static const char *const KEYS[NKEYS] = {"MemTotal", "MemAvailable", "MemFree", "Buffers",
                                            "Cached", "SReclaimable", "SwapTotal", "SwapFree"};
    if (!canonical(text, len))
        return SM_DEFER;
    int64_t v[NKEYS];
    int has[NKEYS] = {0};
    FOR_EACH_LINE(text, len, p, e) {
        const char *colon = memchr(p, ':', (size_t)(e - p));
        if (colon == NULL)
            continue;
        tok key = trim(p, colon);
        int k = 0;
        while (k < NKEYS && !tok_is(key, KEYS[k]))
            k++;
        if (k == NKEYS) /* the Python parser keeps other keys too, but never reads them */
            continue;
        tok t[2];
        size_t n = split(colon + 1, e, t, 2);
        if (n == 0)
            continue;
        int64_t number;
        int rc = parse_uint(t[0], MEMINFO_LIMIT, &number);
        if (rc == NUM_DEFER)
            return SM_DEFER;
        if (rc == NUM_BAD)
            continue;
        v[k] = n > 1 && tok_is(t[1], "kB") ? number * 1024 : number;
        has[k] = 1;
    }
    int64_t available = has[AVAILABLE] ? v[AVAILABLE] : -1;
    if (!has[AVAILABLE] && has[FREE]) /* kernels < 3.14: estimate as old `free` did */
        available = v[FREE] + (has[BUFFERS] ? v[BUFFERS] : 0) + (has[CACHED] ? v[CACHED] : 0)
                    + (has[SRECLAIMABLE] ? v[SRECLAIMABLE] : 0);
    if (has[TOTAL] && available >= 0 && available > v[TOTAL])
        available = v[TOTAL];
    fields[0] = has[TOTAL] ? v[TOTAL] : -1;
    fields[1] = available;
    fields[2] = has[SWAP_TOTAL] ? v[SWAP_TOTAL] : -1;
    fields[3] = has[SWAP_FREE] ? v[SWAP_FREE] : -1;
    return 0;
}

int sm_parse_loadavg(const char *text, size_t len, double *loads, int64_t *tasks)
{
    if (!canonical(text, len))
        return SM_DEFER;
    tok t[4];
    if (split(text, text + len, t, 4) < 4)
        return SM_EPARSE;
    const char *slash = memchr(t[3].s, '/', t[3].n);
    tok running = {t[3].s, slash ? (size_t)(slash - t[3].s) : t[3].n};
    tok threads = {slash ? slash + 1 : t[3].s + t[3].n,
                   slash ? t[3].n - running.n - 1 : 0};
    /* Every failure is the same ParseError, so any BAD wins over any DEFER. */
    int rc[5] = {parse_float(t[0], &loads[0]), parse_float(t[1], &loads[1]),
                 parse_float(t[2], &loads[2]), parse_uint(running, NO_LIMIT, &tasks[0]),
                 parse_uint(threads, NO_LIMIT, &tasks[1])};
    int defer = 0;
    for (int k = 0; k < 5; k++) {
        if (rc[k] == NUM_BAD)
            return SM_EPARSE;
        defer |= rc[k] == NUM_DEFER;
    }
    return defer ? SM_DEFER : 0;
}

/* Field `index` of the line [p, e), counting from the token after the line's label. */
static int nth_field(const char *p, const char *e, size_t index, tok *out)
{
    for (size_t seen = 0;; seen++) {
        while (p < e && is_space(*p))
            p++;
        if (p == e)
            return 0;
        const char *s = p;
        while (p < e && !is_space(*p))
            p++;
        if (seen == index + 1) {
            *out = (tok){s, (size_t)(p - s)};
            return 1;
        }
    }
}

int sm_parse_tcp_established(const char *text, size_t len, int64_t *established)
{
    if (!canonical(text, len))
        return SM_DEFER;
    const char *header = NULL, *header_end = NULL;
    FOR_EACH_LINE(text, len, p, e) {
        if (e - p < 4 || memcmp(p, "Tcp:", 4) != 0)
            continue;
        if (header == NULL) {
            header = p;
            header_end = e;
            continue;
        }
        size_t index = 0;
        tok name;
        while (nth_field(header, header_end, index, &name) && !tok_is(name, "CurrEstab"))
            index++;
        tok value;
        if (!nth_field(header, header_end, index, &name) || !nth_field(p, e, index, &value))
            return SM_EPARSE;
        int rc = parse_uint(value, NO_LIMIT, established);
        return rc == NUM_OK ? 0 : rc == NUM_DEFER ? SM_DEFER : SM_EPARSE;
    }
    return SM_ENOTABLE;
}

/* ------------------------------------------------------------------ CPU tick */

enum { FREQ_UNKNOWN, FREQ_SCALING, FREQ_CPUINFO, FREQ_ABSENT }; /* which cpufreq file a CPU has */
enum { FREQ_TEXT = 64 }; /* a kHz value and a newline; longer text is not canonical */

struct sm_freq {
    int state;
    struct sm_file file; /* text unused: one pread into a stack buffer */
};

struct sm_prev {
    double id;
    double times[8];
};

struct sm_cpu {
    char *cpu_dir;
    struct sm_freq *freqs; /* indexed by CPU id, grown to the largest id seen (< SM_MAX_FREQ_ID) */
    size_t nfreqs;
    struct sm_prev *prev;
    size_t nprev, prev_cap;
    int prev_sorted; /* ids strictly increasing: a match by position is the only match */
    int have_total;
    double prev_total[8];
    double *parsed, *out;
    size_t parsed_cap, out_cap, nout;
    double overall;
    char *json;
    size_t json_cap;
};

sm_cpu *sm_cpu_open(const char *sys_root)
{
    sm_cpu *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    size_t n = strlen(sys_root) + sizeof "/devices/system/cpu";
    c->cpu_dir = malloc(n);
    if (c->cpu_dir == NULL) {
        free(c);
        return NULL;
    }
    /* os.path.join(sys_root, "devices/system/cpu"), as the Python collector builds it. */
    if (sys_root[0] == '\0')
        snprintf(c->cpu_dir, n, "devices/system/cpu");
    else if (sys_root[strlen(sys_root) - 1] == '/')
        snprintf(c->cpu_dir, n, "%sdevices/system/cpu", sys_root);
    else
        snprintf(c->cpu_dir, n, "%s/devices/system/cpu", sys_root);
    c->overall = NAN;
    return c;
}

void sm_cpu_close(sm_cpu *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nfreqs; i++)
        drop(&c->freqs[i].file);
    free(c->freqs);
    free(c->prev);
    free(c->parsed);
    free(c->out);
    free(c->json);
    free(c->cpu_dir);
    free(c);
}

const double *sm_cpu_rows(const sm_cpu *c)
{
    return c->out;
}

double sm_cpu_overall(const sm_cpu *c)
{
    return c->overall;
}

const double *sm_cpu_total(const sm_cpu *c)
{
    return c->prev_total;
}

static int reserve(double **buf, size_t *cap, size_t rows, size_t width)
{
    if (rows <= *cap)
        return 0;
    size_t want = rows > 2 * *cap ? rows : 2 * *cap;
    double *grown = realloc(*buf, want * width * sizeof **buf);
    if (grown == NULL)
        return -ENOMEM;
    *buf = grown;
    *cap = want;
    return 0;
}

/* rates.busy_percent, operation for operation (CpuTimes.total sums left to right). */
static double busy_percent(const double *prev, const double *cur)
{
    double cur_total = cur[0] + cur[1] + cur[2] + cur[3] + cur[4] + cur[5] + cur[6] + cur[7];
    double prev_total = prev[0] + prev[1] + prev[2] + prev[3] + prev[4] + prev[5] + prev[6] + prev[7];
    double busy = (cur_total - cur[3] - cur[4]) - (prev_total - prev[3] - prev[4]);
    double idle = (cur[3] + cur[4]) - (prev[3] + prev[4]);
    busy = busy > 0.0 ? busy : 0.0;
    idle = idle > 0.0 ? idle : 0.0;
    double elapsed = busy + idle;
    if (elapsed <= 0.0)
        return NAN;
    double share = 100.0 * busy / elapsed;
    return round2(share < 100.0 ? share : 100.0);
}

/* The previous times of CPU `id` (row `at` of this tick), or NULL at first sight. Like the dict
 * the Python collector builds, a repeated id means its last row. */
static const double *previous_times(const sm_cpu *c, double id, size_t at)
{
    if (at < c->nprev && c->prev[at].id == id && c->prev_sorted)
        return c->prev[at].times;
    for (size_t k = c->nprev; k-- > 0;)
        if (c->prev[k].id == id)
            return c->prev[k].times;
    return NULL;
}

static int path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0; /* os.path.exists: follows links, any failure is "no" */
}

/* The kHz in one canonical cpufreq text (digits amid spaces, tabs, newlines), in MHz. */
static int parse_khz(const char *text, size_t len, double *mhz)
{
    tok t[2];
    if (!canonical(text, len) || split(text, text + len, t, 2) != 1 || !all_digits(t[0].s, t[0].n))
        return NUM_DEFER;
    int64_t khz;
    if (parse_uint(t[0], NO_LIMIT, &khz) != NUM_OK)
        return NUM_DEFER;
    *mhz = (double)khz / 1000.0;
    return NUM_OK;
}

static int freq_path(const sm_cpu *c, size_t cpu, int state, char *path, size_t size)
{
    const char *name = state == FREQ_SCALING ? "scaling_cur_freq" : "cpuinfo_cur_freq";
    int n = snprintf(path, size, "%s/cpu%zu/cpufreq/%s", c->cpu_dir, cpu, name);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Frequency of CPU `id`: SM_FREQ_* and the value (NaN when unreadable). */
static int frequency(sm_cpu *c, double id, double *mhz)
{
    *mhz = NAN;
    if (!(id >= 0 && id < SM_MAX_FREQ_ID))
        return SM_FREQ_DEFER;
    size_t at = (size_t)id;
    if (at >= c->nfreqs) {
        size_t want = at + 1 > 2 * c->nfreqs ? at + 1 : 2 * c->nfreqs;
        struct sm_freq *grown = realloc(c->freqs, want * sizeof *grown);
        if (grown == NULL)
            return SM_FREQ_DEFER;
        for (size_t k = c->nfreqs; k < want; k++)
            grown[k] = (struct sm_freq){.state = FREQ_UNKNOWN, .file = {.kept = {.fd = -1}}};
        c->freqs = grown;
        c->nfreqs = want;
    }
    struct sm_freq *f = &c->freqs[at];
    char path[PATH_MAX];
    if (f->state == FREQ_UNKNOWN) { /* first sight: pick its file once, as the Python collector does */
        f->state = FREQ_ABSENT;
        for (int state = FREQ_SCALING; state <= FREQ_CPUINFO && f->state == FREQ_ABSENT; state++)
            if (freq_path(c, at, state, path, sizeof path) == 0 && path_exists(path))
                f->state = state;
    }
    if (f->state == FREQ_ABSENT)
        return SM_FREQ_NONE;
    if (freq_path(c, at, f->state, path, sizeof path) < 0)
        return SM_FREQ_READ;
    if (keep_current(&f->file, path, SM_FREQ_RECHECK) < 0)
        return SM_FREQ_READ;
    char text[FREQ_TEXT];
    ssize_t n;
    do
        n = pread(f->file.kept.fd, text, sizeof text, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        drop(&f->file); /* the next tick opens it again (an offlined CPU comes back) */
        return SM_FREQ_READ;
    }
    if ((size_t)n == sizeof text) /* longer than any kHz value: let Python read it whole */
        return SM_FREQ_DEFER;
    return parse_khz(text, (size_t)n, mhz) == NUM_OK ? SM_FREQ_READ : SM_FREQ_DEFER;
}

long sm_cpu_update(sm_cpu *c, const double *total, const double *rows, size_t n)
{
    if (reserve(&c->out, &c->out_cap, n, SM_CORE_ROW) < 0)
        return -ENOMEM;
    c->overall = c->have_total ? busy_percent(c->prev_total, total) : NAN;
    for (size_t i = 0; i < n; i++) {
        const double *row = rows + i * SM_CPU_ROW;
        double *out = c->out + i * SM_CORE_ROW;
        const double *before = previous_times(c, row[0], i);
        out[0] = row[0];
        out[1] = before ? busy_percent(before, row + 1) : NAN;
        out[3] = frequency(c, row[0], &out[2]);
        memcpy(out + 4, row + 1, 8 * sizeof *row);
    }
    /* This tick becomes the previous one. */
    if (n > c->prev_cap) {
        struct sm_prev *grown = realloc(c->prev, n * sizeof *grown);
        if (grown == NULL)
            return -ENOMEM;
        c->prev = grown;
        c->prev_cap = n;
    }
    c->prev_sorted = 1;
    for (size_t i = 0; i < n; i++) {
        c->prev[i].id = rows[i * SM_CPU_ROW];
        memcpy(c->prev[i].times, rows + i * SM_CPU_ROW + 1, 8 * sizeof(double));
        if (i > 0 && !(c->prev[i].id > c->prev[i - 1].id))
            c->prev_sorted = 0;
    }
    c->nprev = c->nout = n;
    memcpy(c->prev_total, total, sizeof c->prev_total);
    c->have_total = 1;
    return (long)n;
}

long sm_cpu_parse(sm_cpu *c, const char *text, size_t len, double ticks)
{
    double total[8];
    long found;
    for (;;) {
        found = sm_parse_stat(text, len, ticks, total, c->parsed, c->parsed_cap);
        if (found < 0 || (size_t)found <= c->parsed_cap)
            break;
        if (reserve(&c->parsed, &c->parsed_cap, (size_t)found, SM_CPU_ROW) < 0)
            return -ENOMEM;
    }
    if (found < 0)
        return found;
    return sm_cpu_update(c, total, c->parsed, (size_t)found);
}

/* ------------------------------------------------------------------ CPU tick as JSON */

enum { CORE_JSON_MAX = 512 }; /* keys and 11 numbers of at most 24 characters each */

static char *put_key(char *p, const char *key, double x, int *ok)
{
    size_t n = strlen(key);
    memcpy(p, key, n);
    p += n;
    int len = put_number(p, x);
    if (len < 0) {
        *ok = 0;
        return p;
    }
    return p + len;
}

long sm_cpu_json(sm_cpu *c, const double *frequency, const double *temperature, const char **out)
{
    static const char *const MODES[8] = {",\"times\":{\"user\":", ",\"nice\":", ",\"system\":", ",\"idle\":",
                                         ",\"iowait\":", ",\"irq\":", ",\"softirq\":", ",\"steal\":"};
    size_t need = c->nout * CORE_JSON_MAX + 3;
    if (need > c->json_cap) {
        char *grown = realloc(c->json, need);
        if (grown == NULL)
            return -ENOMEM;
        c->json = grown;
        c->json_cap = need;
    }
    char *p = c->json;
    int ok = 1;
    *p++ = '[';
    for (size_t i = 0; i < c->nout && ok; i++) {
        const double *row = c->out + i * SM_CORE_ROW;
        if (i > 0)
            *p++ = ',';
        if (!(row[0] >= 0 && row[0] < 1e12)) /* a CPU id put_number writes as a whole number */
            return SM_DEFER;
        memcpy(p, "{\"id\":", 6);
        p += 6;
        p += put_number(p, row[0]) - 2; /* a whole number: its digits, then drop the ".0" */
        p = put_key(p, ",\"usage\":", row[1], &ok);
        p = put_key(p, ",\"frequency\":", frequency ? frequency[i] : row[2], &ok);
        p = put_key(p, ",\"temperature\":", temperature ? temperature[i] : NAN, &ok);
        for (int m = 0; m < 8; m++)
            p = put_key(p, MODES[m], row[4 + m], &ok);
        *p++ = '}';
        *p++ = '}';
    }
    if (!ok)
        return SM_DEFER;
    *p++ = ']';
    *out = c->json;
    return (long)(p - c->json);
}
