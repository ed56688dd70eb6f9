/* tracklab-sysmon C helper, fabric counters: NVLink field values decoded and rated in one call per GPU.
 *
 * It mirrors the Python twin (tracklab_sysmon/_fabric_py.py) value for value:
 * fb_field_counters decodes an nvmlFieldValue_t array as _nvlink.counters does and scales it to bytes
 * as the NVLink collector does; fb_column_rates applies rates.CounterColumn's rule (CounterRates' rule
 * for a column of counters: dips, resets and wraps never spike, rates rounded to cents half up) with
 * the same IEEE double arithmetic (build with -ffp-contract=off, as build_ffi.py does).
 */
#ifndef TRACKLAB_FABRIC_H
#define TRACKLAB_FABRIC_H

#include <stddef.h>
#include <stdint.h>

enum { FB_BASELINES = 8 };        /* rates.CounterRates.max_baselines */
enum { FB_RECORD_BYTES = 40 };    /* sizeof(nvmlFieldValue_t), API versions 12 and 13 */

/* One counter's baselines: value[0] is the last good reading, below it a run of drops (newest last). */
typedef struct {
    uint64_t value[FB_BASELINES];
    double at[FB_BASELINES];
    uint32_t count; /* 0: never seen */
} fb_counter;

/* Decode `records` nvmlFieldValue_t entries into slots: entry i goes to slot place[i] (to slot i when
 * place is NULL; a place >= slots is ignored). A successful entry of an unsigned type (uint, ulong,
 * ulonglong, ushort) that is at most max_value becomes value * scale, known; every other slot is
 * unknown (known[i] 0, values[i] 0). Returns the number of unknown slots. */
size_t fb_field_counters(const unsigned char *raw, size_t records, const uint32_t *place, uint64_t max_value,
                         uint64_t scale, uint64_t *values, uint8_t *known, size_t slots);

/* Rates of n counters now: rates[i] per second, rounded to cents, for each known[i]; NaN and the
 * baselines left as they were for an unknown one. Returns the number of unknown counters. */
size_t fb_column_rates(fb_counter *column, size_t n, const uint64_t *values, const uint8_t *known, double now,
                       double *rates);

#endif
