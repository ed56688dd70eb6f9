/* tracklab-sysmon C helper, sysfs integer files: many one-value files read in one call through kept descriptors.
 *
 * It mirrors _sysfs.KeptFile.read_int file for file (the Python twin, collectors/sysfs_ints.py, reads each
 * through one): a descriptor kept per path, the path's identity checked every `recheck_every` reads, one pread
 * of at most a page from offset 0, a failed open or read gives no value (a failed read reopens next time).
 * si_read_text reads short texts the same way (runtime_status), telling which changed since the last call.
 * `recheck_every` SI_MOVING reads each file as _sysfs.MovingFile does (counters that move every read: RAPL's
 * energy_uj): the read comes first, and the path is stat()ed only when that read failed, repeats the one before it
 * or is longer than SI_SEEN bytes (what is kept of it); a path that names another file now is opened and read again.
 * si_attr_read reads kept files as _sysfs.MovingText.read_bytes does (a DRM client's /proc/PID/fdinfo/N), telling
 * which changed since their last read.
 * Text is parsed as Python's int() parses bytes when it is ASCII whitespace, an optional sign and at most 18
 * digits around it; text int() would refuse for sure is no value (SI_NONE); anything else (underscores, longer
 * numbers) is SI_DEFER and the caller reads the file's kept descriptor (si_fd) and lets int() decide.
 */
#ifndef TRACKLAB_SYSINTS_H
#define TRACKLAB_SYSINTS_H

#include <stddef.h>
#include <stdint.h>

enum { SI_INT = 0, SI_NONE = 1, SI_DEFER = 2, SI_SKIPPED = 3 }; /* a file's state after si_read */
enum { SI_PAGE = 4096 };                                        /* bytes read of each file, as read_int */
enum { SI_MOVING = 0 }; /* recheck_every: the path stat()ed only after a read that failed or repeats (above) */
enum { SI_SEEN = 64 };  /* bytes of a moving file's last read kept to tell a repeat (_sysfs.MovingFile.COMPARED) */

typedef struct si_files si_files;

/* `n` paths (copied), each checked for a replaced file every `recheck_every` reads (SI_MOVING: after a read that
 * failed or repeats); NULL without memory. */
si_files *si_open(const char *const *paths, size_t n, int recheck_every);
void si_close(si_files *f);

/* Reads file i where want[i] (else it is left alone: SI_SKIPPED) into values[i] and states[i] (the value is 0
 * unless SI_INT). Returns how many files are not SI_INT: 0, and values is the whole answer. */
size_t si_read(si_files *f, const uint8_t *want, int64_t *values, uint8_t *states);

/* Reads every file as text (at most SI_PAGE bytes; no parse): changed[i] is 1 where its bytes, or whether it
 * could be read, differ from the previous call's (every file on the first call). Returns how many changed, or
 * (size_t)-1 without memory (before any file is read). */
size_t si_read_text(si_files *f, uint8_t *changed);

/* File i's text as last read by si_read_text and its length; NULL when it could not be read. */
const char *si_text(const si_files *f, size_t i, size_t *len);

/* File i's kept descriptor (-1 when closed): where si_read said SI_DEFER it is open and was just read. */
int si_fd(const si_files *f, size_t i);

/* Python's int() of the bytes, where this helper decides it: SI_INT with *value, SI_NONE (int() raises), or
 * SI_DEFER. */
int si_parse(const char *text, size_t len, int64_t *value);

/* A file read as _sysfs.MovingText.read_bytes reads it: its descriptor kept and read first; fstat()ed only when that
 * read failed or repeats the last text (kept whole: compared exactly), and opened again and read when its file has
 * no link left (deleted, or renamed over); opened non-blocking, regular files only; one pread of at most SI_CHUNK
 * bytes from offset 0; a failed open or read gives no text (a failed read closes the descriptor, so the next read
 * opens the path again). A text that moved was read from a file still being written, so it is not looked at: only
 * a write through the old file after it was replaced reads otherwise than KeptAttribute's fstat before each read.
 * Each is an object of its own: members of a set read together come and go one at a time (ClientWalk's clients),
 * each keeping its descriptor and last text. */
typedef struct si_attr si_attr;
enum { SI_CHUNK = 65536 };                                /* bytes of one pread, as KeptFile reads */
enum { SI_SAME = 0, SI_CHANGED = 1, SI_UNREADABLE = 2 }; /* a file's state after si_attr_read */

/* `path` (copied); nothing is opened before the first read. NULL without memory. */
si_attr *si_attr_open(const char *path);
void si_attr_close(si_attr *a);

/* Reads the n files into `page`, SI_CHUNK bytes the caller keeps (one per reader, not allocated per call):
 * states[i] is SI_SAME where the bytes are those of its previous read (which could be read), SI_CHANGED where they
 * differ or it is the first read (si_attr_text has them), SI_UNREADABLE where it could not be opened or read
 * (every such read). Returns how many are not SI_SAME, or (size_t)-1 without memory: then every file's last text
 * is forgotten, so the next call tells each one as changed. */
size_t si_attr_read(si_attr *const *files, size_t n, uint8_t *states, char *page);

/* The file's bytes as last read and their length; NULL (and 0) before a read and after one that failed. */
const char *si_attr_text(const si_attr *a, size_t *len);

#endif
