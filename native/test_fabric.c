/* C tests of the fabric counters, meant to run under ASan/UBSan (make test-native-sanitize).
 *
 * Decodes nvmlFieldValue_t records of every value type and return code, placed and unplaced, from
 * buffers of exactly their length (a read past the end is caught), and rates counters through a
 * first reading, a rise, a dip, a flat run after it, a reset, a stopped clock and a counter that keeps
 * falling past FB_BASELINES, with the values the Python rule gives (tests/test_rates_column.py). Reads a
 * tick of several GPUs in one call (fb_nvlink_read) through a stand-in for nvmlDeviceGetFieldValues: a GPU
 * that answers, one whose call fails, one with a pruned request, one with nothing left to ask.
 */
#include "fabric.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_check.h"

static void put(unsigned char *record, uint32_t type, uint32_t ret, uint64_t value)
{
    memset(record, 0, FB_RECORD_BYTES);
    memcpy(record + 24, &type, sizeof type);
    memcpy(record + 28, &ret, sizeof ret);
    memcpy(record + 32, &value, sizeof value);
}

static void test_decode(void)
{
    enum { N = 6 };
    const uint64_t max_kib = UINT64_MAX / 1024;
    unsigned char *raw = malloc(N * FB_RECORD_BYTES); /* exactly the records: ASan sees any overread */
    put(raw + 0 * FB_RECORD_BYTES, 3, 0, 10);                   /* ulonglong */
    put(raw + 1 * FB_RECORD_BYTES, 1, 0, (1ull << 32) + 7);     /* uint: masked to 32 bits */
    put(raw + 2 * FB_RECORD_BYTES, 6, 0, (1ull << 16) + 5);     /* ushort: masked to 16 bits */
    put(raw + 3 * FB_RECORD_BYTES, 3, 3, 1);                    /* NOT_SUPPORTED */
    put(raw + 4 * FB_RECORD_BYTES, 5, 0, 4);                    /* signed: not a counter */
    put(raw + 5 * FB_RECORD_BYTES, 2, 0, max_kib + 1);          /* ulong too large in bytes */
    uint64_t values[N];
    uint8_t known[N];
    size_t unknown = fb_field_counters(raw, N, NULL, max_kib, 1024, values, known, N);
    CHECK(unknown == 3, "unknown %zu", unknown);
    CHECK(known[0] && values[0] == 10240, "ulonglong %llu", (unsigned long long)values[0]);
    CHECK(known[1] && values[1] == 7 * 1024, "uint %llu", (unsigned long long)values[1]);
    CHECK(known[2] && values[2] == 5 * 1024, "ushort %llu", (unsigned long long)values[2]);
    CHECK(!known[3] && !known[4] && !known[5], "failed, signed and too large are unknown");
    uint32_t place[2] = {4, 99}; /* a place past the slots is ignored */
    unknown = fb_field_counters(raw, 2, place, max_kib, 1024, values, known, N);
    CHECK(unknown == 5 && known[4] && values[4] == 10240, "placed: unknown %zu", unknown);
    free(raw);
}

static double rate(fb_counter *c, uint64_t value, int is_known, double now)
{
    uint8_t k = (uint8_t)is_known;
    double r;
    fb_column_rates(c, 1, &value, &k, now, &r);
    return r;
}

static void test_rates(void)
{
    fb_counter *c = calloc(1, sizeof *c);
    CHECK(rate(c, 1000, 1, 0.0) == 0.0, "first sight rates 0");
    CHECK(rate(c, 1300, 1, 3.0) == 100.0, "a rise: 300 over 3 s");
    CHECK(isnan(rate(c, 0, 0, 4.0)) && c->count == 1, "unknown: NaN, baselines kept");
    CHECK(rate(c, 0, 1, 5.0) == 0.0 && c->count == 2, "a dip rates 0 and is kept below");
    CHECK(rate(c, 0, 1, 6.0) == 0.0 && c->count == 2, "flat after the drop keeps every baseline");
    CHECK(rate(c, 50, 1, 7.0) == 12.5, "a reset proven: 50 over the 4 s since 1300 was read");
    CHECK(rate(c, 60, 1, 7.0) == 0.0, "no time passed rates 0");
    CHECK(rate(c, 61, 1, 10.0) == 0.33, "cents: 1 over 3 s");
    for (int i = 0; i < 20; i++)
        rate(c, (uint64_t)(60 - i), 1, 11.0 + i);
    CHECK(c->count == FB_BASELINES, "a counter that keeps falling holds %d baselines, not %u", FB_BASELINES,
          c->count);
    CHECK(rate(c, UINT64_MAX, 1, 40.0) > 0 && isfinite(rate(c, UINT64_MAX, 1, 41.0)), "64-bit values stay finite");
    free(c);
}

/* A stand-in for nvmlDeviceGetFieldValues: the device says what to answer and counts the calls. */
typedef struct {
    int ret;       /* the call's return code */
    uint64_t base; /* record i answers base + i (KiB, ulonglong) */
    int calls;
} standin_device;

