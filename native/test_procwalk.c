/* C tests of the process walk, meant to run under ASan/UBSan (make test-native-sanitize).
 *
 * Usage: test_procwalk PROC_ROOT...  Walks each tree with buffers too small, then large enough,
 * checks every row's spans, and feeds every prefix and seeded random corruptions of each stat file
 * to the stat parser, copied into buffers of exactly their length (no terminator), so any read past
 * the end is caught by the sanitizer. The process-stats fixture tree's rows are checked exactly, as
 * are hand-written stat lines for each rule of the parser; a generated tree of 3,000 processes
 * checks the grow-and-retry protocol at size.
 */
#define _GNU_SOURCE
#include "procwalk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_check.h"

/* ------------------------------------------------------------------ the parser, rule by rule */

struct stat_case {
    const char *text;
    int rc;
    int64_t pid, ppid, cpu, threads, start, rss;
    const char *name;
    char state;
};

#define TAIL " 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 500 123456789 42 18446744073709551615 0 0\n"
/* After the state: ppid, then pgrp .. rss as TAIL has them (utime 7, stime 3, threads 4, start 500, rss 42). */
static const struct stat_case CASES[] = {
    {"10 (bash) S 1 10 10" TAIL, 0, 10, 1, 10, 4, 500, 42, "bash", 'S'},
    {"10 ((sd-pam)) S 1 10 10" TAIL, 0, 10, 1, 10, 4, 500, 42, "(sd-pam)", 'S'},
    {"10 () R 1 2 () R 9 10 10" TAIL, 0, 10, 9, 10, 4, 500, 42, ") R 1 2 (", 'R'},
    {"10 (a b\nc) Z 1 10 10" TAIL, 0, 10, 1, 10, 4, 500, 42, "a b\nc", 'Z'},
    {"10 () S 1 10 10" TAIL, 0, 10, 1, 10, 4, 500, 42, "", 'S'},
    {"10 (caf\xc3\xa9 \xff) S 1 10 10" TAIL, 0, 10, 1, 10, 4, 500, 42, "caf\xc3\xa9 \xff", 'S'},
    {" \t10\n (x) S 1 10 10" TAIL, 0, 10, 1, 10, 4, 500, 42, "x", 'S'},  /* int() strips the pid */
    {"0010 (x) S 0001 10 10" TAIL, 0, 10, 1, 10, 4, 500, 42, "x", 'S'}, /* leading zeros */
    {"10 (x)\tS\t1\t10\t10" TAIL, 0, 10, 1, 10, 4, 500, 42, "x", 'S'},
    /* exactly 22 fields after the name (state .. rss) */
    {"10 (x) S 1 10 10 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 500 123456789 42", 0, 10, 1, 10, 4, 500, 42,
     "x", 'S'},
    {"999999999999999999 (x) S 1 10 10" TAIL, 0, 999999999999999999LL, 1, 10, 4, 500, 42, "x", 'S'},
    /* past the 22nd field nothing is split or read: any bytes there */
    {"10 (x) S 1 10 10 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 500 123456789 42 \xff\r\x1c\xc2\xa0 (",
     0, 10, 1, 10, 4, 500, 42, "x", 'S'},
    /* Python raises ParseError */
    {"", PW_EPARSE, 0, 0, 0, 0, 0, 0, NULL, 0},
    {"10 bash S 1" TAIL, PW_EPARSE, 0, 0, 0, 0, 0, 0, NULL, 0},       /* no '(' */
    {"10 )bash( S 1" TAIL, PW_EPARSE, 0, 0, 0, 0, 0, 0, NULL, 0},     /* ')' before '(' */
    {"10 (x) S 1 10 10 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 500 123456789", PW_EPARSE, 0, 0, 0, 0, 0, 0,
     NULL, 0},                                                        /* 21 fields */
    {"(x) S 1 10 10" TAIL, PW_EPARSE, 0, 0, 0, 0, 0, 0, NULL, 0},      /* no pid */
    {"1 2 (x) S 1 10 10" TAIL, PW_EPARSE, 0, 0, 0, 0, 0, 0, NULL, 0},  /* int("1 2 ") */
    {"10 (x) S x 10 10" TAIL, PW_EPARSE, 0, 0, 0, 0, 0, 0, NULL, 0},   /* ppid x */
    {"+10 (x) S x 10 10" TAIL, PW_EPARSE, 0, 0, 0, 0, 0, 0, NULL, 0},  /* any error wins over a deferral */
    {"10 (x) S 1.5 10 10" TAIL, PW_EPARSE, 0, 0, 0, 0, 0, 0, NULL, 0},
    /* Python decides: signs, underscores, long numbers, a long state, other whitespace, bytes past ASCII */
    {"+10 (x) S 1 10 10" TAIL, PW_DEFER, 0, 0, 0, 0, 0, 0, NULL, 0},
    {"10 (x) S 1_0 10 10" TAIL, PW_DEFER, 0, 0, 0, 0, 0, 0, NULL, 0},
    {"10 (x) S -1 10 10" TAIL, PW_DEFER, 0, 0, 0, 0, 0, 0, NULL, 0},
    {"1000000000000000000 (x) S 1 10 10" TAIL, PW_DEFER, 0, 0, 0, 0, 0, 0, NULL, 0},
    {"10 (x) S+ 1 10 10" TAIL, PW_DEFER, 0, 0, 0, 0, 0, 0, NULL, 0},
    {"10 (x) S\r1 10 10" TAIL, PW_DEFER, 0, 0, 0, 0, 0, 0, NULL, 0},
    {"10 (x) S\x1c" "1 10 10" TAIL, PW_DEFER, 0, 0, 0, 0, 0, 0, NULL, 0},
    {"10 (x) S\xc2\xa0" "1 10 10" TAIL, PW_DEFER, 0, 0, 0, 0, 0, 0, NULL, 0},
    {"\xd9\xa1 (x) S 1 10 10" TAIL, PW_DEFER, 0, 0, 0, 0, 0, 0, NULL, 0},
    /* ... but the byte that ends the 22nd field is Python's to judge when it is other whitespace */
    {"10 (x) S 1 10 10 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 500 123456789 42\xc2\xa0" "0", PW_DEFER, 0, 0, 0, 0,
     0, 0, NULL, 0},
    {"10 (x) S 1 10 10 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 4 0 500 123456789 42\x1c" "0", PW_DEFER, 0, 0, 0, 0, 0, 0,
     NULL, 0},
};

