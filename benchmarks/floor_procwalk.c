/* Syscall floor for one process walk: the bare reads, with nothing parsed (a shared library for ctypes).
 *
 * floor_walk(root): getdents64 over root and, for each all-digit entry, openat "PID/stat", one read
 * of 16 KiB and close: the same syscalls as pw_walk (native/procwalk.c), so the walk's cost above
 * this is its parsing and the Python that builds the records.
 * floor_kept(root): the same bytes through descriptors kept from the first call (one pread at offset
 * 0 per process, no open, no close, no listing): what keeping a descriptor per process would cost.
 * Processes that appear later are not read; it is a floor, not a walk. Returns the files read.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { DENTS = 32768, TEXT = 16384, MAX_KEPT = 65536 };

static char dents[DENTS], text[TEXT];
static int kept[MAX_KEPT], nkept = -1;

static int all_digits(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* Calls `each(dir_fd, name)` for every all-digit entry of root; returns how many, or -1. */
static long for_each_pid(const char *root, long (*each)(int, const char *))
{
    int dir = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return -1;
    long count = 0;
    for (long n; (n = syscall(SYS_getdents64, dir, dents, DENTS)) > 0;) {
        for (long off = 0; off < n;) {
            unsigned short reclen;
            memcpy(&reclen, dents + off + 16, sizeof reclen);
            const char *name = dents + off + 19;
            if (all_digits(name))
                count += each(dir, name);
            off += reclen;
        }
    }
    close(dir);
    return count;
}

static long read_once(int dir, const char *name)
{
    char path[300];
    strcpy(stpcpy(path, name), "/stat");
    int fd = openat(dir, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    long got = read(fd, text, TEXT);
    close(fd);
    return got > 0;
}

static long keep(int dir, const char *name)
{
    char path[300];
    strcpy(stpcpy(path, name), "/stat");
    int fd = nkept < MAX_KEPT ? openat(dir, path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd < 0)
        return 0;
    kept[nkept++] = fd;
    return 1;
}

long floor_walk(const char *root)
{
    return for_each_pid(root, read_once);
}

long floor_kept(const char *root)
{
    if (nkept < 0) {
        nkept = 0;
        for_each_pid(root, keep);
    }
    long count = 0;
    for (int i = 0; i < nkept; i++)
        count += pread(kept[i], text, TEXT, 0) > 0;
    return count;
}
