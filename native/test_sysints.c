/* The sysfs integer reader under ASan/UBSan: int()'s rules on fixed texts, every file named on the command line
 * read twice (skipped, then read), and a file replaced, deleted and made again in a temporary folder; the kept
 * texts (si_attr) on the same files, on a file changed, renamed over, deleted, made again, grown past a read, a
 * FIFO, and this process's own fdinfo until its fd is closed. */
#define _GNU_SOURCE
#include "sysints.h"
#include "test_check.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

static char page[SI_CHUNK]; /* si_attr_read's, the caller's */

/* si_attr_read of one file: its state, and its text as C now holds it in text (NUL-terminated, at most size). */
static int attr_state(si_attr *a, char *text, size_t size)
{
    uint8_t state = 99;
    size_t count = si_attr_read(&a, 1, &state, page);
    CHECK(count == (state != SI_SAME), "the count is the files not the same: %zu, state %d", count, state);
    size_t len = 0;
    const char *held = si_attr_text(a, &len);
    CHECK((held == NULL) == (state == SI_UNREADABLE), "a text unless unreadable (state %d)", state);
    CHECK(held != NULL || len == 0, "no text, no length");
    size_t n = len < size - 1 ? len : size - 1;
    memcpy(text, held ? held : "", n);
    text[n] = '\0';
    return state;
}

static void attr_files(int n, char **paths)
{
    si_attr **files = calloc((size_t)n + 1, sizeof *files);
    uint8_t *states = calloc((size_t)n + 1, 1);
    for (int i = 0; i < n; i++)
        files[i] = si_attr_open(paths[i]);
    size_t changed = si_attr_read(files, (size_t)n, states, page);
    CHECK(changed == (size_t)n, "first read: every file changed or unreadable (%zu of %d)", changed, n);
    for (int i = 0; i < n; i++)
        CHECK(states[i] == SI_CHANGED || states[i] == SI_UNREADABLE, "%s: state %d", paths[i], states[i]);
    size_t unreadable = 0;
    for (int i = 0; i < n; i++)
        unreadable += states[i] == SI_UNREADABLE;
    changed = si_attr_read(files, (size_t)n, states, page);
    CHECK(changed == unreadable, "read again: only the unreadable ones (%zu, not %zu)", changed, unreadable);
    for (int i = 0; i < n; i++)
        si_attr_close(files[i]);
    CHECK(si_attr_read(files, 0, states, page) == 0, "no files");
    free(files);
    free(states);
}