static int parse_copy(const char *text, size_t len, int64_t *fields)
{
    char *copy = malloc(len ? len : 1); /* exactly len bytes: no terminator to lean on */
    memcpy(copy, text, len);
    int rc = pw_parse_stat(copy, len, fields);
    free(copy);
    return rc;
}

static void check_cases(void)
{
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const struct stat_case *c = &CASES[i];
        int64_t f[PW_FIELDS] = {0};
        size_t len = strlen(c->text);
        int rc = parse_copy(c->text, len, f);
        CHECK(rc == c->rc, "case %zu: rc %d, want %d", i, rc, c->rc);
        if (rc != 0 || c->rc != 0)
            continue;
        CHECK(f[PW_F_PID] == c->pid && f[PW_F_PPID] == c->ppid && f[PW_F_CPU_TICKS] == c->cpu
                  && f[PW_F_THREADS] == c->threads && f[PW_F_START_TICKS] == c->start
                  && f[PW_F_RSS_PAGES] == c->rss && f[PW_F_STATE] == c->state,
              "case %zu: fields %lld %lld %lld %lld %lld %lld %c", i, (long long)f[PW_F_PID],
              (long long)f[PW_F_PPID], (long long)f[PW_F_CPU_TICKS], (long long)f[PW_F_THREADS],
              (long long)f[PW_F_START_TICKS], (long long)f[PW_F_RSS_PAGES], (char)f[PW_F_STATE]);
        CHECK((size_t)f[PW_F_NAME_LEN] == strlen(c->name)
                  && memcmp(c->text + f[PW_F_NAME_AT], c->name, strlen(c->name)) == 0,
              "case %zu: name", i);
    }
}

/* ------------------------------------------------------------------ memory safety of the parser */

static unsigned long long rng = 88172645463325252ULL;

