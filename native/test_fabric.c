/* C tests of the fabric counters, meant to run under ASan/UBSan (make test-native-sanitize).
 *
 * Decodes nvmlFieldValue_t records of every value type and return code, placed and unplaced, from
 * buffers of exactly their length (a read past the end is caught), and rates counters through a
 * first reading, a rise, a dip, a flat run after it, a reset, a stopped clock and a counter that keeps
 * falling past FB_BASELINES, with the values the Python rule gives (tests/test_rates_column.py).
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

int main(void)
{
    test_decode();
    test_rates();
    printf("test_fabric: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
