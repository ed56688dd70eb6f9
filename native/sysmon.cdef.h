/* The C helper's interface as cffi reads it (no preprocessor here): kept in step with sysmon.h. */

enum { SM_STAT, SM_DISKSTATS, SM_NET_DEV, SM_MEMINFO, SM_LOADAVG, SM_SNMP, SM_NFILES };
enum { SM_DEFER = -4096, SM_EPARSE = -4097, SM_ENOTABLE = -4098, SM_ENOTREG = -4099 };
enum { SM_CPU_ROW = 9, SM_DEV_ROW = 6, SM_MEM_FIELDS = 4 };
enum { SM_CORE_ROW = 12, SM_FREQ_READ = 0, SM_FREQ_NONE = 1, SM_FREQ_DEFER = 2, SM_MAX_FREQ_ID = 65536,
       SM_FREQ_RECHECK = 16 };

typedef struct sm_reader sm_reader;

sm_reader *sm_open(const char *proc_root);
void sm_close(sm_reader *reader);
void sm_reset(sm_reader *reader);
long sm_read(sm_reader *reader, int file);
const char *sm_text(const sm_reader *reader, int file);
long sm_process_count(sm_reader *reader);

typedef struct sm_cpu sm_cpu;
sm_cpu *sm_cpu_open(const char *sys_root);
void sm_cpu_close(sm_cpu *cpu);
long sm_cpu_parse(sm_cpu *cpu, const char *text, size_t len, double ticks);
long sm_cpu_update(sm_cpu *cpu, const double *total, const double *rows, size_t n);
const double *sm_cpu_rows(const sm_cpu *cpu);
double sm_cpu_overall(const sm_cpu *cpu);
const double *sm_cpu_total(const sm_cpu *cpu);
long sm_cpu_json(sm_cpu *cpu, const double *frequency, const double *temperature, const char **out);

long sm_parse_stat(const char *text, size_t len, double ticks, double *total, double *cores,
                   size_t capacity);
long sm_parse_diskstats(const char *text, size_t len, int64_t *rows, size_t capacity);
long sm_parse_net_dev(const char *text, size_t len, int64_t *rows, size_t capacity);
int sm_parse_meminfo(const char *text, size_t len, int64_t *fields);
int sm_parse_loadavg(const char *text, size_t len, double *loads, int64_t *tasks);
int sm_parse_tcp_established(const char *text, size_t len, int64_t *established);