static unsigned long long next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void parse_checked(const char *text, size_t len)
{
    int64_t f[PW_FIELDS];
    int rc = parse_copy(text, len, f);
    CHECK(rc == 0 || rc == PW_DEFER || rc == PW_EPARSE, "stat rc %d", rc);
    if (rc == 0)
        CHECK(f[PW_F_NAME_AT] >= 1 && f[PW_F_NAME_LEN] >= 0 && f[PW_F_NAME_AT] + f[PW_F_NAME_LEN] < (int64_t)len
                  && f[PW_F_STATE] > 0x20 && f[PW_F_STATE] < 0x7f,
              "name span %lld+%lld of %zu, state %lld", (long long)f[PW_F_NAME_AT], (long long)f[PW_F_NAME_LEN],
              len, (long long)f[PW_F_STATE]);
}

static void fuzz_text(const char *text, size_t len)
{
    for (size_t cut = 0; cut <= len; cut += len / 200 + 1)
        parse_checked(text, cut);
    char *copy = malloc(len ? len : 1);
    for (int round = 0; round < 100 && len > 0; round++) {
        memcpy(copy, text, len);
        for (int flips = 0; flips < 3; flips++)
            copy[next_random() % len] = (char)(next_random() & 0xff);
        parse_checked(copy, next_random() % (len + 1));
    }
    free(copy);
}

/* Every all-digit entry's stat, read as the walk reads it (one read of PW_READ_BYTES), fuzzed. */
static void fuzz_tree(const char *root)
{
    DIR *dir = opendir(root);
    if (dir == NULL)
        return;
    static char text[PW_READ_BYTES];
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/stat", root, e->d_name);
        int fd = open(path, O_RDONLY | O_NONBLOCK);
        if (fd < 0)
            continue;
        ssize_t n = read(fd, text, sizeof text);
        close(fd);
        if (n > 0)
            fuzz_text(text, (size_t)n);
    }
    closedir(dir);
}

/* ------------------------------------------------------------------ walks */

struct walk {
    pw_buffers b;
    long found;
};

static void free_walk(struct walk *w)
{
    free(w->b.rows);
    free(w->b.states);
    free(w->b.names);
    free(w->b.raw);
}

/* A walk into buffers of the given sizes (malloc'ed to exactly that, so an overrun is caught). */
static struct walk walk_into(pw_walker *walker, size_t rows, size_t names, size_t raw)
{
    struct walk w = {{0}, 0};
    w.b.capacity = rows;
    w.b.rows = rows ? malloc(rows * PW_COLUMNS * sizeof *w.b.rows) : NULL;
    w.b.states = rows ? malloc(rows) : NULL;
    w.b.names_cap = names;
    w.b.names = names ? malloc(names) : NULL;
    w.b.raw_cap = raw;
    w.b.raw = raw ? malloc(raw) : NULL;
    w.found = pw_walk(walker, &w.b);
    return w;
}

static int fits(const struct walk *w)
{
    return w->found >= 0 && (size_t)w->found <= w->b.capacity && w->b.names_used <= w->b.names_cap
           && w->b.raw_used <= w->b.raw_cap;
}

/* The rows of a walk that fit: kinds, spans and names consistent with what the walk says it used. */
static void check_rows(const struct walk *w, const char *root)
{
    size_t cap = w->b.capacity, nuls = 0, deferred = 0;
    for (size_t i = 0; i < w->b.names_used; i++)
        nuls += w->b.names[i] == '\0';
    CHECK(nuls == (size_t)w->found, "%s: %zu names for %ld rows", root, nuls, w->found);
    for (long i = 0; i < w->found; i++) {
        int64_t kind = w->b.rows[PW_KIND * cap + (size_t)i];
        int64_t at = w->b.rows[PW_RAW_AT * cap + (size_t)i], len = w->b.rows[PW_RAW_LEN * cap + (size_t)i];
        CHECK(kind == PW_PARSED || kind == PW_DEFERRED_STAT || kind == PW_DEFERRED_ENTRY, "%s: kind %lld", root,
              (long long)kind);
        if (kind == PW_PARSED) {
            char state = w->b.states[i];
            CHECK(state > 0x20 && state < 0x7f, "%s: state %d", root, state);
        } else {
            deferred++;
            CHECK(at >= 0 && len >= 0 && (size_t)(at + len) <= w->b.raw_used, "%s: raw span", root);
        }
    }
    CHECK(deferred == w->b.deferred, "%s: %zu deferred rows, the walk says %zu", root, deferred, w->b.deferred);
}

