/* C tests of the DRM fd walk, meant to run under ASan/UBSan (make test-native-sanitize).
 *
 * Usage: test_drmfds PROC_ROOT...  Builds a tree of odd cases in a temporary folder and checks its pairs
 * exactly (DRM links by canonical names, captured processes, odd names, a FIFO), walks it and every given
 * root with no room, one pair of room and enough room (the count never changes, nothing is written past
 * the room given), and checks the name rule case by case. The pairs' order is held to the Python twin's
 * by tests/test_drm_fdwalk.py.
 */
#define _GNU_SOURCE
#include "drmfds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_check.h"

static char root[] = "/tmp/test_drmfds-XXXXXX";

static void at(const char *rel, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", root, rel);
}

static void make_dir(const char *rel)
{
    char path[512];
    at(rel, path, sizeof path);
    CHECK(mkdir(path, 0755) == 0, "mkdir %s", rel);
}

static void make_link(const char *target, const char *rel)
{
    char path[512];
    at(rel, path, sizeof path);
    CHECK(symlink(target, path) == 0, "symlink %s", rel);
}

static void make_file(const char *rel)
{
    char path[512];
    at(rel, path, sizeof path);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "create %s", rel);
    if (f)
        fclose(f);
}

static void build_tree(void)
{
    CHECK(mkdtemp(root) != NULL, "mkdtemp");
    const char *dirs[] = {"100", "100/fd", "100/fdinfo", "25", "25/fd", "30", "30/fdinfo", "32", "0040",
                          "0040/fd", "35", "35/fd"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
        make_dir(dirs[i]);
    make_link("/dev/dri/renderD128", "100/fd/3");
    make_link("/dev/dri/card0", "100/fd/12");
    make_link("socket:[9]", "100/fd/4");
    make_link("/dev/dri", "100/fd/5");
    make_link("/dev/dri/", "100/fd/6");
    make_link("/dev/drix/card0", "100/fd/7");
    make_link("/dev/dri/card1", "100/fd/007");
    make_link("/dev/dri/card1", "100/fd/x");
    make_file("100/fd/9");
    make_link("/dev/dri/renderD128", "25/fd/2");
    make_file("30/fdinfo/5");
    make_link("/dev/dri/card0", "0040/fd/3");
    make_file("33");
    char fifo[512];
    at("35/fd/3", fifo, sizeof fifo);
    CHECK(mkfifo(fifo, 0644) == 0, "mkfifo");
    at("34", fifo, sizeof fifo);
    CHECK(mkfifo(fifo, 0644) == 0, "mkfifo");
}

static int by_pair(const void *a, const void *b)
{
    const int64_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

static void test_odd_tree(void)
{
    int64_t pairs[2 * 16];
    long n = df_walk(root, pairs, 16);
    CHECK(n == 5, "pairs %ld", n);
    if (n != 5)
        return;
    qsort(pairs, (size_t)n, 2 * sizeof *pairs, by_pair);
    const int64_t want[] = {25, 2, 30, DF_NO_LINKS, 100, 3, 100, 6, 100, 12};
    for (int i = 0; i < 10; i++)
        CHECK(pairs[i] == want[i], "pair value %d: %lld", i, (long long)pairs[i]);
}

/* The count with no room, one pair of room and enough room: the same, and nothing written past the room. */
static void test_room(const char *proc_root)
{
    long none = df_walk(proc_root, NULL, 0);
    int64_t *one = malloc(2 * sizeof *one); /* exactly one pair: ASan catches a write past it */
    long first = df_walk(proc_root, one, 1);
    free(one);
    size_t cap = none > 0 ? (size_t)none : 1;
    int64_t *all = malloc(2 * cap * sizeof *all);
    long again = df_walk(proc_root, all, cap);
    for (long i = 0; i < again && i < (long)cap; i++)
        CHECK(all[2 * i] > 0 || all[2 * i] == 0, "pid %lld", (long long)all[2 * i]);
    free(all);
    CHECK(first == none && again == none, "%s: counts %ld %ld %ld", proc_root, none, first, again);
}

static void test_names(void)
{
    const struct {
        const char *name;
        int ok;
        int64_t value;
    } cases[] = {{"0", 1, 0}, {"7", 1, 7}, {"4194304", 1, 4194304}, {"999999999999999999", 1, 999999999999999999LL},
                 {"1000000000000000000", 0, 0}, {"", 0, 0}, {"00", 0, 0}, {"07", 0, 0}, {"1a", 0, 0},
                 {"-1", 0, 0}, {"+1", 0, 0}, {" 1", 0, 0}, {"\xd9\xa1", 0, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        size_t n = strlen(cases[i].name);
        char *copy = malloc(n ? n : 1); /* exactly the name: no terminator to lean on */
        memcpy(copy, cases[i].name, n);
        int64_t value = -5;
        int ok = df_canonical(copy, n, &value);
        free(copy);
        CHECK(ok == cases[i].ok && (!ok || value == cases[i].value), "name case %zu", i);
    }
}

static void remove_tree(void)
{
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", root);
    CHECK(system(command) == 0, "rm");
}

int main(int argc, char **argv)
{
    build_tree();
    test_odd_tree();
    test_room(root);
    CHECK(df_walk("/nonexistent/proc", NULL, 0) < 0, "a missing root is -errno");
    for (int i = 1; i < argc; i++)
        test_room(argv[i]);
    test_names();
    remove_tree();
    printf("test_drmfds: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
