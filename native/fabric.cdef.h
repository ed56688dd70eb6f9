/* The fabric counters' interface as cffi reads it (no preprocessor here): kept in step with fabric.h. */

enum { FB_BASELINES = 8 };
enum { FB_RECORD_BYTES = 40 };

typedef struct { ...; } fb_counter;

size_t fb_field_counters(const unsigned char *raw, size_t records, const uint32_t *place, uint64_t max_value,
                         uint64_t scale, uint64_t *values, uint8_t *known, size_t slots);
size_t fb_column_rates(fb_counter *column, size_t n, const uint64_t *values, const uint8_t *known, double now,
                       double *rates);

typedef int (*fb_field_values_fn)(void *device, int count, void *values);
typedef struct {
    fb_field_values_fn call;
    void *device;
    unsigned char *request;
    const uint32_t *place;
    fb_counter *column;
    uint32_t records;
    uint32_t slots;
    int32_t ret;
} fb_nvlink_gpu;
size_t fb_nvlink_read(fb_nvlink_gpu *const *gpus, size_t n, uint64_t max_value, uint64_t scale, double now,
                      uint64_t *values, uint8_t *known, double *rates, uint32_t *unknown_at, size_t *unknown);
