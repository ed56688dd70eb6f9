/* The process walk's interface as cffi reads it (no preprocessor here): kept in step with procwalk.h. */

enum { PW_KIND, PW_PID, PW_PPID, PW_CPU_TICKS, PW_THREADS, PW_START_TICKS, PW_RSS_PAGES, PW_RAW_AT,
       PW_RAW_LEN, PW_COLUMNS };
enum { PW_PARSED, PW_DEFERRED_STAT, PW_DEFERRED_ENTRY };
enum { PW_F_PID, PW_F_PPID, PW_F_CPU_TICKS, PW_F_THREADS, PW_F_START_TICKS, PW_F_RSS_PAGES, PW_F_NAME_AT,
       PW_F_NAME_LEN, PW_F_STATE, PW_FIELDS };
enum { PW_READ_BYTES = 16384 };
enum { PW_DEFER = -4096, PW_EPARSE = -4097 };

typedef struct {
    int64_t *rows;
    char *states;
    size_t capacity;
    char *names;
    size_t names_cap;
    char *raw;
    size_t raw_cap;
    size_t names_used;
    size_t raw_used;
    size_t deferred;
} pw_buffers;

typedef struct pw_walker pw_walker;

pw_walker *pw_open(const char *proc_root);
void pw_close(pw_walker *walker);
void pw_reset(pw_walker *walker);
long pw_walk(pw_walker *walker, pw_buffers *out);
int pw_parse_stat(const char *text, size_t len, int64_t *fields);
