/* C tests of the DRM fdinfo parser, meant to run under ASan/UBSan (make test-native-sanitize).
 *
 * Usage: test_fdinfo FILE...  Parses a hand-written xe client and checks every field, then feeds each
 * file, every prefix of it and seeded random corruptions to the parser from buffers of exactly their
 * length (no terminator), so any read past the end is caught by the sanitizer. The values themselves
 * are held to the Python parser by tests/test_fdinfo_native.py.
 */
#include "fdinfo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_check.h"

static fi_client client;

/* Parse `len` bytes copied into a buffer of exactly that size. */
static int parse_exact(const char *text, size_t len)
{
    char *copy = malloc(len ? len : 1);
    memcpy(copy, text, len);
    int rc = fi_parse(copy, len, &client);
    free(copy);
    return rc;
}

static int span_is(const char *text, uint32_t at, uint32_t len, const char *want)
{
    return len == strlen(want) && memcmp(text + at, want, len) == 0;
}

static void test_xe_client(void)
{
    const char *text = "pos:\t0\ndrm-driver:\txe\ndrm-client-id:\t11\ndrm-pdev:\t0000:03:00.0\n"
                       "drm-total-vram0:\t8 MiB\ndrm-resident-vram0:\t4096 KiB\ndrm-cycles-rcs:\t25\n"
                       "drm-total-cycles-rcs:\t100\ndrm-engine-capacity-ccs:\t4\ndrm-cycles-ccs:\t7\n"
                       "drm-total-cycles-ccs:\t200\ndrm-cycles-bcs:\t3";
    int rc = fi_parse(text, strlen(text), &client);
    CHECK(rc == FI_CLIENT, "rc %d", rc);
    CHECK(span_is(text, client.driver_at, client.driver_len, "xe"), "driver");
    CHECK(span_is(text, client.pdev_at, client.pdev_len, "0000:03:00.0"), "pdev");
    CHECK(client.client_id == 11, "client id %llu", (unsigned long long)client.client_id);
    CHECK(client.engines_count == 2, "engines %u (bcs has no clock)", client.engines_count);
    CHECK(span_is(text, client.engines[0].at, client.engines[0].len, "rcs") && client.engines[0].busy == 25 &&
          client.engines[0].has_total && client.engines[0].total == 100 && client.engines[0].capacity == 1, "rcs");
    CHECK(span_is(text, client.engines[1].at, client.engines[1].len, "ccs") && client.engines[1].capacity == 4,
          "ccs capacity");
    CHECK(client.regions_count == 1 && client.regions[0].bytes == 4096 * 1024, "resident vram0 wins over total");
    const char *other[] = {"pos:\t0\nflags:\t02\n", "drm-driver:\txe\ndrm-client-id:\t0x1\n",
                           "drm-driver:\t\ndrm-client-id:\t1\n"};
    for (size_t i = 0; i < sizeof other / sizeof *other; i++)
        CHECK(fi_parse(other[i], strlen(other[i]), &client) == FI_NONE, "not a client: case %zu", i);
    const char *deferred[] = {"drm-driver:\txe\ndrm-client-id:\t+1\n", "drm-driver:\txe\r\n",
                              "drm-engine-rcs:\t1234567890123456789 ns\n"};
    for (size_t i = 0; i < sizeof deferred / sizeof *deferred; i++)
        CHECK(fi_parse(deferred[i], strlen(deferred[i]), &client) == FI_DEFER, "deferred: case %zu", i);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *text = malloc(1 << 16);
    *len = fread(text, 1, 1 << 16, f);
    fclose(f);
    return text;
}

static void test_file(const char *path)
{
    size_t len;
    char *text = read_file(path, &len);
    CHECK(text != NULL, "cannot read %s", path);
    if (text == NULL)
        return;
    for (size_t n = 0; n <= len; n++) {
        int rc = parse_exact(text, n);
        CHECK(rc == FI_CLIENT || rc == FI_NONE || rc == FI_DEFER, "%s prefix %zu: rc %d", path, n, rc);
    }
    unsigned seed = 12345;
    char *bent = malloc(len ? len : 1);
    for (int round = 0; round < 2000; round++) {
        memcpy(bent, text, len);
        for (int k = 0; k < 1 + round % 4 && len; k++) {
            seed = seed * 1103515245u + 12345u;
            bent[(seed >> 8) % len] = "0123456789 :\t\n-xKiBnsGM\x01\xff"[(seed >> 20) % 26];
        }
        int rc = parse_exact(bent, len);
        CHECK(rc == FI_CLIENT || rc == FI_NONE || rc == FI_DEFER, "%s corruption %d: rc %d", path, round, rc);
        if (rc == FI_CLIENT)
            CHECK(client.engines_count <= FI_MAX_ITEMS && client.regions_count <= FI_MAX_ITEMS &&
                  client.driver_at + client.driver_len <= len, "%s corruption %d: spans", path, round);
    }
    free(bent);
    free(text);
}

int main(int argc, char **argv)
{
    test_xe_client();
    for (int i = 1; i < argc; i++)
        test_file(argv[i]);
    printf("test_fdinfo: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
