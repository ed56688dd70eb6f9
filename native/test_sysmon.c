/* C tests of the helper, meant to run under ASan/UBSan (make test-native-sanitize).
 *
 * Usage: test_sysmon PROC_ROOT...  Reads each tree through a reader, then feeds every prefix and
 * seeded random corruptions of each file to every parser, with inputs copied into buffers of
 * exactly their length (no terminator), so any read past the end is caught by the sanitizer.
 * Each fixture tree (a root under a `fixtures/` folder) with every hot-path file must also have an
 * entry in TREES, whose values are checked exactly; every entry must be checked once.
 */
#include "devices.h"
#include "sysmon.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_check.h"

/* The CPU tick on one input, against whatever the inputs before it left as the previous tick:
 * every row it reports is read whole (the sanitizer catches a short buffer). */
static sm_cpu *fuzz_cpu;

static void cpu_tick_all(const char *text, size_t len)
{
    long n = sm_cpu_parse(fuzz_cpu, text, len, 100.0);
    CHECK(n >= 0 || n == SM_DEFER || n == SM_EPARSE, "cpu tick returned %ld", n);
    const double *rows = sm_cpu_rows(fuzz_cpu);
    for (long i = 0; i < n; i++) {
        const double *row = rows + i * SM_CORE_ROW;
        CHECK(isnan(row[1]) || (row[1] >= 0 && row[1] <= 100), "usage %f in 0-100", row[1]);
        CHECK(row[3] == SM_FREQ_READ || row[3] == SM_FREQ_NONE || row[3] == SM_FREQ_DEFER, "source");
    }
    const char *json = NULL;
    long length = sm_cpu_json(fuzz_cpu, NULL, NULL, &json);
    CHECK(length == SM_DEFER || (length >= 2 && json[0] == '[' && json[length - 1] == ']'), "cores json");
}

/* Both device tables on one input, against whatever the inputs before left as the last tick:
 * every other row selected when the names change, each rated row and the JSON read whole. */
static sm_devs *fuzz_devs[2];
static double fuzz_now;

static void devs_tick_all(const char *text, size_t len)
{
    for (int k = 0; k < 2; k++) {
        long n = sm_devs_parse(fuzz_devs[k], text, len);
        CHECK(n >= 0 || n == SM_DEFER, "device parse returned %ld", n);
        if (n < 0)
            continue;
        if (sm_devs_changed(fuzz_devs[k])) {
            uint8_t *wanted = malloc((size_t)n + 1);
            const int64_t *spans;
            const char *names = sm_devs_names(fuzz_devs[k], &spans);
            for (long i = 0; i < n; i++) {
                wanted[i] = (uint8_t)(i % 2 == 0);
                CHECK(memchr(names + spans[2 * i], '\n', (size_t)spans[2 * i + 1]) == NULL, "name span");
            }
            CHECK(sm_devs_select(fuzz_devs[k], wanted) == (n + 1) / 2, "selected every other row");
            free(wanted);
        }
        fuzz_now += 0.5;
        long m = sm_devs_rate(fuzz_devs[k], fuzz_now);
        CHECK(m >= 0 && m <= n, "rated %ld of %ld rows", m, n);
        const double *rates = sm_devs_rates(fuzz_devs[k]);
        for (long i = 0; i < m * SM_DEVS_RATES; i++)
            CHECK(isnan(rates[i]) || rates[i] >= 0, "rate %f", rates[i]);
        const char *json = NULL;
        long length = sm_devs_json(fuzz_devs[k], &json);
        CHECK(length == SM_DEFER || (length >= 2 && json[0] == '[' && json[length - 1] == ']'), "devices json");
    }
}

