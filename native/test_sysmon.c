/* C tests of the helper, meant to run under ASan/UBSan (make test-native-sanitize).
 *
 * Usage: test_sysmon PROC_ROOT...  Reads each tree through a reader, then feeds every prefix and
 * seeded random corruptions of each file to every parser, with inputs copied into buffers of
 * exactly their length (no terminator), so any read past the end is caught by the sanitizer.
 */
#include "sysmon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond, ...)                                           \
    do {                                                           \
        if (cond) {                                                \
            passed++;                                              \
        } else {                                                   \
            failed++;                                              \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);   \
            fprintf(stderr, __VA_ARGS__);                          \
            fputc('\n', stderr);                                   \
        }                                                          \
    } while (0)

/* Every parser on one input; row parsers twice, to check the capacity protocol. */
static void parse_all(const char *src, size_t len)
{
    char *text = malloc(len ? len : 1);
    memcpy(text, src, len);
    double total[8], loads[3];
    int64_t fields[SM_MEM_FIELDS], tasks[2], established;
    long cores = sm_parse_stat(text, len, 100.0, total, NULL, 0);
    if (cores > 0) {
        double *rows = malloc((size_t)cores * SM_CPU_ROW * sizeof *rows);
        CHECK(sm_parse_stat(text, len, 100.0, total, rows, (size_t)cores) == cores, "stat recount");
        free(rows);
    }
    long (*const row_parsers[2])(const char *, size_t, int64_t *, size_t) = {
        sm_parse_diskstats, sm_parse_net_dev};
    for (int k = 0; k < 2; k++) {
        long n = row_parsers[k](text, len, NULL, 0);
        CHECK(n >= 0 || n == SM_DEFER, "row parser %d returned %ld", k, n);
        if (n > 0) {
            int64_t *rows = malloc((size_t)n * SM_DEV_ROW * sizeof *rows);
            CHECK(row_parsers[k](text, len, rows, (size_t)n) == n, "row recount");
            for (long i = 0; i < n; i++) /* names lie inside the text */
                CHECK(rows[i * SM_DEV_ROW] >= 0
                          && rows[i * SM_DEV_ROW] + rows[i * SM_DEV_ROW + 1] <= (int64_t)len,
                      "name span");
            free(rows);
        }
    }
    int rc = sm_parse_meminfo(text, len, fields);
    CHECK(rc == 0 || rc == SM_DEFER, "meminfo rc %d", rc);
    rc = sm_parse_loadavg(text, len, loads, tasks);
    CHECK(rc == 0 || rc == SM_DEFER || rc == SM_EPARSE, "loadavg rc %d", rc);
    rc = sm_parse_tcp_established(text, len, &established);
    CHECK(rc == 0 || rc <= SM_DEFER, "snmp rc %d", rc);
    free(text);
}

static unsigned long long rng = 88172645463325252ULL;

static unsigned long long next_random(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void fuzz_text(const char *text, size_t len)
{
    size_t step = len / 300 + 1;
    for (size_t cut = 0; cut <= len; cut += step)
        parse_all(text, cut);
    char *copy = malloc(len ? len : 1);
    for (int round = 0; round < 200 && len > 0; round++) {
        memcpy(copy, text, len);
        for (int flips = 0; flips < 4; flips++)
            copy[next_random() % len] = (char)(next_random() & 0xff);
        parse_all(copy, next_random() % (len + 1));
    }
    free(copy);
}

static void read_tree(const char *root)
{
    sm_reader *r = sm_open(root);
    CHECK(r != NULL, "sm_open(%s)", root);
    for (int pass = 0; pass < 2; pass++) {
        for (int f = 0; f < SM_NFILES; f++) {
            long len = sm_read(r, f);
            if (len >= 0) {
                CHECK((long)strlen(sm_text(r, f)) <= len, "text length");
                fuzz_text(sm_text(r, f), (size_t)len);
            }
        }
        CHECK(sm_process_count(r) >= 0, "process count in %s", root);
        sm_reset(r);
    }
    CHECK(sm_read(r, SM_NFILES) < 0 && sm_read(r, -1) < 0, "bad file index refused");
    sm_close(r);
}

static void huge_trees(void)
{
    size_t cap = 1 << 22, len = 0;
    char *text = malloc(cap);
    len += (size_t)snprintf(text + len, cap - len, "cpu 1 2 3 4 5 6 7 8 9 10\n");
    for (int i = 0; i < 1024; i++)
        len += (size_t)snprintf(text + len, cap - len, "cpu%d %d 0 1 2 0 0 0 0 0 0\n", i, i);
    double total[8];
    double *rows = malloc(1024 * SM_CPU_ROW * sizeof *rows);
    CHECK(sm_parse_stat(text, len, 100.0, total, rows, 1) == 1024, "1024 cpus counted");
    CHECK(sm_parse_stat(text, len, 100.0, total, rows, 1024) == 1024, "1024 cpus read");
    CHECK(rows[1023 * SM_CPU_ROW] == 1023.0 && rows[1023 * SM_CPU_ROW + 1] == 10.23, "last cpu");
    free(rows);
    len = 0;
    for (int i = 0; i < 4096; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                " 259 %d nvme%dn1 %d 0 %d 0 %d 0 %d 0 0 0 0 0 0 0 0 0 0\n", i, i, i,
                                2 * i, 3 * i, 4 * i);
    int64_t *disks = malloc(4096 * SM_DEV_ROW * sizeof *disks);
    CHECK(sm_parse_diskstats(text, len, disks, 4096) == 4096, "4096 disks read");
    CHECK(disks[4095 * SM_DEV_ROW + 5] == 4 * 4095 * 512, "last disk's write bytes");
    free(disks);
    free(text);
}

int main(int argc, char **argv)
{
    huge_trees();
    for (int i = 1; i < argc; i++)
        read_tree(argv[i]);
    sm_reader *missing = sm_open("/nonexistent-tracklab-root");
    CHECK(sm_read(missing, SM_STAT) < 0 && sm_process_count(missing) < 0, "missing root errors");
    sm_close(missing);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
