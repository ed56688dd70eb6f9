/* The sysfs integer files' interface as cffi reads it (no preprocessor here): kept in step with sysints.h. */

enum { SI_INT = 0, SI_NONE = 1, SI_DEFER = 2, SI_SKIPPED = 3 };
enum { SI_PAGE = 4096 };
enum { SI_MOVING = 0 };
enum { SI_SEEN = 64 };

typedef struct si_files si_files;

si_files *si_open(const char *const *paths, size_t n, int recheck_every);
void si_close(si_files *f);
size_t si_read(si_files *f, const uint8_t *want, int64_t *values, uint8_t *states);
size_t si_read_text(si_files *f, uint8_t *changed);
const char *si_text(const si_files *f, size_t i, size_t *len);
int si_fd(const si_files *f, size_t i);
int si_parse(const char *text, size_t len, int64_t *value);

typedef struct si_attr si_attr;
enum { SI_CHUNK = 65536 };
enum { SI_SAME = 0, SI_CHANGED = 1, SI_UNREADABLE = 2 };

si_attr *si_attr_open(const char *path);
void si_attr_close(si_attr *a);
size_t si_attr_read(si_attr *const *files, size_t n, uint8_t *states, char *page);
const char *si_attr_text(const si_attr *a, size_t *len);
