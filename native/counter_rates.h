/* rates.CounterRates' rule for one counter, shared by the device tables (devices.c) and the fabric
 * counters (fabric.c): the raw per-second rate, rounded by each caller as its Python twin rounds. */
#ifndef TRACKLAB_SYSMON_COUNTER_RATES_H
#define TRACKLAB_SYSMON_COUNTER_RATES_H

#include <stdint.h>

enum { COUNTER_BASELINES = 8 }; /* rates.CounterRates.max_baselines */

/* rates.counter_rate: 0 over no time or when the counter did not rise. */
static inline double counter_rate(uint64_t previous, uint64_t current, double elapsed)
{
    if (elapsed <= 0 || current <= previous)
        return 0.0;
    return (double)(current - previous) / elapsed;
}

/* CounterRates.rate, step for step, on one counter's baselines: value[0] / at[0] the last good
 * reading, below it the readings of a run that dropped (strictly decreasing, newest last); *count 0
 * means never seen. A glitch never spikes; a rise above a low baseline proves a reset or wrap and
 * rates from it over the span since the last high reading. */
static inline double counter_rates_step(uint64_t *value, double *at, uint32_t *count, uint64_t reading,
                                        double now)
{
    if (*count > 0 && reading >= value[0]) { /* the usual tick */
        uint64_t good = value[0];
        double good_at = at[0];
        value[0] = reading;
        at[0] = now;
        *count = 1;
        return counter_rate(good, reading, now - good_at);
    }
    for (uint32_t depth = 1; depth < *count; depth++) { /* below the good reading: a dip, reset or wrap */
        uint64_t low = value[depth];
        if (reading >= low) {
            if (reading == low) /* still flat after the drop: keep every baseline */
                return 0.0;
            double since = at[depth - 1];
            value[0] = reading;
            at[0] = now;
            *count = 1;
            return counter_rate(low, reading, now - since);
        }
    }
    if (*count < COUNTER_BASELINES) { /* below every baseline, or first sight */
        value[*count] = reading;
        at[*count] = now;
        (*count)++;
    }
    return 0.0;
}

#endif
