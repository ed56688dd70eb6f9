/* Per-device counter rates in C: whole disks from /proc/diskstats, interfaces from /proc/net/dev.
 *
 * A device table reads its file through an sm_reader, keeps each selected device's counters with
 * the Python twin's CounterRates rules (rates.py: a glitch never spikes, a reset or wrap rates
 * from the low baseline, at most 8 baselines), and hands Python flat columns. Which rows count is
 * the caller's choice (whole disks; every interface but loopback): it is asked again only when
 * the rows' names differ from the last tick's, so a steady tick makes no Python object per device.
 *
 * A tick: sm_read, then sm_devs_parse on its text (or, for text outside the C parser's subset,
 * sm_devs_load with rows the Python parser made), sm_devs_select when sm_devs_changed, and
 * sm_devs_rate.
 */
#ifndef TRACKLAB_SYSMON_DEVICES_H
#define TRACKLAB_SYSMON_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "sysmon.h"

/* Per selected row: SM_DEVS_COUNTERS counters in the wire's order (disk: read bytes, write bytes,
 * reads, writes; interface: bytes received, sent, packets received, sent) and the published rates
 * (disk: read rate, write rate, iops, NaN; interface: bytes in, out, packets in, out), NaN for
 * null. Totals: the sums of each published rate over the selected rows (NaN when any is null, or
 * no row is selected). A counter a Python-parsed row could not fit in 64 bits is invalid (null). */
enum { SM_DEVS_COUNTERS = 4, SM_DEVS_RATES = 4 };

typedef struct sm_devs sm_devs;

/* A table for SM_DISKSTATS or SM_NET_DEV; NULL when memory is exhausted or `file` is neither. */
sm_devs *sm_devs_open(int file);
void sm_devs_close(sm_devs *d);
/* Parse the file's text (as sm_read left it) into rows: their number, -ENOMEM, or SM_DEFER (text
 * outside the C subset: parse it elsewhere and call sm_devs_load). */
long sm_devs_parse(sm_devs *d, const char *text, size_t len);
/* Rows parsed elsewhere: `names` holds their names back to back (spans: offset, length per row),
 * `counters` SM_DEVS_COUNTERS per row in the parser's order (disk: reads, read bytes, writes,
 * write bytes; interface: rx bytes, rx packets, tx bytes, tx packets), `valid` one byte per
 * counter (0: it did not fit 64 bits). Returns n or -ENOMEM. */
long sm_devs_load(sm_devs *d, const char *names, const int64_t *spans, const uint64_t *counters,
                  const uint8_t *valid, size_t n);
/* 1 when the rows' names differ from those of the last selection (the caller must select). */
int sm_devs_changed(const sm_devs *d);
/* The rows' names back to back, and (offset, length) per row in *spans. */
const char *sm_devs_names(const sm_devs *d, const int64_t **spans);
/* Which rows count, one byte per row. Devices that stay keep their baselines (matched by name); a
 * device that goes starts afresh if it comes back. Returns the number selected, or -ENOMEM. */
long sm_devs_select(sm_devs *d, const uint8_t *wanted);
/* Rate the selected rows at `now` (monotonic seconds): their number. */
long sm_devs_rate(sm_devs *d, double now);
/* The last rating's columns: selected rows' indexes among all rows, counters, validity, rates,
 * and the SM_DEVS_RATES totals. */
const int64_t *sm_devs_rows(const sm_devs *d);
const uint64_t *sm_devs_counters(const sm_devs *d);
const uint8_t *sm_devs_valid(const sm_devs *d);
const double *sm_devs_rates(const sm_devs *d);
const double *sm_devs_totals(const sm_devs *d);
/* The last rating's devices as the JSON array the wire writes (orjson's bytes exactly). Sets *out
 * (valid until the next call) and returns the length, -ENOMEM, or SM_DEFER for a name or value
 * outside the forms written here (the caller encodes those devices itself). */
long sm_devs_json(sm_devs *d, const char **out);

#endif
