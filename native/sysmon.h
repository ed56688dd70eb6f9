/* tracklab-sysmon C helper: reads the per-tick /proc counters into caller-provided buffers.
 *
 * A reader keeps one file descriptor per file and re-reads it with pread at offset 0; its text
 * buffers grow only when a file outgrows them, so a steady tick allocates nothing. The parsers
 * are pure (text in, numbers out) and mirror tracklab_sysmon/collectors/procfs.py exactly on
 * canonical kernel text (printable ASCII, tabs, newlines, unsigned decimals). On anything else
 * they return SM_DEFER and the Python wrapper hands the same bytes to the Python parser, so the
 * two backends agree by construction on odd input and by test on the rest.
 *
 * Row parsers return the number of rows found, which may exceed `capacity`: only the first
 * `capacity` rows are written, and the caller grows its buffer and parses the same text again.
 */
#ifndef TRACKLAB_SYSMON_H
#define TRACKLAB_SYSMON_H

#include <stddef.h>
#include <stdint.h>

enum { SM_STAT, SM_DISKSTATS, SM_NET_DEV, SM_MEMINFO, SM_LOADAVG, SM_SNMP, SM_NFILES };
/* Below -4095 so they never collide with a negated errno. */
enum { SM_DEFER = -4096, SM_EPARSE = -4097, SM_ENOTABLE = -4098, SM_ENOTREG = -4099 };
/* cores: [id, user, nice, system, idle, iowait, irq, softirq, steal] as doubles;
 * disks: [name offset, name length, reads, read bytes, writes, write bytes];
 * interfaces: [name offset, name length, rx bytes, rx packets, tx bytes, tx packets];
 * meminfo: [total, available, swap total, swap free] in bytes, -1 when absent. */
enum { SM_CPU_ROW = 9, SM_DEV_ROW = 6, SM_MEM_FIELDS = 4 };

typedef struct sm_reader sm_reader;

/* A reader of files under proc_root; NULL only when memory is exhausted. Opens nothing yet. */
sm_reader *sm_open(const char *proc_root);
void sm_close(sm_reader *reader);
/* Close every kept descriptor; the next read opens them again. */
void sm_reset(sm_reader *reader);
/* Read one SM_* file whole: its length, -errno, or SM_ENOTREG when the path is not a regular file
 * (opened non-blocking, so a FIFO never hangs). The path is stat()ed first and reopened when it
 * names another file now (deleted, or renamed over); any read error also closes it, so the next
 * read opens it again. The text stays valid until the next read. */
long sm_read(sm_reader *reader, int file);
const char *sm_text(const sm_reader *reader, int file);
/* Entries of proc_root whose names are all ASCII digits, or -errno. */
long sm_process_count(sm_reader *reader);

/* Returns the number of cpuN rows, SM_EPARSE without an aggregate `cpu` line, or SM_DEFER. */
long sm_parse_stat(const char *text, size_t len, double ticks, double *total, double *cores,
                   size_t capacity);
long sm_parse_diskstats(const char *text, size_t len, int64_t *rows, size_t capacity);
long sm_parse_net_dev(const char *text, size_t len, int64_t *rows, size_t capacity);
/* 0, or SM_DEFER. */
int sm_parse_meminfo(const char *text, size_t len, int64_t *fields);
/* 0, SM_EPARSE or SM_DEFER; loads[3], tasks[2] = running, threads. */
int sm_parse_loadavg(const char *text, size_t len, double *loads, int64_t *tasks);
/* 0, SM_EPARSE (no readable CurrEstab), SM_ENOTABLE (no Tcp table) or SM_DEFER. */
int sm_parse_tcp_established(const char *text, size_t len, int64_t *established);

#endif
