/* C tests of the InfiniBand port reads, meant to run under ASan/UBSan (make test-native-sanitize).
 *
 * Parses counter texts from buffers of exactly their length (a read past the end is caught): whitespace
 * as str.strip() sees it, leading zeros, 2^64-1 and one more, broken UTF-8. Reads ports built in a
 * temporary folder through a first reading, a rise, a reset, a saturated and a too large counter, a file
 * renamed over, one removed, a folder and a FIFO where a file should be; then every port folder named on
 * the command line (the fixture trees), twice, expecting every data counter and state to read. Reads a counter
 * written through its old file after a rename over it (fstat()ed only once a read repeats). Reads a slow tier
 * (texts, then counters) through what changes it and what does not.
 */
#define _GNU_SOURCE
#include "ibports.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_check.h"

static int parses(const char *text, uint64_t *value)
{
    size_t n = strlen(text);
    char *exact = malloc(n ? n : 1); /* exactly the text, no terminator: ASan sees any overread */
    memcpy(exact, text, n);
    int ok = ib_parse_counter(exact, n, value);
    free(exact);
    return ok;
}

static void test_parse(void)
{
    uint64_t v = 0;
    CHECK(parses("12345\n", &v) && v == 12345, "plain counter %llu", (unsigned long long)v);
    CHECK(parses(" \t\v\f\r\x1c\x1f" "7" "\n\n", &v) && v == 7, "ASCII whitespace both sides");
    CHECK(parses("\xc2\xa0" "9" "\xe2\x80\x8a\xe3\x80\x80\xc2\x85\xe1\x9a\x80\xe2\x81\x9f\xe2\x80\xaf", &v) && v == 9,
          "Unicode whitespace both sides");
    CHECK(parses("000000000000000000000000042", &v) && v == 42, "leading zeros beyond 20 digits");
    CHECK(parses("18446744073709551615", &v) && v == UINT64_MAX, "2^64-1");
    CHECK(!parses("18446744073709551616", &v), "2^64 does not fit");
    CHECK(!parses("99999999999999999999999", &v), "far over 64 bits");
    CHECK(!parses("", &v) && !parses(" \n", &v), "empty and blank");
    CHECK(!parses("N/A (no PMA)", &v) && !parses("-1", &v) && !parses("+1", &v) && !parses("1 2", &v),
          "not a counter");
    CHECK(!parses("1\xe2\x80", &v) && !parses("\xc2" "1", &v) && !parses("1\xe2\x80\x8b", &v),
          "broken UTF-8 and U+200B (not whitespace)");
    CHECK(!parses("\xef\xbc\x91", &v), "a fullwidth digit is a digit to Python but not ASCII");
    char nul[] = {'1', '\0', '2'};
    CHECK(!ib_parse_counter(nul, sizeof nul, &v), "a NUL inside");
}

static char folder[] = "/tmp/test_ibports-XXXXXX";
static const char *NAMES[IB_FILES] = {"xd", "rd", "xp", "rp", "state"};
static char paths[IB_FILES][256]; /* the files of new_port's port */

static void put(const char *name, const char *text)
{
    char path[256], tmp[256];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    snprintf(tmp, sizeof tmp, "%s/%s.new", folder, name);
    FILE *f = fopen(tmp, "w");
    fputs(text, f);
    fclose(f);
    rename(tmp, path); /* renamed over: the kept descriptor's file loses its last link */
}

struct tick {
    int32_t length[IB_FILES];
    char text[IB_FILES * IB_TEXT];
    uint64_t values[IB_COUNTERS];
    double rates[IB_COUNTERS];
    uint8_t status[IB_COUNTERS];
    size_t odd;
};

static void tick(ib_port *port, double now, struct tick *t)
{
    ib_port *ports[1] = {port};
    t->odd = ib_read(ports, 1, now, t->length, t->text, t->values, t->rates, t->status);
}

/* A port of counters in words whose files are in a new `folder` (NULL when it cannot be made). */
static ib_port *new_port(void)
{
    if (!mkdtemp(folder)) {
        CHECK(0, "mkdtemp: %s", strerror(errno));
        return NULL;
    }
    ib_port *port = calloc(1, sizeof *port);
    for (int f = 0; f < IB_FILES; f++) {
        snprintf(paths[f], sizeof paths[f], "%s/%s", folder, NAMES[f]);
        port->file[f] = (ib_file){paths[f], -1};
    }
    port->words = 1;
    return port;
}

