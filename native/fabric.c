/* tracklab-sysmon C helper, fabric counters: NVLink field values decoded and rated (see fabric.h). */
#include "fabric.h"

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

/* rates.counter_rate: 0 over no time or when the counter did not rise. */
static double counter_rate(uint64_t previous, uint64_t current, double elapsed)
{
    if (elapsed <= 0 || current <= previous)
        return 0.0;
    return (double)(current - previous) / elapsed;
}

/* rates.cents: int(rate * 100 + 0.5) / 100 for a rate >= 0 (int() truncates, which is floor here). */
static double cents(double rate)
{
    return floor(rate * 100.0 + 0.5) / 100.0;
}

/* rates._below_good: a reading below the good one (or the first): a dip, a reset or a wrap. */
static double below_good(fb_counter *c, uint64_t value, double now)
{
    for (uint32_t depth = 1; depth < c->count; depth++) {
        uint64_t low = c->value[depth];
        if (value >= low) {
            if (value == low)
                return 0.0; /* still flat after the drop: keep every baseline */
            double since = c->at[depth - 1];
            c->value[0] = value;
            c->at[0] = now;
            c->count = 1;
            return cents(counter_rate(low, value, now - since));
        }
    }
    if (c->count < FB_BASELINES) {
        c->value[c->count] = value;
        c->at[c->count] = now;
        c->count++;
    }
    return 0.0;
}

size_t fb_column_rates(fb_counter *column, size_t n, const uint64_t *values, const uint8_t *known, double now,
                       double *rates)
{
    size_t unknown = 0;
    for (size_t i = 0; i < n; i++) {
        fb_counter *c = &column[i];
        uint64_t value = values[i];
        if (!known[i]) {
            rates[i] = NAN;
            unknown++;
        } else if (c->count > 0 && value >= c->value[0]) {
            uint64_t good = c->value[0];
            double good_at = c->at[0];
            c->value[0] = value;
            c->at[0] = now;
            c->count = 1;
            rates[i] = cents(counter_rate(good, value, now - good_at));
        } else {
            rates[i] = below_good(c, value, now);
        }
    }
    return unknown;
}