/* Exact values: a disk whose counters advance, a dip, a 64-bit wrap, hot-plug and a repeated name. */
static void device_values(void)
{
    sm_devs *disks = sm_devs_open(SM_DISKSTATS);
    const char *first = "8 0 sda 100 0 8 0 50 0 16 0 0 0 0\n8 1 sda1 1 0 1 0 1 0 1 0 0 0 0\n";
    const char *json;
    CHECK(sm_devs_parse(disks, first, strlen(first)) == 2 && sm_devs_changed(disks), "first parse");
    CHECK(sm_devs_select(disks, (const uint8_t *)"\1\0") == 1, "whole disk only");
    CHECK(sm_devs_rate(disks, 10.0) == 1 && sm_devs_rates(disks)[0] == 0.0, "first sight rates 0");
    const char *second = "8 0 sda 110 0 24 0 70 0 16 0 0 0 0\n8 1 sda1 1 0 1 0 1 0 1 0 0 0 0\n";
    CHECK(sm_devs_parse(disks, second, strlen(second)) == 2 && !sm_devs_changed(disks), "same names");
    CHECK(sm_devs_rate(disks, 12.0) == 1, "rated");
    const double *r = sm_devs_rates(disks);
    /* 16 sectors (8 KiB) read and 30 IOs over 2 s */
    CHECK(r[0] == 4096.0 && r[1] == 0.0 && r[2] == 15.0 && isnan(r[3]), "rates %f %f %f", r[0], r[1], r[2]);
    CHECK(sm_devs_counters(disks)[0] == 24 * 512 && sm_devs_counters(disks)[2] == 110, "wire order");
    CHECK(sm_devs_totals(disks)[0] == 4096.0 && sm_devs_totals(disks)[2] == 15.0, "totals");
    long length = sm_devs_json(disks, &json);
    const char *want = "[{\"name\":\"sda\",\"readBytes\":12288,\"writeBytes\":8192,\"reads\":110,"
                       "\"writes\":70,\"readRate\":4096.0,\"writeRate\":0.0,\"iops\":15.0}]";
    CHECK(length == (long)strlen(want) && memcmp(json, want, strlen(want)) == 0, "json %.*s", (int)length, json);
    /* Hot-plug with a repeated name: sdb twice shares its counters, sda keeps its baselines. */
    const char *third = "8 16 sdb 5 0 0 0 0 0 0 0 0 0 0\n8 0 sda 120 0 24 0 70 0 16 0 0 0 0\n"
                        "8 16 sdb 9 0 0 0 0 0 0 0 0 0 0\n";
    CHECK(sm_devs_parse(disks, third, strlen(third)) == 3 && sm_devs_changed(disks), "changed");
    CHECK(sm_devs_select(disks, (const uint8_t *)"\1\1\1") == 3, "three rows");
    CHECK(sm_devs_rate(disks, 13.0) == 3, "rated three");
    r = sm_devs_rates(disks);
    /* sdb at first sight 0; sda 10 reads over 1 s; sdb again: its counters already read at 13.0, so
     * no time has passed (0, as CounterRates gives for one key rated twice in a tick) */
    CHECK(r[2] == 0.0 && r[SM_DEVS_RATES + 2] == 10.0 && r[2 * SM_DEVS_RATES + 2] == 0.0,
          "iops %f %f %f", r[2], r[SM_DEVS_RATES + 2], r[2 * SM_DEVS_RATES + 2]);
    sm_devs_close(disks);

    /* A 64-bit wrap on an interface loaded from Python-parsed rows: rated from the low baseline. */
    sm_devs *nets = sm_devs_open(SM_NET_DEV);
    const int64_t spans[2] = {0, 4};
    uint64_t before[4] = {UINT64_MAX - 10, 1, 2, 3}, after[4] = {40, 1, 2, 3}, later[4] = {100, 1, 2, 3};
    const uint8_t valid[4] = {1, 1, 1, 1};
    CHECK(sm_devs_load(nets, "eth0", spans, before, valid, 1) == 1, "load");
    CHECK(sm_devs_select(nets, (const uint8_t *)"\1") == 1 && sm_devs_rate(nets, 1.0) == 1, "first");
    sm_devs_load(nets, "eth0", spans, after, valid, 1);
    CHECK(sm_devs_rate(nets, 2.0) == 1 && sm_devs_rates(nets)[0] == 0.0, "the drop rates 0");
    sm_devs_load(nets, "eth0", spans, later, valid, 1);
    CHECK(sm_devs_rate(nets, 3.0) == 1 && sm_devs_rates(nets)[0] == 30.0, "from 40 over 2 s: %f",
          sm_devs_rates(nets)[0]);
    sm_devs_close(nets);
    CHECK(sm_devs_open(SM_STAT) == NULL, "only diskstats and net/dev");
}

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
    cpu_tick_all(text, len);
    devs_tick_all(text, len);
    free(text);
}

