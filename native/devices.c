/* Per-device counter rates (see devices.h): rates.py's CounterRates over flat rows. */
#define _GNU_SOURCE
#include "devices.h"
#include "counter_rates.h"
#include "numbers.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { FIELDS = SM_DEVS_COUNTERS, JSON_ROW_MAX = 400 }; /* keys and 8 values of at most 24 characters */

/* One counter's baselines (counter_rates.h); n == 0: never seen (or only as null), as a key
 * CounterRates lacks. */
struct counter {
    uint64_t value[COUNTER_BASELINES];
    double at[COUNTER_BASELINES];
    uint32_t n;
};

struct state {
    struct counter c[FIELDS];
};

/* Names back to back with (offset, length) per entry. */
struct names {
    char *text;
    size_t len, cap;
    int64_t *spans;
    size_t n, spans_cap;
};

struct sm_devs {
    int file;
    /* The rows of the last read or load, in the parser's counter order. */
    struct names rows;
    uint64_t *counters;
    uint8_t *valid;
    size_t rows_cap;
    int64_t *parsed; /* sm_parse_* output (SM_DEV_ROW per row) */
    size_t parsed_cap;
    /* The last selection: the rows' names then, the selected rows, and one state per distinct
     * selected name (a name listed twice shares its counters, as one CounterRates key does). */
    int selected_once;
    struct names at_selection;
    struct names state_names;
    int64_t *selected;
    size_t *state_of;
    size_t nselected, selected_cap;
    struct state *states;
    size_t nstates, states_cap;
    /* The last rating. */
    uint64_t *out_counters;
    uint8_t *out_valid;
    double *out_rates;
    size_t out_cap;
    double totals[SM_DEVS_RATES];
    char *json;
    size_t json_cap;
};

static int grow(void **buf, size_t *cap, size_t want, size_t size)
{
    if (want <= *cap)
        return 0;
    size_t n = want > 2 * *cap ? want : 2 * *cap;
    void *grown = realloc(*buf, n * size);
    if (grown == NULL)
        return -ENOMEM;
    *buf = grown;
    *cap = n;
    return 0;
}

static void names_clear(struct names *s)
{
    s->len = s->n = 0;
}

static int names_add(struct names *s, const char *name, size_t len)
{
    size_t spans_cap = s->spans_cap;
    if (grow((void **)&s->text, &s->cap, s->len + len + 1, 1) < 0 ||
        grow((void **)&s->spans, &spans_cap, 2 * (s->n + 1), sizeof *s->spans) < 0)
        return -ENOMEM;
    s->spans_cap = spans_cap;
    memcpy(s->text + s->len, name, len);
    s->spans[2 * s->n] = (int64_t)s->len;
    s->spans[2 * s->n + 1] = (int64_t)len;
    s->len += len;
    s->n++;
    return 0;
}

static int names_copy(struct names *to, const struct names *from)
{
    names_clear(to);
    for (size_t i = 0; i < from->n; i++)
        if (names_add(to, from->text + from->spans[2 * i], (size_t)from->spans[2 * i + 1]) < 0)
            return -ENOMEM;
    return 0;
}

static int names_equal(const struct names *a, const struct names *b)
{
    if (a->n != b->n || a->len != b->len)
        return 0;
    return a->n == 0 || ((a->len == 0 || memcmp(a->text, b->text, a->len) == 0) &&
                         memcmp(a->spans, b->spans, 2 * a->n * sizeof *a->spans) == 0);
}

static void names_free(struct names *s)
{
    free(s->text);
    free(s->spans);
}

sm_devs *sm_devs_open(int file)
{
    if (file != SM_DISKSTATS && file != SM_NET_DEV)
        return NULL;
    sm_devs *d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->file = file;
    for (int j = 0; j < SM_DEVS_RATES; j++)
        d->totals[j] = NAN;
    return d;
}

void sm_devs_close(sm_devs *d)
{
    if (d == NULL)
        return;
    names_free(&d->rows);
    names_free(&d->at_selection);
    names_free(&d->state_names);
    free(d->counters);
    free(d->valid);
    free(d->parsed);
    free(d->selected);
    free(d->state_of);
    free(d->states);
    free(d->out_counters);
    free(d->out_valid);
    free(d->out_rates);
    free(d->json);
    free(d);
}

