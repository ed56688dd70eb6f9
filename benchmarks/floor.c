/* Syscall floor for one sample: the bare reads the hot path must do, with nothing parsed.
 *
 * Usage: floor PROC_ROOT ITERATIONS
 * Keeps one descriptor per file and prints two lines, nanoseconds per sample:
 *   single <ns>   one pread at offset 0 per file (what a reader that trusts one read would do)
 *   eof <ns>      pread until end of file per file (a short read is not the end for seq_files)
 *   full <ns>     pread until end of file per file, plus getdents64 over PROC_ROOT (what the
 *                 C helper and the Python twin do: the floor for the same work)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static const char *const NAMES[] = {"stat", "diskstats", "net/dev", "meminfo", "loadavg", "net/snmp"};
enum { NFILES = sizeof NAMES / sizeof NAMES[0], BUF = 1 << 20 };

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: floor PROC_ROOT ITERATIONS\n");
        return 2;
    }
    long iterations = atol(argv[2]);
    static char buf[BUF];
    int fds[NFILES];
    char path[4096];
    for (int i = 0; i < NFILES; i++) {
        snprintf(path, sizeof path, "%s/%s", argv[1], NAMES[i]);
        fds[i] = open(path, O_RDONLY | O_CLOEXEC);
        if (fds[i] < 0) {
            perror(path);
            return 1;
        }
    }
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        perror(argv[1]);
        return 1;
    }
    volatile long sink = 0;
    double start = now_ns();
    for (long k = 0; k < iterations; k++)
        for (int i = 0; i < NFILES; i++)
            sink += pread(fds[i], buf, BUF, 0);
    printf("single %.0f\n", (now_ns() - start) / iterations);
    start = now_ns();
    for (long k = 0; k < iterations; k++)
        for (int i = 0; i < NFILES; i++) {
            ssize_t n, off = 0;
            while ((n = pread(fds[i], buf + off, BUF - off, off)) > 0)
                off += n;
            sink += off;
        }
    printf("eof %.0f\n", (now_ns() - start) / iterations);
    start = now_ns();
    for (long k = 0; k < iterations; k++) {
        for (int i = 0; i < NFILES; i++) {
            ssize_t n, off = 0;
            while ((n = pread(fds[i], buf + off, BUF - off, off)) > 0)
                off += n;
            sink += off;
        }
        lseek(dir, 0, SEEK_SET);
        long n;
        while ((n = syscall(SYS_getdents64, dir, buf, BUF)) > 0)
            sink += n;
    }
    printf("full %.0f\n", (now_ns() - start) / iterations);
    return sink < 0;
}
