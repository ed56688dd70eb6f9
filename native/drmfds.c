/* tracklab-sysmon C helper, DRM fds: readlinkat per fd under every PID/fd/ (see drmfds.h). */
#define _GNU_SOURCE
#include "drmfds.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { DENTS_BYTES = 32768, MAX_DIGITS = 18 };
/* Non-blocking: a FIFO planted in a captured tree must not hang the walk. */
enum { DIR_FLAGS = O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK };

static const char DRI[] = "/dev/dri/";

int df_canonical(const char *name, size_t n, int64_t *value)
{
    if (n == 0 || n > MAX_DIGITS || (name[0] == '0' && n > 1))
        return 0;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (name[i] < '0' || name[i] > '9')
            return 0;
        v = v * 10 + (name[i] - '0');
    }
    *value = v;
    return 1;
}

static void put_pair(int64_t *pairs, size_t capacity, size_t at, int64_t pid, int64_t fd)
{
    if (at < capacity) {
        pairs[2 * at] = pid;
        pairs[2 * at + 1] = fd;
    }
}

/* Calls `each(dir_fd, name, n, arg)` for every entry of the open directory; -errno when it cannot be
 * listed. Reads with getdents64 into `dents`, as procwalk.c does. */
typedef void each_entry(int dir_fd, const char *name, size_t n, void *arg);

static int list(int dir_fd, char *dents, each_entry *each, void *arg)
{
    for (;;) {
        long got = syscall(SYS_getdents64, dir_fd, dents, DENTS_BYTES);
        if (got < 0)
            return -errno;
        if (got == 0)
            return 0;
        /* linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name */
        for (long off = 0; off + 19 < got;) {
            unsigned short reclen;
            memcpy(&reclen, dents + off + 16, sizeof reclen);
            if (reclen < 20 || off + reclen > got) /* never from a sane kernel: stop, don't overread */
                return 0;
            const char *name = dents + off + 19;
            each(dir_fd, name, strnlen(name, (size_t)reclen - 19), arg);
            off += reclen;
        }
    }
}

struct walk {
    int64_t *pairs;
    size_t capacity, found;
    int64_t pid;
    char fd_dents[DENTS_BYTES];
};

static void each_fd(int dir_fd, const char *name, size_t n, void *arg)
{
    struct walk *w = arg;
    int64_t fd;
    if (!df_canonical(name, n, &fd))
        return;
    /* Only the prefix matters: a longer target is cut short, not an error. */
    char target[sizeof DRI];
    ssize_t len = readlinkat(dir_fd, name, target, sizeof target);
    if (len >= (ssize_t)(sizeof DRI - 1) && memcmp(target, DRI, sizeof DRI - 1) == 0)
        put_pair(w->pairs, w->capacity, w->found++, w->pid, fd);
}

static void each_process(int root_fd, const char *name, size_t n, void *arg)
{
    struct walk *w = arg;
    char path[MAX_DIGITS + sizeof "/fdinfo"];
    if (!df_canonical(name, n, &w->pid))
        return;
    memcpy(path, name, n);
    memcpy(path + n, "/fd", sizeof "/fd");
    int fd_dir = openat(root_fd, path, DIR_FLAGS);
    if (fd_dir >= 0) {
        size_t before = w->found;
        if (list(fd_dir, w->fd_dents, each_fd, w) < 0) /* as os.listdir raising: nothing of this process */
            w->found = before;
        close(fd_dir);
        return;
    }
    memcpy(path + n, "/fdinfo", sizeof "/fdinfo");
    int info_dir = openat(root_fd, path, DIR_FLAGS);
    if (info_dir >= 0) {
        close(info_dir);
        put_pair(w->pairs, w->capacity, w->found++, w->pid, DF_NO_LINKS);
    }
}

long df_walk(const char *proc_root, int64_t *pairs, size_t capacity)
{
    /* Two listing buffers (64 KiB) on the heap: the walk may run on a thread with a small stack. */
    struct walk *w = malloc(sizeof *w);
    char *root_dents = malloc(DENTS_BYTES);
    int root_fd = w && root_dents ? open(proc_root, DIR_FLAGS) : -1;
    long rc = w && root_dents ? -errno : -ENOMEM;
    if (root_fd >= 0) {
        *w = (struct walk){.pairs = pairs, .capacity = capacity};
        rc = list(root_fd, root_dents, each_process, w);
        rc = rc < 0 ? rc : (long)w->found;
        close(root_fd);
    }
    free(root_dents);
    free(w);
    return rc;
}