static int reserve_rows(sm_devs *d, size_t n)
{
    size_t cap = d->rows_cap;
    if (grow((void **)&d->counters, &cap, n * FIELDS, sizeof *d->counters) < 0)
        return -ENOMEM;
    cap = d->rows_cap;
    if (grow((void **)&d->valid, &cap, n * FIELDS, 1) < 0)
        return -ENOMEM;
    d->rows_cap = cap;
    return 0;
}

long sm_devs_parse(sm_devs *d, const char *text, size_t len)
{
    long (*parse)(const char *, size_t, int64_t *, size_t) =
        d->file == SM_DISKSTATS ? sm_parse_diskstats : sm_parse_net_dev;
    long found;
    while ((found = parse(text, len, d->parsed, d->parsed_cap / SM_DEV_ROW)) >= 0 &&
           (size_t)found * SM_DEV_ROW > d->parsed_cap) {
        if (grow((void **)&d->parsed, &d->parsed_cap, (size_t)found * SM_DEV_ROW, sizeof *d->parsed) < 0)
            return -ENOMEM;
    }
    if (found < 0)
        return found;
    size_t n = (size_t)found;
    if (reserve_rows(d, n) < 0)
        return -ENOMEM;
    names_clear(&d->rows);
    for (size_t i = 0; i < n; i++) {
        const int64_t *row = d->parsed + i * SM_DEV_ROW;
        if (names_add(&d->rows, text + row[0], (size_t)row[1]) < 0)
            return -ENOMEM;
        for (int k = 0; k < FIELDS; k++) {
            d->counters[i * FIELDS + k] = (uint64_t)row[2 + k]; /* the parser's limits keep these >= 0 */
            d->valid[i * FIELDS + k] = 1;
        }
    }
    return (long)n;
}

long sm_devs_load(sm_devs *d, const char *names, const int64_t *spans, const uint64_t *counters,
                  const uint8_t *valid, size_t n)
{
    if (reserve_rows(d, n) < 0)
        return -ENOMEM;
    names_clear(&d->rows);
    for (size_t i = 0; i < n; i++)
        if (names_add(&d->rows, names + spans[2 * i], (size_t)spans[2 * i + 1]) < 0)
            return -ENOMEM;
    if (n > 0) {
        memcpy(d->counters, counters, n * FIELDS * sizeof *counters);
        memcpy(d->valid, valid, n * FIELDS);
    }
    return (long)n;
}

int sm_devs_changed(const sm_devs *d)
{
    return !d->selected_once || !names_equal(&d->rows, &d->at_selection);
}

const char *sm_devs_names(const sm_devs *d, const int64_t **spans)
{
    *spans = d->rows.spans;
    return d->rows.text ? d->rows.text : "";
}

/* ---------------------------------------------------------------- selection */

