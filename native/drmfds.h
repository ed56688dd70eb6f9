/* tracklab-sysmon C helper, DRM fds: one call walks proc_root and finds every fd that is a DRM device.
 *
 * It mirrors drm_fdwalk.drm_fds (the Python twin): for every entry of proc_root named by a canonical
 * decimal (ASCII digits, no leading zero, at most 18 digits) it lists PID/fd/ and reads each link named
 * by a canonical decimal; a link whose target starts with "/dev/dri/" gives the pair (pid, fd). A link
 * that cannot be read (closed since the listing, not a link) is skipped, as a process folder that
 * cannot be listed. A process without a listable fd/ but with a listable fdinfo/ (a captured tree)
 * gives (pid, DF_NO_LINKS): Python lists its fdinfo/ and lets the parser tell the files apart.
 *
 * Pairs come in the listing's order. df_walk returns how many were found, which may exceed `capacity`:
 * only what fits is written, and the caller grows its buffer and walks again.
 */
#ifndef TRACKLAB_DRMFDS_H
#define TRACKLAB_DRMFDS_H

#include <stddef.h>
#include <stdint.h>

enum { DF_NO_LINKS = -1 };

/* The (pid, fd) pairs as pairs[2 * i], pairs[2 * i + 1]; the count found, or -errno when proc_root
 * cannot be listed. */
long df_walk(const char *proc_root, int64_t *pairs, size_t capacity);

/* 1 when name[0, n) is a canonical decimal of at most 18 digits (its value in *value), else 0. */
int df_canonical(const char *name, size_t n, int64_t *value);

#endif