/* The row of `pid` among a walk's parsed rows, with its name; -1 when absent. */
static long row_of(const struct walk *w, int64_t pid, const char **name)
{
    const char *n = w->b.names;
    for (long i = 0; i < w->found; i++) {
        if (w->b.rows[PW_KIND * w->b.capacity + (size_t)i] == PW_PARSED
            && w->b.rows[PW_PID * w->b.capacity + (size_t)i] == pid) {
            *name = n;
            return i;
        }
        n += strlen(n) + 1;
    }
    return -1;
}

struct expected_row {
    int64_t pid;
    const char *name;
    char state;
    int64_t ppid, cpu, threads, start, rss;
};

/* tests/fixtures/process-stats/README.md: the rows C parses itself (4261 twice; 4262 says pid 4261). */
static const struct expected_row PROCESS_STATS[] = {
    {1, "process_api", 'S', 0, 85, 12, 6, 3020},
    {2, "kthreadd", 'S', 0, 0, 1, 6, 0},
    {880, "(sd-pam)", 'S', 879, 3, 1, 2500, 1200},
    {4242, ") R 1 2 (", 'R', 1, 57000, 9, 123456, 65536},
    {4243, "caf\xc3\xa9 \xe2\x98\x95", 'S', 4242, 7, 1, 123460, 512},
    {4244, "bad\xff\xfe\xe2\x82", 'S', 4242, 0, 1, 123461, 300},
    {4245, "", 'S', 1, 0, 1, 2000, 0},
    {4246, "a\nb", 'S', 4242, 0, 1, 123462, 10},
    {4247, "defunct", 'Z', 4242, 15, 1, 123463, 0},
    {4248, "trainer", 'R', 4242, 1111111110, 64, 123470, 4194304},
    {4257, "long", 'S', 1, 11, 1, 3003, 77}, /* the second ')' lies past the 16 KiB read */
    {4259, "spaced", 'S', 1, 0, 1, 3005, 256},
};
enum { PROCESS_STATS_FOUND = 20, PROCESS_STATS_PARSED = 14, PROCESS_STATS_DEFERRED = 6 };

static void check_process_stats(const struct walk *w)
{
    CHECK(w->found == PROCESS_STATS_FOUND && w->b.deferred == PROCESS_STATS_DEFERRED,
          "process-stats: %ld rows, %zu deferred", w->found, w->b.deferred);
    for (size_t k = 0; k < sizeof PROCESS_STATS / sizeof PROCESS_STATS[0]; k++) {
        const struct expected_row *x = &PROCESS_STATS[k];
        const char *name = NULL;
        long i = row_of(w, x->pid, &name);
        CHECK(i >= 0, "process-stats: no parsed row for pid %lld", (long long)x->pid);
        if (i < 0)
            continue;
        size_t cap = w->b.capacity;
        const int64_t *r = w->b.rows;
        CHECK(strcmp(name, x->name) == 0 && w->b.states[i] == x->state && r[PW_PPID * cap + (size_t)i] == x->ppid
                  && r[PW_CPU_TICKS * cap + (size_t)i] == x->cpu && r[PW_THREADS * cap + (size_t)i] == x->threads
                  && r[PW_START_TICKS * cap + (size_t)i] == x->start && r[PW_RSS_PAGES * cap + (size_t)i] == x->rss,
              "process-stats: pid %lld", (long long)x->pid);
    }
    long parsed = 0;
    for (long i = 0; i < w->found; i++)
        parsed += w->b.rows[PW_KIND * w->b.capacity + (size_t)i] == PW_PARSED;
    CHECK(parsed == PROCESS_STATS_PARSED, "process-stats: %ld parsed rows", parsed);
}