static void test_port(void)
{
    ib_port *port = new_port();
    if (!port)
        return;
    put("xd", "1000\n");
    put("rd", "4294967295\n");
    put("xp", "18446744073709551615\n");
    put("state", "4: ACTIVE\n");
    struct tick t;
    tick(port, 100.0, &t);
    CHECK(t.status[0] == IB_OK && t.values[0] == 4000 && t.rates[0] == 0.0, "words in bytes, first sight rates 0");
    CHECK(t.status[1] == IB_SATURATED && t.values[1] == 4ull * 4294967295u && isnan(t.rates[1]), "saturated");
    CHECK(t.status[2] == IB_OK && t.values[2] == UINT64_MAX, "packets are not scaled, and 2^64-1 is not 2^32-1");
    CHECK(t.status[3] == IB_ABSENT && t.length[3] == -ENOENT && isnan(t.rates[3]), "absent");
    CHECK(t.length[IB_STATE] == 10 && memcmp(t.text + IB_STATE * IB_TEXT, "4: ACTIVE\n", 10) == 0, "state text");
    CHECK(t.odd == 2, "odd %zu", t.odd);
    int kept = port->file[0].fd;
    tick(port, 101.0, &t);
    CHECK(port->file[0].fd == kept, "the descriptor is kept between reads");
    put("xd", "1250\n"); /* renamed over: reopened, 250 words (1000 bytes) more over the 1 s since 101 */
    put("rd", "4611686018427387904\n"); /* 2^62 words: over 64 bits in bytes */
    put("rp", "N/A (no PMA)\n");
    tick(port, 102.0, &t);
    CHECK(t.status[0] == IB_OK && t.values[0] == 5000 && t.rates[0] == 1000.0, "rise after a rename: %f", t.rates[0]);
    CHECK(t.status[1] == IB_TOO_BIG && t.values[1] == 0 && isnan(t.rates[1]), "too big in bytes");
    CHECK(t.status[3] == IB_BAD_TEXT && t.length[3] == 13 && memcmp(t.text + 3 * IB_TEXT, "N/A", 3) == 0, "bad text");
    put("xd", "10\n"); /* a reset: rates 0, then from the low reading over the span since the high one */
    tick(port, 103.0, &t);
    CHECK(t.rates[0] == 0.0, "a reset rates 0");
    put("xd", "13\n");
    tick(port, 105.0, &t);
    CHECK(t.rates[0] == 4.0, "after the reset: 12 bytes over 3 s, %f", t.rates[0]);
    char path[300];
    snprintf(path, sizeof path, "%s/xd", folder);
    unlink(path);
    mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/xp", folder);
    unlink(path);
    mkfifo(path, 0600);
    snprintf(path, sizeof path, "%s/state", folder);
    unlink(path);
    tick(port, 106.0, &t);
    CHECK(t.status[0] == IB_UNREADABLE && t.length[0] == IB_NOT_REGULAR && port->file[0].fd == -1, "a folder");
    CHECK(t.status[2] == IB_UNREADABLE && t.length[2] == IB_NOT_REGULAR, "a FIFO never hangs the read");
    CHECK(t.length[IB_STATE] == -ENOENT, "state removed");
    uint64_t values[IB_FILES] = {7, 7, 7, 7, 7};
    uint8_t known[IB_FILES] = {0};
    int changed = ib_read_tier(port->file, 0, IB_FILES, NULL, NULL, values, known); /* the same files, as counters */
    CHECK(changed == IB_COUNTERS_CHANGED && known[1] && values[1] == 4611686018427387904ull, "counters: %d", changed);
    CHECK(!known[0] && !known[2] && !known[3] && !known[4] && values[0] == 0 && values[4] == 0,
          "folder, FIFO, text, gone: unknown, 0");
    ib_files_close(port->file, IB_FILES);
    CHECK(port->file[1].fd == -1 && port->file[3].fd == -1, "closed");
    free(port);
    for (int f = 0; f < IB_FILES; f++) {
        snprintf(path, sizeof path, "%s/%s", folder, NAMES[f]);
        unlink(path);
        rmdir(path);
    }
    rmdir(folder);
}