/* ------------------------------------------------------------------ values of the fixture trees */

/* Numbers copied from each tree's files in their own units (clock ticks, kB, sectors), so the
 * checks below also prove the helper's conversions (ticks / 100, kB * 1024, sectors * 512). */
struct tree_values {
    const char *tree;                 /* tests/fixtures/<tree>/proc */
    long cores, processes;            /* cpuN lines in stat; all-digit entries of the root */
    double total[8];                  /* stat: the aggregate `cpu` line, ticks */
    long core_id;                     /* stat: the last cpuN line ... */
    double core[8];                   /* ... and its ticks */
    int64_t mem_kb[4];                /* meminfo: MemTotal, available, SwapTotal, SwapFree (kB) */
    double loads[3];                  /* loadavg */
    int64_t tasks[2];                 /* loadavg: running / threads */
    long disks;                       /* diskstats: lines of 7 or at least 14 fields */
    const char *disk;                 /* diskstats: reads, sectors read, writes, sectors written */
    int64_t disk_raw[4];
    long interfaces;                  /* net/dev */
    const char *interface;            /* net/dev: rx bytes, rx packets, tx bytes, tx packets */
    int64_t interface_raw[4];
    int64_t established;              /* net/snmp: Tcp CurrEstab */
    int checked;
};

static struct tree_values TREES[] = {
    {"amd-desktop", 4, 1, {4000, 0, 1000, 36000, 400, 0, 100, 0},
     3, {1000, 0, 250, 9000, 100, 0, 25, 0},
     {16384000, 12288000, 0, 0}, {0.50, 0.40, 0.30}, {1, 420},
     4, "nvme0n1", {8000, 160000, 4000, 80000}, 2, "enp5s0", {4000000, 4000, 800000, 2000}, 4, 0},
    {"arm-board", 4, 2, {2000, 40, 600, 17000, 300, 0, 60, 0},
     3, {500, 10, 150, 4250, 75, 0, 15, 0},
     {3884096, 3500000, 102396, 102396}, {0.00, 0.01, 0.05}, {1, 120},
     4, "mmcblk0", {4000, 120000, 1000, 24000}, 2, "eth0", {600000, 900, 120000, 300}, 1, 0},
    {"cli-tree", 2, 3, {1000, 20, 300, 5000, 40, 0, 10, 0},
     1, {400, 10, 150, 2500, 20, 0, 5, 0},
     {8000000, 6000000, 2000000, 1500000}, {0.50, 0.25, 0.10}, {2, 345},
     3, "sda", {1000, 20000, 2000, 40000}, 2, "eth0", {123456789, 98765, 987654321, 54321}, 7, 0},
    /* 2.6-era: seven cpu columns (no steal), no MemAvailable (MemFree + Buffers + Cached), and a
     * 7-field partition line in diskstats. */
    {"old-kernel", 2, 2, {3000, 100, 900, 20000, 500, 30, 70, 0},
     1, {1500, 50, 450, 10000, 250, 15, 35, 0},
     {2075084, 500000 + 100000 + 700000, 4192956, 4192956}, {1.00, 0.50, 0.25}, {2, 180},
     9, "hda2", {410700, 9512490, 424800, 5884000}, 2, "eth0", {4294967295, 3000000, 123456789, 2000000},
     6, 0},
    {"rpi3-bcm2835", 4, 1, {4000, 80, 1200, 34000, 600, 0, 120, 0},
     3, {1000, 20, 300, 8500, 150, 0, 30, 0},
     {948280, 700000, 102396, 102396}, {0.50, 0.40, 0.30}, {1, 120},
     3, "mmcblk0", {6000, 180000, 2000, 48000}, 2, "eth0", {600000, 900, 120000, 300}, 1, 0},
    {"vm-capture", 2, 2, {9144, 0, 1800, 119651, 253, 0, 93, 9},
     1, {5259, 0, 985, 59067, 118, 0, 57, 5},
     {24731708, 24361516, 0, 0}, {0.07, 0.09, 0.06}, {1, 90},
     10, "vda", {27068, 1717778, 8057, 2705016}, 4, "eth0", {247666541, 7717, 433330, 5143}, 0, 0},
    {"workstation", 8, 3, {80000, 800, 16000, 640000, 4000, 400, 1200, 80},
     7, {10000, 100, 2000, 80000, 500, 50, 150, 10},
     {32768000, 20480000, 8388608, 6291456}, {2.50, 2.10, 1.80}, {3, 1500},
     14, "cciss/c0d0p1", {300, 6000, 100, 2000}, 4, "wlan0", {700000, 7000, 140000, 1400}, 17, 0},
};
enum { NTREES = sizeof TREES / sizeof TREES[0], TICKS = 100 };