static uint64_t hash_name(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

/* An open-addressing index of distinct names in a names list: a slot holds entry + 1, 0 when empty. */
struct index {
    size_t *slots;
    size_t mask;
};

static int index_init(struct index *ix, size_t entries)
{
    size_t cap = 16;
    while (cap < 2 * entries)
        cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    ix->mask = cap - 1;
    return ix->slots == NULL ? -ENOMEM : 0;
}

static size_t index_slot(const struct index *ix, const struct names *s, const char *name, size_t len)
{
    size_t at = hash_name(name, len) & ix->mask;
    for (; ix->slots[at] != 0; at = (at + 1) & ix->mask) {
        size_t i = ix->slots[at] - 1;
        if ((size_t)s->spans[2 * i + 1] == len && memcmp(s->text + s->spans[2 * i], name, len) == 0)
            break;
    }
    return at;
}

/* The entry of `s` named `name`, or -1. */
static long index_find(const struct index *ix, const struct names *s, const char *name, size_t len)
{
    return (long)ix->slots[index_slot(ix, s, name, len)] - 1;
}

/* Index entry `i` of `s` (a name not indexed yet). */
static void index_add(struct index *ix, const struct names *s, size_t i)
{
    const char *name = s->text + s->spans[2 * i];
    size_t len = (size_t)s->spans[2 * i + 1];
    ix->slots[index_slot(ix, s, name, len)] = i + 1;
}

long sm_devs_select(sm_devs *d, const uint8_t *wanted)
{
    size_t n = d->rows.n;
    if (grow((void **)&d->selected, &d->selected_cap, n ? n : 1, sizeof *d->selected) < 0)
        return -ENOMEM;
    size_t cap = 0;
    size_t *state_of = NULL;
    struct state *states = NULL;
    struct names names = {0};
    struct index old = {0}, seen = {0};
    if (grow((void **)&state_of, &cap, n ? n : 1, sizeof *state_of) < 0)
        goto nomem;
    cap = 0;
    if (grow((void **)&states, &cap, n ? n : 1, sizeof *states) < 0)
        goto nomem;
    if (index_init(&old, d->state_names.n) < 0 || index_init(&seen, n) < 0)
        goto nomem;
    for (size_t i = 0; i < d->state_names.n; i++)
        index_add(&old, &d->state_names, i);
    size_t nselected = 0;
    for (size_t i = 0; i < n; i++) {
        if (!wanted[i])
            continue;
        const char *name = d->rows.text + d->rows.spans[2 * i];
        size_t len = (size_t)d->rows.spans[2 * i + 1];
        long earlier = index_find(&seen, &names, name, len); /* listed twice: the same counters */
        if (earlier >= 0) {
            state_of[nselected] = (size_t)earlier;
        } else {
            long before = index_find(&old, &d->state_names, name, len);
            if (before >= 0)
                states[names.n] = d->states[before];
            else
                memset(&states[names.n], 0, sizeof states[names.n]);
            state_of[nselected] = names.n;
            if (names_add(&names, name, len) < 0)
                goto nomem;
            index_add(&seen, &names, names.n - 1);
        }
        d->selected[nselected++] = (int64_t)i;
    }
    if (names_copy(&d->at_selection, &d->rows) < 0)
        goto nomem;
    free(old.slots);
    free(seen.slots);
    free(d->state_of);
    free(d->states);
    names_free(&d->state_names);
    d->state_of = state_of;
    d->states = states;
    d->nstates = names.n;
    d->state_names = names;
    d->nselected = nselected;
    d->selected_once = 1;
    return (long)nselected;
nomem:
    free(old.slots);
    free(seen.slots);
    free(state_of);
    free(states);
    names_free(&names);
    return -ENOMEM;
}

/* ---------------------------------------------------------------- rates */

static double total(const double *rates, size_t n, int column)
{
    if (n == 0)
        return NAN; /* nothing counted: unknown, not zero */
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = rates[i * SM_DEVS_RATES + column];
        if (isnan(r))
            return NAN;
        sum += r;
    }
    return round2(sum);
}

/* Wire order of the counters, as indexes into the parser's order. */
static const int DISK_COUNTERS[FIELDS] = {1, 3, 0, 2}, NET_COUNTERS[FIELDS] = {0, 2, 1, 3};

long sm_devs_rate(sm_devs *d, double now)
{
    size_t m = d->nselected;
    size_t cap = d->out_cap;
    if (grow((void **)&d->out_counters, &cap, m * FIELDS + 1, sizeof *d->out_counters) < 0)
        return -ENOMEM;
    cap = d->out_cap;
    if (grow((void **)&d->out_valid, &cap, m * FIELDS + 1, 1) < 0)
        return -ENOMEM;
    cap = d->out_cap;
    if (grow((void **)&d->out_rates, &cap, m * SM_DEVS_RATES + 1, sizeof *d->out_rates) < 0)
        return -ENOMEM;
    d->out_cap = cap;
    int disk = d->file == SM_DISKSTATS;
    const int *order = disk ? DISK_COUNTERS : NET_COUNTERS;
    for (size_t i = 0; i < m; i++) {
        size_t row = (size_t)d->selected[i];
        const uint64_t *in = d->counters + row * FIELDS;
        const uint8_t *ok = d->valid + row * FIELDS;
        struct state *s = &d->states[d->state_of[i]];
        double raw[FIELDS];
        for (int k = 0; k < FIELDS; k++)
            raw[k] = ok[k] ? counter_rates_step(s->c[k].value, s->c[k].at, &s->c[k].n, in[k], now) : NAN;
        for (int k = 0; k < FIELDS; k++) {
            d->out_counters[i * FIELDS + k] = in[order[k]];
            d->out_valid[i * FIELDS + k] = ok[order[k]];
        }
        double *out = d->out_rates + i * SM_DEVS_RATES;
        if (disk) {
            out[0] = round2(raw[1]);
            out[1] = round2(raw[3]);
            out[2] = isnan(raw[0]) || isnan(raw[2]) ? NAN : round2(raw[0] + raw[2]);
            out[3] = NAN;
        } else {
            for (int k = 0; k < SM_DEVS_RATES; k++)
                out[k] = round2(raw[order[k]]);
        }
    }
    for (int j = 0; j < SM_DEVS_RATES; j++)
        d->totals[j] = disk && j == 3 ? NAN : total(d->out_rates, m, j);
    return (long)m;
}