/* The data counters' descriptors are fstat()ed only after a read that repeats or is long (ibports.h): a write through
 * the old file after a rename over it is read until it repeats, then the new file; a long one is looked past. */
static void test_moving(void)
{
    strcpy(folder, "/tmp/test_ibports-XXXXXX"); /* test_port's folder is gone: put() writes into a new one */
    ib_port *port = new_port();
    if (!port)
        return;
    put("xd", "1\n");
    struct tick t;
    tick(port, 1.0, &t);
    CHECK(t.values[0] == 4, "first read %llu", (unsigned long long)t.values[0]);
    int old = open(paths[0], O_WRONLY);
    put("xd", "2\n");
    CHECK(pwrite(old, "3\n", 2, 0) == 2, "a write through the old file");
    tick(port, 2.0, &t);
    CHECK(t.values[0] == 12, "it moved: read from the old file, not looked at: %llu", (unsigned long long)t.values[0]);
    tick(port, 3.0, &t);
    CHECK(t.values[0] == 8, "it repeated: looked at, the new file: %llu", (unsigned long long)t.values[0]);
    close(old);
    old = open(paths[0], O_WRONLY);
    put("xd", "5\n");
    char long_text[IB_TEXT + 3];
    memset(long_text, ' ', sizeof long_text);
    memcpy(long_text + IB_TEXT, "7\n", 2);
    CHECK(pwrite(old, long_text, IB_TEXT + 2, 0) == IB_TEXT + 2, "a long write through the old file");
    tick(port, 4.0, &t);
    CHECK(t.values[0] == 20, "longer than kept: looked at, the new file: %llu", (unsigned long long)t.values[0]);
    close(old);
    ib_files_close(port->file, IB_FILES);
    free(port);
    for (int f = 0; f < IB_FILES; f++)
        unlink(paths[f]);
    rmdir(folder);
}

static char tier_folder[] = "/tmp/test_ibports-tier-XXXXXX";

static void tier_put(const char *name, const char *text, int rename_over)
{
    char path[256], tmp[256];
    snprintf(path, sizeof path, "%s/%s", tier_folder, name);
    snprintf(tmp, sizeof tmp, "%s/%s.new", tier_folder, name);
    FILE *f = fopen(rename_over ? tmp : path, "w"); /* in place: the kept descriptor stays, as sysfs rewrites */
    fputs(text, f);
    fclose(f);
    if (rename_over)
        rename(tmp, path);
}

/* A slow tier: two texts then two counters, read through their kept descriptors; the call says what changed. */
static void test_tier(void)
{
    if (!mkdtemp(tier_folder)) {
        CHECK(0, "mkdtemp: %s", strerror(errno));
        return;
    }
    enum { TEXTS = 2, N = 4 };
    static const char *names[N] = {"rate", "layer", "c0", "c1"};
    char paths[N][256];
    ib_file files[N];
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", tier_folder, names[i]);
        files[i] = (ib_file){paths[i], -1};
    }
    int32_t length[TEXTS] = {0};
    char *text = calloc(TEXTS, IB_PAGE); /* exactly the slots: ASan sees a write past them */
    uint64_t values[N - TEXTS] = {0};
    uint8_t known[N - TEXTS] = {0};