static int standin(void *device, int count, void *values)
{
    standin_device *d = device;
    d->calls++;
    if (d->ret)
        return d->ret;
    for (int i = 0; i < count; i++)
        put((unsigned char *)values + (size_t)i * FB_RECORD_BYTES, 3, 0, d->base + (uint64_t)i);
    return 0;
}

static void test_nvlink_read(void)
{
    enum { GPUS = 4, SLOTS = 10 };
    const uint64_t max_kib = UINT64_MAX / 1024;
    standin_device dev[GPUS] = {{0, 10, 0}, {999, 0, 0}, {0, 7, 0}, {0, 0, 0}};
    const uint32_t records[GPUS] = {2, 2, 1, 0}, slots[GPUS] = {2, 2, 4, 2};
    static const uint32_t place_c[1] = {3}; /* GPU 2 kept only link 1's rx entry */
    fb_nvlink_gpu *gpu[GPUS];
    for (int g = 0; g < GPUS; g++) {
        gpu[g] = calloc(1, sizeof *gpu[g]);
        gpu[g]->call = standin;
        gpu[g]->device = &dev[g];
        /* exactly the records NVML may write: ASan sees a call or a decode past them */
        gpu[g]->request = records[g] ? malloc(records[g] * FB_RECORD_BYTES) : NULL;
        gpu[g]->records = records[g];
        gpu[g]->place = g == 2 ? place_c : NULL;
        gpu[g]->column = calloc(slots[g], sizeof(fb_counter));
        gpu[g]->slots = slots[g];
        gpu[g]->ret = -1;
    }
    uint64_t *values = malloc(SLOTS * sizeof *values);
    uint8_t *known = malloc(SLOTS);
    double *rates = malloc(SLOTS * sizeof *rates);
    uint32_t *unknown_at = malloc(SLOTS * sizeof *unknown_at);
    size_t unknown = 99;

    size_t failures = fb_nvlink_read(gpu, GPUS, max_kib, 1024, 0.0, values, known, rates, unknown_at, &unknown);
    CHECK(failures == 1 && gpu[0]->ret == 0 && gpu[1]->ret == 999 && gpu[2]->ret == 0 && gpu[3]->ret == 0,
          "one failed call: %zu, rets %d %d %d %d", failures, gpu[0]->ret, gpu[1]->ret, gpu[2]->ret, gpu[3]->ret);
    CHECK(dev[0].calls == 1 && dev[1].calls == 1 && dev[2].calls == 1 && dev[3].calls == 0,
          "a GPU with no records is not asked: calls %d", dev[3].calls);
    CHECK(values[0] == 10240 && values[1] == 11264 && rates[0] == 0.0 && rates[1] == 0.0, "GPU 0 at slots 0-1");
    CHECK(!known[2] && !known[3] && values[2] == 0 && isnan(rates[2]) && isnan(rates[3]), "failed GPU 1 unknown");
    CHECK(known[7] && values[7] == 7168 && rates[7] == 0.0 && !known[4] && !known[5] && !known[6],
          "GPU 2's one record lands at its slot 3, the 8th of the tick");
    static const uint32_t missing[7] = {2, 3, 4, 5, 6, 8, 9};
    CHECK(unknown == 7 && memcmp(unknown_at, missing, sizeof missing) == 0, "unknown slots %zu", unknown);
    CHECK(gpu[1]->column[0].count == 0, "a failed call leaves the baselines alone");

    dev[0].base = 12, dev[1].ret = 0, dev[1].base = 1, dev[2].base = 9;
    failures = fb_nvlink_read(gpu, GPUS, max_kib, 1024, 2.0, values, known, rates, unknown_at, &unknown);
    CHECK(failures == 0 && gpu[1]->ret == 0 && unknown == 5, "all answered: %zu failed, %zu unknown", failures,
          unknown);
    CHECK(rates[0] == 1024.0 && rates[1] == 1024.0 && rates[7] == 1024.0, "2 KiB over 2 s: %g", rates[0]);
    CHECK(values[2] == 1024 && rates[2] == 0.0 && gpu[1]->column[0].count == 1, "GPU 1's first answer rates 0");

    dev[1].ret = 15; /* lost */
    failures = fb_nvlink_read(gpu, GPUS, max_kib, 1024, 3.0, values, known, rates, unknown_at, &unknown);
    CHECK(failures == 1 && gpu[1]->ret == 15 && gpu[1]->column[0].count == 1 && gpu[1]->column[0].at[0] == 2.0,
          "a lost GPU keeps its baselines");
    CHECK(fb_nvlink_read(gpu, 0, max_kib, 1024, 4.0, values, known, rates, unknown_at, &unknown) == 0 && unknown == 0,
          "no GPUs: nothing read");
    for (int g = 0; g < GPUS; g++) {
        free(gpu[g]->request);
        free(gpu[g]->column);
        free(gpu[g]);
    }
    free(values);
    free(known);
    free(rates);
    free(unknown_at);
}

int main(void)
{
    test_decode();
    test_rates();
    test_nvlink_read();
    printf("test_fabric: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
