/* C tests of the Intel engine meter, meant to run under ASan/UBSan (make test-native-sanitize).
 *
 * Two xe clients in files of a temporary folder (one shared through two fds), read and accounted over ticks
 * where their cycles move, go back, a file goes and members come and go; the values themselves are held to
 * the Python twin by tests/test_intel_engines_native.py.
 */
#include "engines.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_check.h"

static char folder[] = "/tmp/test_engines.XXXXXX";

static void client(const char *name, int id, const char *pdev, long cycles, long clock)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    FILE *f = fopen(path, "w");
    fprintf(f, "drm-driver:\txe\ndrm-client-id:\t%d\ndrm-pdev:\t%s\ndrm-resident-vram0:\t4 KiB\n"
               "drm-cycles-rcs:\t%ld\ndrm-total-cycles-rcs:\t%ld\ndrm-cycles-ccs:\t0\ndrm-total-cycles-ccs:\t%ld\n"
               "drm-engine-capacity-ccs:\t4\n",
            id, pdev, cycles, clock, clock);
    fclose(f);
}

static si_attr *open_member(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    return si_attr_open(path);
}

int main(void)
{
    if (mkdtemp(folder) == NULL)
        return 2;
    const char *pdevs[] = {"0000:0a:00.0", "0000:0b:00.0"};
    em_meter *m = em_new();
    CHECK(m != NULL && em_cards(m, pdevs, 2) == 0, "new");
    client("a", 1, "0000:0A:00.0", 0, 1000);
    client("b", 1, "0000:0a:00.0", 0, 1000); /* the same client through another fd */
    client("c", 7, "0000:0b:00.0", 0, 1000);
    client("d", 9, "0000:ff:00.0", 0, 1000); /* of no card */
    si_attr *files[4] = {open_member("a"), open_member("b"), open_member("c"), open_member("d")};
    uint8_t states[4];
    em_card out[2];
    size_t bad = em_read(m, files, 4, states);
    CHECK(bad == 1 && states[0] == EM_OK && states[3] == EM_GONE, "first read: %zu %d %d", bad, states[0], states[3]);
    CHECK(em_account_members(m, 0, 0.0, out) == 0, "first tick");
    CHECK(out[0].classes == ((1 << 0) | (1 << 4)) && out[0].memory_lo == 4096 && out[0].memory_hi == 0,
          "card 0: classes %d memory %llu", out[0].classes, (unsigned long long)out[0].memory_lo);
    client("a", 1, "0000:0a:00.0", 500, 2000);
    client("c", 7, "0000:0b:00.0", 250, 2000);
    bad = em_read(m, files, 3, states); /* d is gone: the list is taken up again */
    CHECK(bad == 0, "second read %zu", bad);
    CHECK(em_account_members(m, 1, 1.0, out) == 0, "second tick");
    CHECK(out[0].shares[0] == 50.0 && out[1].shares[0] == 25.0 && out[0].shares[4] == 0.0,
          "shares %g %g", out[0].shares[0], out[1].shares[0]);
    CHECK(out[0].memory_lo == 4096, "shared client counted once: %llu", (unsigned long long)out[0].memory_lo);
    client("a", 1, "0000:0a:00.0", 100, 3000); /* went back: no share, the larger kept */
    em_read(m, files, 3, states);
    em_account_members(m, 1, 1.0, out);
    CHECK(out[0].shares[0] == 0.0, "back: %g", out[0].shares[0]);
    client("a", 1, "0000:0a:00.0", 600, 4000); /* 100 cycles past the kept 500 over 2000 */
    em_read(m, files, 3, states);
    em_account_members(m, 1, 1.0, out);
    CHECK(out[0].shares[0] == 5.0, "caught up: %g", out[0].shares[0]);
    char path[256];
    snprintf(path, sizeof path, "%s/c", folder);
    unlink(path);
    si_attr *reordered[2] = {files[2], files[0]};
    bad = em_read(m, reordered, 2, states);
    CHECK(bad == 1 && states[0] == EM_GONE && states[1] == EM_OK, "unreadable: %zu", bad);
    em_set(m, 0, NULL);
    em_reading r = {.card = 1, .classes = 1, .client_id = 7, .times = {{.busy = 10, .total = 10, .capacity = 1}}};
    CHECK(em_account(m, &r, 1, 1, 1.0, out) == 0 && out[1].classes == 1 && out[0].classes == 0, "readings");
    em_reading kept[4];
    CHECK(em_kept(m, kept, 4) == 1 && kept[0].client_id == 7 && kept[0].times[0].busy == 250, "kept larger");
    CHECK(em_cards(m, pdevs + 1, 1) == 0 && em_kept(m, kept, 4) == 1 && kept[0].card == 0, "rescan: card follows");
    for (int i = 0; i < 4; i++)
        si_attr_close(files[i]);
    em_free(m);
    for (const char *name = "abd"; *name; name++) {
        snprintf(path, sizeof path, "%s/%c", folder, *name);
        unlink(path);
    }
    rmdir(folder);
    printf("test_engines: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