#define TIER() ib_read_tier(files, TEXTS, N, length, text, values, known)
    tier_put("rate", "200 Gb/sec (4X HDR)\n", 0);
    tier_put("layer", "InfiniBand\n", 0);
    tier_put("c0", "5\n", 0);
    tier_put("c1", "N/A\n", 0);
    CHECK(TIER() == (IB_TEXTS_CHANGED | IB_COUNTERS_CHANGED), "first read: all new");
    CHECK(length[0] == 20 && memcmp(text, "200 Gb/sec (4X HDR)\n", 20) == 0, "rate text %d", length[0]);
    CHECK(length[1] == 11 && memcmp(text + IB_PAGE, "InfiniBand\n", 11) == 0, "layer text %d", length[1]);
    CHECK(known[0] && values[0] == 5 && !known[1] && values[1] == 0, "counters: 5, not one");
    int fd = files[0].fd;
    CHECK(TIER() == 0 && files[0].fd == fd, "read again, the same: nothing changed, descriptors kept");
    tier_put("rate", "400 Gb/sec (4X NDR)\n", 0); /* same length, other bytes */
    CHECK(TIER() == IB_TEXTS_CHANGED && memcmp(text, "400", 3) == 0, "a text's bytes");
    tier_put("layer", "Ethernet\n", 1); /* renamed over: reopened, shorter */
    CHECK(TIER() == IB_TEXTS_CHANGED && length[1] == 9 && files[1].fd != -1, "a text renamed over, shorter");
    tier_put("c1", "junk\n", 0); /* still not a counter: no change */
    CHECK(TIER() == 0 && !known[1], "another text that is not a counter is no change");
    tier_put("c1", "0\n", 0); /* unknown to 0: a change although the value is the same 0 */
    CHECK(TIER() == IB_COUNTERS_CHANGED && known[1] && values[1] == 0, "a counter becomes known as 0");
    tier_put("c0", "6\n", 1);
    CHECK(TIER() == IB_COUNTERS_CHANGED && values[0] == 6, "a counter renamed over");
    char path[300];
    snprintf(path, sizeof path, "%s/rate", tier_folder);
    unlink(path);
    CHECK(TIER() == IB_TEXTS_CHANGED && length[0] == -1 && files[0].fd == -1, "a text gone: -1, closed");
    mkdir(path, 0700);
    CHECK(TIER() == 0 && length[0] == -1, "a folder in its place: unreadable again, whatever the reason");
    rmdir(path);
    tier_put("rate", "", 0);
    CHECK(TIER() == IB_TEXTS_CHANGED && length[0] == 0, "an empty text is not an unreadable one");
    char big[IB_PAGE + 100];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tier_put("rate", big, 0);
    CHECK(TIER() == IB_TEXTS_CHANGED && length[0] == IB_PAGE, "a long text: one page %d", length[0]);
    big[IB_PAGE + 50] = 'y'; /* past the page: not read, as KeptAttribute.read_page does not */
    tier_put("rate", big, 0);
    CHECK(TIER() == 0, "a change past the first page is not seen");
    big[IB_PAGE - 1] = 'y';
    tier_put("rate", big, 0);
    CHECK(TIER() == IB_TEXTS_CHANGED && text[IB_PAGE - 1] == 'y', "the page's last byte is");
#undef TIER
    ib_files_close(files, N);
    CHECK(files[0].fd == -1 && files[3].fd == -1, "closed");
    free(text);
    for (int i = 0; i < N; i++)
        unlink(paths[i]);
    rmdir(tier_folder);
}

static const char *DATA[IB_COUNTERS] = {"port_xmit_data", "port_rcv_data", "port_xmit_packets", "port_rcv_packets"};
static const char *EFA[IB_COUNTERS] = {"tx_bytes", "rx_bytes", "tx_pkts", "rx_pkts"};

static void test_fixture(const char *dir)
{
    char paths[IB_FILES][1024], counters[1024];
    struct stat st;
    snprintf(counters, sizeof counters, "%s/counters", dir);
    int words = stat(counters, &st) == 0;
    ib_port *port = calloc(1, sizeof *port);
    for (int f = 0; f < IB_FILES; f++) {
        if (f == IB_STATE)
            snprintf(paths[f], sizeof paths[f], "%s/state", dir);
        else
            snprintf(paths[f], sizeof paths[f], "%s/%s/%s", dir, words ? "counters" : "hw_counters",
                     words ? DATA[f] : EFA[f]);
        port->file[f] = (ib_file){paths[f], -1};
    }
    port->words = words;
    struct tick t;
    for (int i = 0; i < 2; i++) {
        tick(port, 1.0 + i, &t);
        for (int c = 0; c < IB_COUNTERS; c++)
            CHECK(t.status[c] == IB_OK || t.status[c] == IB_SATURATED, "%s counter %d: status %d", dir, c, t.status[c]);
        CHECK(t.length[IB_STATE] > 0, "%s state: %d", dir, t.length[IB_STATE]);
        CHECK(t.rates[0] == 0.0 || isnan(t.rates[0]), "%s: the same reading rates 0", dir);
    }
    ib_files_close(port->file, IB_FILES);
    free(port);
}

int main(int argc, char **argv)
{
    test_parse();
    test_port();
    test_moving();
    test_tier();
    for (int i = 1; i < argc; i++)
        test_fixture(argv[i]);
    printf("test_ibports: %d passed, %d failed (%d fixture ports)\n", passed, failed, argc - 1);
    return failed ? 1 : 0;
}
