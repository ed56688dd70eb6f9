/* The DRM fd walk's interface as cffi reads it (no preprocessor here): kept in step with drmfds.h. */

enum { DF_NO_LINKS = -1 };

long df_walk(const char *proc_root, int64_t *pairs, size_t capacity);
int df_canonical(const char *name, size_t n, int64_t *value);