const int64_t *sm_devs_rows(const sm_devs *d)
{
    return d->selected;
}

const uint64_t *sm_devs_counters(const sm_devs *d)
{
    return d->out_counters;
}

const uint8_t *sm_devs_valid(const sm_devs *d)
{
    return d->out_valid;
}

const double *sm_devs_rates(const sm_devs *d)
{
    return d->out_rates;
}

const double *sm_devs_totals(const sm_devs *d)
{
    return d->totals;
}

/* ---------------------------------------------------------------- JSON */

/* A name orjson writes as is: printable ASCII without a quote or backslash to escape. */
static int plain_name(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return 0;
    return 1;
}

long sm_devs_json(sm_devs *d, const char **out)
{
    static const char *const DISK_KEYS[FIELDS + SM_DEVS_RATES - 1] = {
        ",\"readBytes\":", ",\"writeBytes\":", ",\"reads\":", ",\"writes\":",
        ",\"readRate\":", ",\"writeRate\":", ",\"iops\":"};
    static const char *const NET_KEYS[FIELDS + SM_DEVS_RATES] = {
        ",\"bytesRecv\":", ",\"bytesSent\":", ",\"packetsRecv\":", ",\"packetsSent\":",
        ",\"bytesIn\":", ",\"bytesOut\":", ",\"packetsIn\":", ",\"packetsOut\":"};
    int disk = d->file == SM_DISKSTATS;
    const char *const *keys = disk ? DISK_KEYS : NET_KEYS;
    int rates = disk ? SM_DEVS_RATES - 1 : SM_DEVS_RATES;
    size_t need = 3;
    for (size_t i = 0; i < d->nselected; i++)
        need += (size_t)d->rows.spans[2 * d->selected[i] + 1] + JSON_ROW_MAX;
    if (grow((void **)&d->json, &d->json_cap, need, 1) < 0)
        return -ENOMEM;
    char *p = d->json;
    *p++ = '[';
    for (size_t i = 0; i < d->nselected; i++) {
        size_t row = (size_t)d->selected[i];
        const char *name = d->rows.text + d->rows.spans[2 * row];
        size_t len = (size_t)d->rows.spans[2 * row + 1];
        if (!plain_name(name, len))
            return SM_DEFER;
        if (i > 0)
            *p++ = ',';
        memcpy(p, "{\"name\":\"", 9);
        p += 9;
        memcpy(p, name, len);
        p += len;
        *p++ = '"';
        for (int k = 0; k < FIELDS; k++) {
            size_t n = strlen(keys[k]);
            memcpy(p, keys[k], n);
            p += n;
            if (d->out_valid[i * FIELDS + k]) {
                p += put_uint(p, d->out_counters[i * FIELDS + k]);
            } else {
                memcpy(p, "null", 4);
                p += 4;
            }
        }
        for (int k = 0; k < rates; k++) {
            size_t n = strlen(keys[FIELDS + k]);
            memcpy(p, keys[FIELDS + k], n);
            p += n;
            int written = put_number(p, d->out_rates[i * SM_DEVS_RATES + k]);
            if (written < 0)
                return SM_DEFER;
            p += written;
        }
        *p++ = '}';
    }
    *p++ = ']';
    *out = d->json;
    return (long)(p - d->json);
}