static void walk_tree(const char *root)
{
    int live = strstr(root, "fixtures/") == NULL; /* a live /proc changes between two walks */
    pw_walker *walker = pw_open(root);
    CHECK(walker != NULL, "pw_open(%s)", root);
    struct walk sizing = walk_into(walker, 0, 0, 0); /* nothing fits: only counts */
    CHECK(sizing.found >= 0, "%s: walk %ld", root, sizing.found);
    size_t slack = live ? 2 : 1;
    for (int attempt = 0; attempt < 5 && sizing.found >= 0; attempt++) {
        struct walk w = walk_into(walker, (size_t)sizing.found * slack + (live ? 64 : 0),
                                  sizing.b.names_used * slack + (live ? 4096 : 0),
                                  sizing.b.raw_used * slack + (live ? 4096 : 0));
        if (!fits(&w) && live) { /* grew meanwhile: size again */
            free_walk(&sizing);
            sizing = w;
            continue;
        }
        CHECK(fits(&w), "%s: a walk into the sizes it asked for does not fit", root);
        if (!live)
            CHECK(w.found == sizing.found && w.b.names_used == sizing.b.names_used
                      && w.b.raw_used == sizing.b.raw_used && w.b.deferred == sizing.b.deferred,
                  "%s: the sizing walk and the real one differ", root);
        if (fits(&w))
            check_rows(&w, root);
        if (strstr(root, "fixtures/process-stats/") != NULL)
            check_process_stats(&w);
        if (live)
            CHECK(w.b.deferred == 0, "%s: kernel text handed back (%zu rows)", root, w.b.deferred);
        free_walk(&w);
        break;
    }
    free_walk(&sizing);
    pw_reset(walker);
    struct walk again = walk_into(walker, 1, 1, 1); /* after a reset the descriptor is opened again */
    CHECK(again.found >= 0, "%s: walk after reset %ld", root, again.found);
    free_walk(&again);
    pw_close(walker);
    fuzz_tree(root);
}

/* ------------------------------------------------------------------ a generated tree and errors */

static void big_tree(void)
{
    char root[] = "/tmp/test_procwalk-XXXXXX";
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    enum { N = 3000 };
    char path[256];
    for (int pid = 1; pid <= N; pid++) {
        snprintf(path, sizeof path, "%s/%d", root, pid);
        mkdir(path, 0755);
        snprintf(path, sizeof path, "%s/%d/stat", root, pid);
        FILE *f = fopen(path, "w");
        fprintf(f, "%d (w) (%d) S %d 1 1 0 -1 0 0 0 0 0 %d 1 0 0 20 0 %d 0 %d 0 %d 0\n", pid, pid, pid / 2, pid, 1 + pid % 7,
                pid * 3, pid * 5);
        fclose(f);
    }
    pw_walker *walker = pw_open(root);
    struct walk small = walk_into(walker, 1, 16, 1);
    CHECK(small.found == N && small.b.names_used > 16, "big tree: %ld rows counted", small.found);
    struct walk w = walk_into(walker, N, small.b.names_used, 1);
    CHECK(fits(&w) && w.found == N && w.b.deferred == 0, "big tree: %ld rows read", w.found);
    const char *name = NULL;
    long i = row_of(&w, N, &name);
    CHECK(i >= 0 && name != NULL && strcmp(name, "w) (3000") == 0 && w.b.rows[PW_CPU_TICKS * N + (size_t)i] == N + 1
              && w.b.rows[PW_THREADS * N + (size_t)i] == 1 + N % 7 && w.b.rows[PW_RSS_PAGES * N + (size_t)i] == N * 5,
          "big tree: the last process's row");
    free_walk(&small);
    free_walk(&w);
    pw_close(walker);
    for (int pid = 1; pid <= N; pid++) {
        snprintf(path, sizeof path, "%s/%d/stat", root, pid);
        unlink(path);
        snprintf(path, sizeof path, "%s/%d", root, pid);
        rmdir(path);
    }
    rmdir(root);
}

static void errors(void)
{
    pw_walker *missing = pw_open("/nonexistent-tracklab-root");
    struct walk w = walk_into(missing, 0, 0, 0);
    CHECK(w.found == -ENOENT, "missing root: %ld", w.found);
    pw_close(missing);
    pw_walker *file = pw_open("/dev/null");
    w = walk_into(file, 0, 0, 0);
    CHECK(w.found == -ENOTDIR, "a file as root: %ld", w.found);
    pw_close(file);
    pw_close(NULL);
}

int main(int argc, char **argv)
{
    check_cases();
    big_tree();
    errors();
    int saw_process_stats = 0;
    for (int i = 1; i < argc; i++) {
        walk_tree(argv[i]);
        saw_process_stats |= strstr(argv[i], "fixtures/process-stats/") != NULL;
    }
    CHECK(saw_process_stats, "the process-stats fixture tree was not among the roots");
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
