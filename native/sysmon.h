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
/* A CPU tick's rows: [id, usage %, frequency MHz, frequency source, user, ..., steal]; usage and
 * frequency are NaN where unknown (Python's None). Frequency source: SM_FREQ_READ (the value, or
 * NaN when the cpufreq file could not be read), SM_FREQ_NONE (no cpufreq file for this CPU: the
 * caller asks /proc/cpuinfo) or SM_FREQ_DEFER (text outside the canonical subset, or an id too
 * large to keep: the caller reads that CPU's file itself). A kept cpufreq file's path is stat()ed
 * for a replaced file only every SM_FREQ_RECHECK reads (a failed read reopens it at once). */
enum { SM_CORE_ROW = 12, SM_FREQ_READ = 0, SM_FREQ_NONE = 1, SM_FREQ_DEFER = 2, SM_MAX_FREQ_ID = 65536,
       SM_FREQ_RECHECK = 16 };

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

/* Per-CPU tick state: the previous CPU times (for usage) and one kept cpufreq file per CPU under
 * sys_root/devices/system/cpu. NULL only when memory is exhausted. */
typedef struct sm_cpu sm_cpu;
sm_cpu *sm_cpu_open(const char *sys_root);
void sm_cpu_close(sm_cpu *cpu);
/* One CPU tick from /proc/stat's text (as sm_read left it): parse, then as sm_cpu_update.
 * Returns the number of CPUs, -ENOMEM, SM_EPARSE (no aggregate line) or SM_DEFER (text the caller
 * must parse: it then hands the parsed rows to sm_cpu_update). */
long sm_cpu_parse(sm_cpu *cpu, const char *text, size_t len, double ticks);
/* Usage against the previous tick's times (matched by CPU id, rounded to 2 decimals exactly as
 * Python's round) and frequency for `n` parsed rows (SM_CPU_ROW each); becomes the previous tick.
 * Returns n, or -ENOMEM. */
long sm_cpu_update(sm_cpu *cpu, const double *total, const double *rows, size_t n);
/* The last tick's rows (SM_CORE_ROW each), and overall usage (NaN when unknown). */
const double *sm_cpu_rows(const sm_cpu *cpu);
double sm_cpu_overall(const sm_cpu *cpu);
/* The last tick's aggregate times (8 doubles). */
const double *sm_cpu_total(const sm_cpu *cpu);
/* The last tick's cores as the JSON array the wire writes (orjson's bytes exactly), with `frequency`
 * and `temperature` (NULL: the tick's own frequency; no temperatures) as the caller completed them,
 * NaN for null. Sets *out (valid until the next call) and returns the length, -ENOMEM, or SM_DEFER
 * for a value outside the exact decimal forms (the caller encodes those cores itself). */
long sm_cpu_json(sm_cpu *cpu, const double *frequency, const double *temperature, const char **out);

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