/* The fixture tree a root names (".../fixtures/<tree>/proc"), or NULL for any other root. */
static struct tree_values *tree_of(const char *root)
{
    const char *at = NULL;
    for (const char *p = strstr(root, "fixtures/"); p != NULL; p = strstr(p + 1, "fixtures/"))
        at = p + strlen("fixtures/"); /* the last one: a checkout may sit under another `fixtures` */
    if (at == NULL)
        return NULL;
    size_t n = strcspn(at, "/");
    for (int i = 0; i < NTREES; i++)
        if (strlen(TREES[i].tree) == n && strncmp(TREES[i].tree, at, n) == 0)
            return &TREES[i];
    /* A tree made for other collectors (cgroup files, a sandbox without net/dev) gets the memory-safety
     * checks only; one with every hot-path file must have its values here. */
    static const char *const files[] = {"stat", "meminfo", "loadavg", "diskstats", "net/dev", "net/snmp"};
    int complete = 1;
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", root, files[k]);
        complete &= access(path, R_OK) == 0;
    }
    CHECK(!complete, "no expected values for fixture root %s: add it to TREES", root);
    return NULL;
}

/* The row named `name` among `n` rows of `text` (row layout: name offset, name length, ...). */
static const int64_t *row_named(const int64_t *rows, long n, const char *text, const char *name)
{
    for (long i = 0; i < n; i++) {
        const int64_t *row = rows + i * SM_DEV_ROW;
        if ((size_t)row[1] == strlen(name) && memcmp(text + row[0], name, (size_t)row[1]) == 0)
            return row;
    }
    return NULL;
}

static void check_stat(sm_reader *r, const struct tree_values *x)
{
    double total[8], *cores = malloc((size_t)x->cores * SM_CPU_ROW * sizeof *cores);
    long len = sm_read(r, SM_STAT);
    long n = sm_parse_stat(sm_text(r, SM_STAT), (size_t)len, TICKS, total, cores, (size_t)x->cores);
    CHECK(n == x->cores, "%s: %ld cpu rows, want %ld", x->tree, n, x->cores);
    for (int k = 0; k < 8; k++)
        CHECK(total[k] == x->total[k] / TICKS, "%s: stat total[%d] %g", x->tree, k, total[k]);
    const double *core = cores + (x->cores - 1) * SM_CPU_ROW;
    CHECK(n == x->cores && core[0] == (double)x->core_id, "%s: last core id %g", x->tree, core[0]);
    for (int k = 0; k < 8 && n == x->cores; k++)
        CHECK(core[k + 1] == x->core[k] / TICKS, "%s: cpu%ld[%d] %g", x->tree, x->core_id, k, core[k + 1]);
    free(cores);
}

static void check_meminfo_loadavg_snmp(sm_reader *r, const struct tree_values *x)
{
    int64_t mem[SM_MEM_FIELDS], tasks[2], established = -1;
    long len = sm_read(r, SM_MEMINFO);
    CHECK(sm_parse_meminfo(sm_text(r, SM_MEMINFO), (size_t)len, mem) == 0, "%s: meminfo", x->tree);
    for (int k = 0; k < SM_MEM_FIELDS; k++)
        CHECK(mem[k] == x->mem_kb[k] * 1024, "%s: meminfo field %d = %lld", x->tree, k, (long long)mem[k]);
    double loads[3];
    len = sm_read(r, SM_LOADAVG);
    CHECK(sm_parse_loadavg(sm_text(r, SM_LOADAVG), (size_t)len, loads, tasks) == 0, "%s: loadavg", x->tree);
    for (int k = 0; k < 3; k++)
        CHECK(loads[k] == x->loads[k], "%s: load %d = %g", x->tree, k, loads[k]);
    CHECK(tasks[0] == x->tasks[0] && tasks[1] == x->tasks[1], "%s: tasks %lld/%lld", x->tree,
          (long long)tasks[0], (long long)tasks[1]);
    len = sm_read(r, SM_SNMP);
    CHECK(sm_parse_tcp_established(sm_text(r, SM_SNMP), (size_t)len, &established) == 0
              && established == x->established,
          "%s: CurrEstab %lld", x->tree, (long long)established);
}

