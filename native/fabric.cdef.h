/* The fabric counters' interface as cffi reads it (no preprocessor here): kept in step with fabric.h. */

enum { FB_BASELINES = 8 };
enum { FB_RECORD_BYTES = 40 };

typedef struct { ...; } fb_counter;

size_t fb_field_counters(const unsigned char *raw, size_t records, const uint32_t *place, uint64_t max_value,
                         uint64_t scale, uint64_t *values, uint8_t *known, size_t slots);
size_t fb_column_rates(fb_counter *column, size_t n, const uint64_t *values, const uint8_t *known, double now,
                       double *rates);
