/* The InfiniBand ports' interface as cffi reads it (no preprocessor here): kept in step with ibports.h. */

enum { IB_FILES = 5, IB_COUNTERS = 4, IB_STATE = 4 };
enum { IB_PAGE = 4096 };
enum { IB_TEXT = 64 };
enum { IB_OK = 0, IB_ABSENT = 1, IB_UNREADABLE = 2, IB_BAD_TEXT = 3, IB_SATURATED = 4, IB_TOO_BIG = 5 };
enum { IB_NOT_REGULAR = -1048576 };
enum { IB_TEXTS_CHANGED = 1, IB_COUNTERS_CHANGED = 2 };

typedef struct {
    const char *path;
    int fd;
} ib_file;

typedef struct {
    ib_file file[5];
    int words;
    ...;
} ib_port;

size_t ib_read(ib_port *const *ports, size_t n, double now, int32_t *length, char *text, uint64_t *values,
               double *rates, uint8_t *status);
int ib_read_tier(ib_file *files, size_t n_texts, size_t n, int32_t *length, char *text, uint64_t *values,
                 uint8_t *known);
void ib_files_close(ib_file *files, size_t n);
int ib_parse_counter(const char *text, size_t n, uint64_t *value);