/* One row file: the row count and the named row's four counters (`scale` per column). */
static void check_rows(sm_reader *r, int file, long (*parse)(const char *, size_t, int64_t *, size_t),
                       long want, const char *name, const int64_t *raw, const int64_t *scale,
                       const char *tree)
{
    int64_t *rows = malloc((size_t)want * SM_DEV_ROW * sizeof *rows);
    long len = sm_read(r, file);
    const char *text = sm_text(r, file);
    long n = parse(text, (size_t)len, rows, (size_t)want);
    CHECK(n == want, "%s: file %d has %ld rows, want %ld", tree, file, n, want);
    const int64_t *row = n == want ? row_named(rows, n, text, name) : NULL;
    CHECK(row != NULL, "%s: no row named %s", tree, name);
    for (int k = 0; k < 4 && row != NULL; k++)
        CHECK(row[k + 2] == raw[k] * scale[k], "%s: %s column %d = %lld", tree, name, k, (long long)row[k + 2]);
    free(rows);
}

static void check_values(const char *root, struct tree_values *x)
{
    static const int64_t SECTORS[4] = {1, 512, 1, 512}, PLAIN[4] = {1, 1, 1, 1};
    sm_reader *r = sm_open(root);
    check_stat(r, x);
    check_meminfo_loadavg_snmp(r, x);
    check_rows(r, SM_DISKSTATS, sm_parse_diskstats, x->disks, x->disk, x->disk_raw, SECTORS, x->tree);
    check_rows(r, SM_NET_DEV, sm_parse_net_dev, x->interfaces, x->interface, x->interface_raw, PLAIN, x->tree);
    CHECK(sm_process_count(r) == x->processes, "%s: process count", x->tree);
    sm_close(r);
    x->checked++;
}

/* ------------------------------------------------------------------ memory safety */

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

/* ------------------------------------------------------------------ CPU tick values */

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "create %s", path);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void make_freq(const char *sys, int cpu, const char *name, const char *text)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/devices", sys);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/devices/system", sys);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/devices/system/cpu", sys);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/devices/system/cpu/cpu%d", sys, cpu);
    mkdir(dir, 0700);
    snprintf(dir, sizeof dir, "%s/devices/system/cpu/cpu%d/cpufreq", sys, cpu);
    mkdir(dir, 0700);
    write_file(dir, name, text);
}

/* Two ticks with exact binary times: usage per core (a tie rounds half to even, as Python's round),
 * a core seen first on the second tick, lines reordered, and each kind of cpufreq source. */
