/* Kept descriptors as _sysfs.KeptFile keeps them: opened non-blocking, regular files only, reopened when the
 * path names another file (checked every `recheck_every` reads) or after a failed read. */
#ifndef TRACKLAB_SYSMON_KEPT_H
#define TRACKLAB_SYSMON_KEPT_H

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

struct kept_fd {
    int fd; /* -1: closed */
    dev_t dev; /* identity of the open file: a path that now names another is reopened */
    ino_t ino;
    int reads; /* since the path's identity was last checked */
};

static inline void kept_drop(struct kept_fd *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
}

/* `path` opened non-blocking, and regular files only: a FIFO planted under the root must not hang a read.
 * Returns the descriptor (its fstat in *st), -errno, or `not_regular` (negative) for anything but a regular
 * file. Shared with ibports.c, whose kept files are checked another way (fstat's link count). */
static inline int kept_open_path(const char *path, int not_regular, struct stat *st)
{
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    while (fd < 0 && errno == EINTR); /* Python retries an interrupted call (PEP 475) */
    if (fd < 0)
        return -errno;
    if (fstat(fd, st) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return not_regular;
    }
    return fd;
}

/* Opens `path` into `f` (see kept_open_path): 0, -errno or `not_regular`. */
static inline int kept_open(struct kept_fd *f, const char *path, int not_regular)
{
    struct stat st;
    int fd = kept_open_path(path, not_regular, &st);
    if (fd < 0)
        return fd;
    f->fd = fd;
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    f->reads = 0;
    return 0;
}

/* The kept descriptor of `path`, reopened when the path is gone or names another file now; the
 * identity is checked every `recheck_every` reads (1: every read), as KeptFile does. */
static inline int kept_current(struct kept_fd *f, const char *path, int recheck_every, int not_regular)
{
    struct stat st;
    if (f->fd >= 0 && ++f->reads >= recheck_every) {
        f->reads = 0;
        if (stat(path, &st) < 0 || st.st_dev != f->dev || st.st_ino != f->ino)
            kept_drop(f);
    }
    return f->fd >= 0 ? 0 : kept_open(f, path, not_regular);
}

#endif