static void attrs(void)
{
    char dir[] = "/tmp/test_sysints.XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[64], other[64], fifo[64], text[64];
    snprintf(path, sizeof path, "%s/9", dir);
    snprintf(other, sizeof other, "%s/new", dir);
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    si_attr *a = si_attr_open(path);
    size_t len = 7;
    CHECK(si_attr_text(a, &len) == NULL && len == 0, "no text before a read");
    CHECK(attr_state(a, text, sizeof text) == SI_UNREADABLE, "missing");
    CHECK(attr_state(a, text, sizeof text) == SI_UNREADABLE, "missing: every read tells it");
    write_file(path, "");
    CHECK(attr_state(a, text, sizeof text) == SI_CHANGED && text[0] == '\0', "made, empty: changed");
    CHECK(attr_state(a, text, sizeof text) == SI_SAME, "empty again: the same");
    write_file(path, "one");
    CHECK(attr_state(a, text, sizeof text) == SI_CHANGED && strcmp(text, "one") == 0, "written: %s", text);
    CHECK(attr_state(a, text, sizeof text) == SI_SAME && strcmp(text, "one") == 0, "the same: %s", text);
    write_file(path, "two");
    CHECK(attr_state(a, text, sizeof text) == SI_CHANGED && strcmp(text, "two") == 0, "same length: %s", text);
    write_file(other, "three");
    rename(other, path);
    CHECK(attr_state(a, text, sizeof text) == SI_CHANGED && strcmp(text, "three") == 0, "renamed over: %s", text);
    write_file(other, "three");
    rename(other, path);
    CHECK(attr_state(a, text, sizeof text) == SI_SAME, "renamed over by the same bytes: the same");
    int old = open(path, O_WRONLY); /* MovingText's rule: a text that moved is not looked at */
    write_file(other, "four");
    rename(other, path);
    CHECK(pwrite(old, "thre3", 5, 0) == 5, "a write through the old file");
    CHECK(attr_state(a, text, sizeof text) == SI_CHANGED && strcmp(text, "thre3") == 0, "moved: the old file, %s", text);
    CHECK(attr_state(a, text, sizeof text) == SI_CHANGED && strcmp(text, "four") == 0, "repeated: the new one, %s",
          text);
    close(old);
    old = open(path, O_WRONLY);
    unlink(path);
    CHECK(pwrite(old, "five", 4, 0) == 4, "a write through the deleted file");
    CHECK(attr_state(a, text, sizeof text) == SI_CHANGED && strcmp(text, "five") == 0, "moved, deleted: %s", text);
    close(old);
    CHECK(attr_state(a, text, sizeof text) == SI_UNREADABLE, "deleted");
    write_file(path, "three");
    CHECK(attr_state(a, text, sizeof text) == SI_CHANGED && strcmp(text, "three") == 0, "made again: %s", text);
    char *big = malloc(SI_CHUNK + 2);
    memset(big, 'x', SI_CHUNK + 1);
    big[SI_CHUNK + 1] = '\0';
    write_file(path, big);
    CHECK(attr_state(a, text, sizeof text) == SI_CHANGED, "grown");
    CHECK(si_attr_text(a, &len) != NULL && len == SI_CHUNK, "one read of SI_CHUNK bytes: %zu", len);
    big[SI_CHUNK] = 'y'; /* past what is read: not seen */
    write_file(path, big);
    CHECK(attr_state(a, text, sizeof text) == SI_SAME, "a change past the read");
    free(big);
    unlink(path);
    si_attr_close(a);
    si_attr_close(NULL);

    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
    si_attr *pipe = si_attr_open(fifo);
    CHECK(attr_state(pipe, text, sizeof text) == SI_UNREADABLE, "a FIFO is not read (nor waited on)");
    si_attr_close(pipe);
    unlink(fifo);

    write_file(path, "");
    int fd = open(path, O_RDWR);
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fdinfo/%d", fd);
    si_attr *mine = si_attr_open(self);
    CHECK(attr_state(mine, text, sizeof text) == SI_CHANGED && strncmp(text, "pos:\t0\n", 7) == 0, "%s", text);
    CHECK(attr_state(mine, text, sizeof text) == SI_SAME, "its fd as it was");
    CHECK(write(fd, "abc", 3) == 3, "write");
    CHECK(attr_state(mine, text, sizeof text) == SI_CHANGED && strncmp(text, "pos:\t3\n", 7) == 0, "%s", text);
    close(fd);
    CHECK(attr_state(mine, text, sizeof text) == SI_UNREADABLE, "its fd closed");
    si_attr_close(mine);
    unlink(path);
    rmdir(dir);
}

/* SI_MOVING: the path looked at only after a read that repeats; a file renamed over is seen on that read, a write
 * through the old one after it is read while it moves, a deleted file gives no value and a new one is opened. */
static void moving(void)
{
    char dir[] = "/tmp/test_sysints.XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[64], other[64];
    snprintf(path, sizeof path, "%s/energy_uj", dir);
    snprintf(other, sizeof other, "%s/new", dir);
    write_file(path, "100\n");
    const char *paths[] = {path};
    si_files *f = si_open(paths, 1, SI_MOVING);
    uint8_t want = 1, state;
    int64_t value;
    si_read(f, &want, &value, &state);
    CHECK(state == SI_INT && value == 100, "first read: %d %lld", state, (long long)value);
    write_file(path, "150\n");
    si_read(f, &want, &value, &state);
    CHECK(value == 150, "moved in place: %lld", (long long)value);
    write_file(other, "200\n");
    rename(other, path);
    si_read(f, &want, &value, &state);
    CHECK(value == 200, "renamed over, the old one repeating: the new file at once: %lld", (long long)value);
    FILE *old = fopen(path, "r+");
    write_file(other, "300\n");
    rename(other, path);
    fputs("170\n", old);
    fflush(old);
    si_read(f, &want, &value, &state);
    CHECK(value == 170, "a write through the replaced file: it moved, read: %lld", (long long)value);
    fclose(old);
    si_read(f, &want, &value, &state);
    CHECK(value == 300, "then it repeats: the new file: %lld", (long long)value);
    unlink(path);
    si_read(f, &want, &value, &state);
    CHECK(state == SI_NONE && value == 0, "deleted: %d", state);
    write_file(path, "400\n");
    si_read(f, &want, &value, &state);
    CHECK(state == SI_INT && value == 400, "made again: %lld", (long long)value);
    si_close(f);
    unlink(path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    parse_cases();
    read_files(argc - 1, argv + 1);
    replaced();
    moving();
    attr_files(argc - 1, argv + 1);
    attrs();
    printf("test_sysints: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
