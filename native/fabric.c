/* tracklab-sysmon C helper, fabric counters: NVLink field values decoded and rated (see fabric.h). */
#include "fabric.h"
#include "counter_rates.h"

_Static_assert((int)FB_BASELINES == (int)COUNTER_BASELINES, "one baseline bound for every counter");

#include <math.h>
#include <string.h>

/* nvmlValueType_t and the offsets of nvmlFieldValue_t's members (fieldId, scopeId, timestamp,
 * latencyUsec, valueType, nvmlReturn, value), as _nvlink.RECORD lays them out. */
enum { TYPE_UINT = 1, TYPE_ULONG = 2, TYPE_ULONGLONG = 3, TYPE_USHORT = 6 };
enum { AT_TYPE = 24, AT_RETURN = 28, AT_VALUE = 32 };

size_t fb_field_counters(const unsigned char *raw, size_t records, const uint32_t *place, uint64_t max_value,
                         uint64_t scale, uint64_t *values, uint8_t *known, size_t slots)
{
    memset(values, 0, slots * sizeof *values);
    memset(known, 0, slots);
    for (size_t i = 0; i < records; i++) {
        const unsigned char *record = raw + i * FB_RECORD_BYTES;
        size_t slot = place ? place[i] : i;
        if (slot >= slots)
            continue;
        uint32_t type, ret;
        uint64_t value;
        memcpy(&type, record + AT_TYPE, sizeof type);
        memcpy(&ret, record + AT_RETURN, sizeof ret);
        memcpy(&value, record + AT_VALUE, sizeof value);
        if (ret != 0)
            continue;
        if (type == TYPE_UINT)
            value &= 0xFFFFFFFFu;
        else if (type == TYPE_USHORT)
            value &= 0xFFFFu;
        else if (type != TYPE_ULONG && type != TYPE_ULONGLONG)
            continue; /* signed, floating or unknown: not a counter */
        if (value > max_value)
            continue; /* scaled, it would not fit 64 bits */
        values[slot] = value * scale;
        known[slot] = 1;
    }
    size_t unknown = 0;
    for (size_t i = 0; i < slots; i++)
        unknown += !known[i];
    return unknown;
}

/* rates.cents: int(rate * 100 + 0.5) / 100 for a rate >= 0 (int() truncates, which is floor here). */
static double cents(double rate)
{
    return floor(rate * 100.0 + 0.5) / 100.0;
}

size_t fb_column_rates(fb_counter *column, size_t n, const uint64_t *values, const uint8_t *known, double now,
                       double *rates)
{
    size_t unknown = 0;
    for (size_t i = 0; i < n; i++) {
        fb_counter *c = &column[i];
        if (!known[i]) {
            rates[i] = NAN;
            unknown++;
        } else {
            rates[i] = cents(counter_rates_step(c->value, c->at, &c->count, values[i], now));
        }
    }
    return unknown;
}

size_t fb_nvlink_read(fb_nvlink_gpu *const *gpus, size_t n, uint64_t max_value, uint64_t scale, double now,
                      uint64_t *values, uint8_t *known, double *rates, uint32_t *unknown_at, size_t *unknown)
{
    size_t failed = 0, first = 0, missing = 0;
    for (size_t g = 0; g < n; g++) {
        fb_nvlink_gpu *gpu = gpus[g];
        size_t slots = gpu->slots;
        uint64_t *value = values + first;
        uint8_t *is_known = known + first;
        double *rate = rates + first;
        gpu->ret = gpu->records ? gpu->call(gpu->device, (int)gpu->records, gpu->request) : 0;
        if (gpu->ret != 0) {
            failed++;
            memset(value, 0, slots * sizeof *value);
            memset(is_known, 0, slots);
            for (size_t i = 0; i < slots; i++)
                rate[i] = NAN;
        } else {
            fb_field_counters(gpu->request, gpu->records, gpu->place, max_value, scale, value, is_known, slots);
            fb_column_rates(gpu->column, slots, value, is_known, now, rate);
        }
        for (size_t i = 0; i < slots; i++) {
            if (!is_known[i])
                unknown_at[missing++] = (uint32_t)(first + i);
        }
        first += slots;
    }
    *unknown = missing;
    return failed;
}
