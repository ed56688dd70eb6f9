/* tracklab-sysmon C helper, fabric counters: NVLink field values decoded and rated in one call per GPU.
 *
 * It mirrors the Python twin (tracklab_sysmon/_fabric_py.py) value for value:
 * fb_field_counters decodes an nvmlFieldValue_t array as _nvlink.counters does and scales it to bytes
 * as the NVLink collector does; fb_column_rates applies rates.CounterColumn's rule (CounterRates' rule
 * for a column of counters: dips, resets and wraps never spike, rates rounded to cents half up) with
 * the same IEEE double arithmetic (build with -ffp-contract=off, as build_ffi.py does).
 * fb_nvlink_read does both for every GPU of a tick in one call, calling NVML itself through the
 * function pointer the bindings hold, as _fabric_py.PyNvlinkReader does GPU by GPU through ctypes.
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

/* nvml.h: nvmlReturn_t nvmlDeviceGetFieldValues(nvmlDevice_t device, int valuesCount,
 * nvmlFieldValue_t *values); the enum is int-sized and the two pointers are opaque here. */
typedef int (*fb_field_values_fn)(void *device, int count, void *values);

/* One GPU's data-counter request, aimed once (again when its request is pruned or its baselines start
 * afresh): NVML's function, the device handle, the request array NVML fills in place, and how its
 * records land in the GPU's slots (as fb_field_counters takes them) with their baselines. */
typedef struct {
    fb_field_values_fn call;
    void *device;             /* nvmlDevice_t */
    unsigned char *request;   /* records x FB_RECORD_BYTES: fieldId and scopeId set, the rest NVML's */
    const uint32_t *place;    /* slot of each record, or NULL: record i is slot i */
    fb_counter *column;       /* slots baselines */
    uint32_t records;         /* 0: nothing to ask (every entry pruned), NVML is not called */
    uint32_t slots;           /* 2 x links: tx, rx of link 0, then link 1, ... */
    int32_t ret;              /* out: NVML's return code on the last read (0: answered) */
} fb_nvlink_gpu;

/* One tick of n GPUs' data counters: for each GPU in turn, call NVML on its request (unless it has no
 * records), record the return code in ret, then decode (fb_field_counters: max_value, scale) and rate
 * (fb_column_rates at now) its answer into its slots of values, known and rates, which lie GPU after GPU
 * in the order given (each GPU's slots of the outputs start where the previous GPU's end). A GPU whose
 * call failed has every slot unknown (values 0, rates NaN) and its baselines untouched. The index of every
 * unknown slot goes, in order, to unknown_at (room for every slot) and their count to *unknown.
 * Returns the number of GPUs whose call failed. */
size_t fb_nvlink_read(fb_nvlink_gpu *const *gpus, size_t n, uint64_t max_value, uint64_t scale, double now,
                      uint64_t *values, uint8_t *known, double *rates, uint32_t *unknown_at, size_t *unknown);

#endif
