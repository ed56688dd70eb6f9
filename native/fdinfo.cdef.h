/* The DRM fdinfo parser's interface as cffi reads it (no preprocessor here): kept in step with fdinfo.h. */

enum { FI_CLIENT = 0, FI_NONE = 1, FI_DEFER = 2 };
enum { FI_MAX_COUNTERS = 96, FI_MAX_ITEMS = 48 };

typedef struct {
    uint32_t at, len;
    uint64_t busy;
    uint64_t total;
    uint64_t capacity;
    uint8_t has_total;
} fi_engine;

typedef struct {
    uint32_t at, len;
    uint64_t bytes;
} fi_region;

typedef struct {
    uint32_t driver_at, driver_len;
    uint32_t pdev_at, pdev_len;
    uint64_t client_id;
    uint32_t engines_count, regions_count;
    fi_engine engines[48];
    fi_region regions[48];
} fi_client;

int fi_parse(const char *text, size_t len, fi_client *out);
