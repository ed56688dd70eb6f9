/* The sysfs integer reader under ASan/UBSan: int()'s rules on fixed texts, every file named on the command line
 * read twice (skipped, then read), and a file replaced, deleted and made again in a temporary folder. */
#define _GNU_SOURCE
#include "sysints.h"
#include "test_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void parse_cases(void)
{
    static const struct {
        const char *text;
        int state;
        int64_t value;
    } cases[] = {
        {"42\n", SI_INT, 42}, {" -7 \n", SI_INT, -7}, {"+3", SI_INT, 3}, {"\x0b" "8\x0c", SI_INT, 8},
        {"007", SI_INT, 7}, {"999999999999999999", SI_INT, 999999999999999999LL}, {"1_000", SI_DEFER, 0},
        {"1234567890123456789", SI_DEFER, 0}, {"\xd9\xa3", SI_DEFER, 0}, {"", SI_NONE, 0}, {" \n", SI_NONE, 0},
        {"-", SI_NONE, 0}, {"- 5", SI_NONE, 0}, {"12a", SI_NONE, 0}, {"0x10", SI_NONE, 0}, {"5\x1c", SI_NONE, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t value = 0;
        int state = si_parse(cases[i].text, strlen(cases[i].text), &value);
        CHECK(state == cases[i].state, "si_parse(%s): state %d, not %d", cases[i].text, state, cases[i].state);
        CHECK(state != SI_INT || value == cases[i].value, "si_parse(%s): %lld", cases[i].text, (long long)value);
    }
    int64_t value = 0;
    CHECK(si_parse("5\0" "6", 3, &value) == SI_NONE, "an embedded NUL is not a number");
}

static void read_files(int n, char **paths)
{
    si_files *f = si_open((const char *const *)paths, (size_t)n, 16);
    CHECK(f != NULL, "si_open of %d paths", n);
    if (f == NULL)
        return;
    uint8_t *want = calloc((size_t)n + 1, 1);
    uint8_t *states = calloc((size_t)n + 1, 1);
    int64_t *values = calloc((size_t)n + 1, sizeof *values);
    size_t other = si_read(f, want, values, states);
    CHECK(other == (size_t)n, "nothing wanted: every file skipped (%zu of %d)", other, n);
    memset(want, 1, (size_t)n);
    for (int round = 0; round < 20; round++)
        si_read(f, want, values, states);
    uint8_t *changed = calloc((size_t)n + 1, 1);
    size_t moved = si_read_text(f, changed);
    CHECK(moved == (size_t)n, "the first text read: every file changed (%zu of %d)", moved, n);
    moved = si_read_text(f, changed);
    CHECK(moved == 0, "read again: none changed (%zu)", moved);
    for (int i = 0; i < n; i++) {
        size_t len = 0;
        const char *text = si_text(f, (size_t)i, &len);
        CHECK(text != NULL || len == 0, "%s: no text, no length", paths[i]);
        CHECK(len <= SI_PAGE, "%s: %zu bytes", paths[i], len);
    }
    free(changed);
    for (int i = 0; i < n; i++) {
        CHECK(states[i] <= SI_DEFER, "%s: state %d", paths[i], states[i]);
        CHECK(states[i] == SI_INT || values[i] == 0, "%s: a value without a number", paths[i]);
        CHECK(states[i] != SI_DEFER || si_fd(f, (size_t)i) >= 0, "%s: deferred with no descriptor", paths[i]);
    }
    free(want);
    free(states);
    free(values);
    si_close(f);
}

static void write_file(const char *path, const char *text)
{
    FILE *out = fopen(path, "w");
    fputs(text, out);
    fclose(out);
}

static void replaced(void)
{
    char dir[] = "/tmp/test_sysints.XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[64], other[64];
    snprintf(path, sizeof path, "%s/energy", dir);
    snprintf(other, sizeof other, "%s/new", dir);
    write_file(path, "100\n");
    const char *paths[] = {path};
    si_files *f = si_open(paths, 1, 2);
    uint8_t want = 1, state;
    int64_t value;
    si_read(f, &want, &value, &state);
    CHECK(state == SI_INT && value == 100, "first read: %d %lld", state, (long long)value);
    write_file(other, "200\n");
    rename(other, path);
    si_read(f, &want, &value, &state);
    CHECK(value == 100, "the kept descriptor until the recheck: %lld", (long long)value);
    si_read(f, &want, &value, &state);
    CHECK(value == 200, "the new file after it: %lld", (long long)value);
    unlink(path);
    si_read(f, &want, &value, &state);
    si_read(f, &want, &value, &state);
    CHECK(state == SI_NONE && value == 0, "deleted: %d", state);
    write_file(path, "300\n");
    si_read(f, &want, &value, &state);
    CHECK(state == SI_INT && value == 300, "made again: %lld", (long long)value);
    uint8_t changed;
    size_t len;
    CHECK(si_read_text(f, &changed) == 1 && changed, "text: first read");
    CHECK(si_read_text(f, &changed) == 0 && !changed, "text: the same");
    write_file(path, "301\n");
    CHECK(si_read_text(f, &changed) == 1 && changed, "text: the same length, other bytes");
    const char *text = si_text(f, 0, &len);
    CHECK(text != NULL && len == 4 && memcmp(text, "301\n", 4) == 0, "text: %.*s", (int)len, text ? text : "");
    unlink(path);
    si_read_text(f, &changed);
    si_read_text(f, &changed);
    CHECK(si_text(f, 0, &len) == NULL && len == 0, "text: deleted");
    CHECK(si_text(f, 1, &len) == NULL, "text: past the files");
    si_close(f);
    rmdir(dir);
    si_files *none = si_open(NULL, 0, 1);
    CHECK(none != NULL, "no files");
    si_close(none);
}

int main(int argc, char **argv)
{
    parse_cases();
    read_files(argc - 1, argv + 1);
    replaced();
    printf("test_sysints: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