static void cpu_tick_values(void)
{
    char sys[] = "/tmp/tracklab-sysmon-cputick-XXXXXX";
    CHECK(mkdtemp(sys) != NULL, "mkdtemp");
    make_freq(sys, 0, "scaling_cur_freq", "2400000\n");
    make_freq(sys, 1, "cpuinfo_cur_freq", "1800500\n");
    make_freq(sys, 2, "scaling_cur_freq", "+3000000\n"); /* Python's int() reads it; C defers */
    sm_cpu *cpu = sm_cpu_open(sys);
    const char *first = "cpu 0 0 0 0\ncpu0 0 0 0 0\ncpu1 0 0 0 0\ncpu2 0 0 0 0\n";
    CHECK(sm_cpu_parse(cpu, first, strlen(first), 100.0) == 3, "first tick: 3 cpus");
    CHECK(isnan(sm_cpu_overall(cpu)) && isnan(sm_cpu_rows(cpu)[1]), "no usage at first sight");
    const char *second = "cpu 175 0 0 59825\ncpu2 25 0 0 19975\ncpu1 125 0 0 19875\ncpu0 25 0 0 75\n"
                         "cpu3 1 0 0 1\n";
    CHECK(sm_cpu_parse(cpu, second, strlen(second), 100.0) == 4, "second tick: 4 cpus");
    const double *rows = sm_cpu_rows(cpu);
    const double want_usage[4] = {0.12, 0.62, 25.0, NAN}; /* cpu2, cpu1, cpu0, cpu3 (new) */
    const double want_id[4] = {2, 1, 0, 3};
    const double want_source[4] = {SM_FREQ_DEFER, SM_FREQ_READ, SM_FREQ_READ, SM_FREQ_NONE};
    for (int i = 0; i < 4; i++) {
        const double *row = rows + i * SM_CORE_ROW;
        CHECK(row[0] == want_id[i], "row %d id %f", i, row[0]);
        CHECK(isnan(want_usage[i]) ? isnan(row[1]) : row[1] == want_usage[i], "row %d usage %.17g", i, row[1]);
        CHECK(row[3] == want_source[i], "row %d source %f", i, row[3]);
    }
    CHECK(rows[1 * SM_CORE_ROW + 2] == 1800.5 && rows[2 * SM_CORE_ROW + 2] == 2400.0, "MHz from kHz");
    CHECK(rows[2 * SM_CORE_ROW + 4] == 0.25 && rows[2 * SM_CORE_ROW + 7] == 0.75, "cpu0 times in seconds");
    CHECK(sm_cpu_overall(cpu) == 0.29, "overall %.17g", sm_cpu_overall(cpu)); /* 1.75 of 600 s */
    CHECK(sm_cpu_total(cpu)[3] == 598.25, "aggregate idle");
    const double temperature[4] = {41.5, NAN, -0.125, 0};
    const char *json = NULL;
    long length = sm_cpu_json(cpu, NULL, temperature, &json);
    const char *want = "{\"id\":3,\"usage\":null,\"frequency\":null,\"temperature\":0.0,\"times\":{\"user\":0.01,"
                       "\"nice\":0.0,\"system\":0.0,\"idle\":0.01,\"iowait\":0.0,\"irq\":0.0,\"softirq\":0.0,"
                       "\"steal\":0.0}}]";
    const char *head = "[{\"id\":2,\"usage\":0.12,\"frequency\":null,\"temperature\":41.5,";
    CHECK(length > 0 && strncmp(json, head, strlen(head)) == 0
              && (size_t)length > strlen(want) && memcmp(json + length - strlen(want), want, strlen(want)) == 0, /* not NUL-terminated */
          "cores json: %.*s", (int)(length > 0 ? length : 0), json);
    const double huge[4] = {1e15, 0, 0, 0};
    CHECK(sm_cpu_json(cpu, NULL, huge, &json) == SM_DEFER, "a value beyond the exact forms defers");
    CHECK(sm_cpu_parse(cpu, "intr 1\n", 7, 100.0) == SM_EPARSE, "no aggregate line");
    sm_cpu_close(cpu);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", sys);
    CHECK(system(cmd) == 0, "remove %s", sys);
}

int main(int argc, char **argv)
{
    fuzz_cpu = sm_cpu_open("/nonexistent-tracklab-sys");
    fuzz_devs[0] = sm_devs_open(SM_DISKSTATS);
    fuzz_devs[1] = sm_devs_open(SM_NET_DEV);
    cpu_tick_values();
    device_values();
    huge_trees();
    for (int i = 1; i < argc; i++) {
        read_tree(argv[i]);
        struct tree_values *values = tree_of(argv[i]);
        if (values != NULL)
            check_values(argv[i], values);
    }
    for (int i = 0; i < NTREES; i++)
        CHECK(TREES[i].checked == 1, "fixture tree %s checked %d times, want once", TREES[i].tree,
              TREES[i].checked);
    sm_reader *missing = sm_open("/nonexistent-tracklab-root");
    CHECK(sm_read(missing, SM_STAT) < 0 && sm_process_count(missing) < 0, "missing root errors");
    sm_close(missing);
    sm_cpu_close(fuzz_cpu);
    sm_devs_close(fuzz_devs[0]);
    sm_devs_close(fuzz_devs[1]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0;
}
