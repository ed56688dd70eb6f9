/* tracklab-sysmon C helper, DRM fdinfo: the parser of drm_fdinfo.parse_fdinfo for canonical text (see fdinfo.h). */
#include "fdinfo.h"
#include "canonical.h"

#include <string.h>

enum { MAX_DIGITS = 18 }; /* 18 decimal digits always fit in 64 bits */

/* The regular expressions' kinds, in the order of their alternation (engine-capacity before engine). */
enum { K_CAPACITY, K_TOTAL_CYCLES, K_ENGINE, K_CYCLES, K_RESIDENT, K_MEMORY, K_TOTAL, KINDS };
static const char *const KIND_NAMES[KINDS] = {"engine-capacity", "total-cycles", "engine", "cycles",
                                              "resident", "memory", "total"};
#define LEN(s) (sizeof(s) - 1)
static const size_t KIND_LENGTHS[KINDS] = {LEN("engine-capacity"), LEN("total-cycles"), LEN("engine"), LEN("cycles"),
                                           LEN("resident"), LEN("memory"), LEN("total")};
enum { U_NONE, U_NS, U_KIB, U_MIB, U_GIB };
static const char *const UNIT_NAMES[] = {"", "ns", "KiB", "MiB", "GiB"};
static const size_t UNIT_LENGTHS[] = {0, LEN("ns"), LEN("KiB"), LEN("MiB"), LEN("GiB")};
static const uint64_t UNIT_BYTES[] = {1, 1, 1024, 1024 * 1024, 1024 * 1024 * 1024};

typedef struct {
    int kind, unit;
    uint32_t at, len;
    uint64_t value;
} counter;

typedef struct {
    counter items[FI_MAX_COUNTERS];
    size_t count;
    int overflow;
} counters;

static int is_blank(char c) { return c == ' ' || c == '\t'; }

/* Digits [s, s + n): NUM_OK with *out, NUM_DEFER past MAX_DIGITS (Python's int is unbounded). */
static int digits(const char *s, size_t n, uint64_t *out)
{
    if (n > MAX_DIGITS)
        return NUM_DEFER;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (uint64_t)(s[i] - '0');
    *out = v;
    return NUM_OK;
}

/* drm_fdinfo._int on a meta value (printable, no space): None (NUM_BAD) where int() raises or the
 * number is negative; signs and underscores, which int() reads its own way, go to Python. */
static int meta_int(const char *s, size_t n, uint64_t *out)
{
    if (n == 0)
        return NUM_BAD;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '+' || c == '-' || c == '_')
            return NUM_DEFER;
        if (c < '0' || c > '9')
            return NUM_BAD;
    }
    return digits(s, n, out);
}

/* `drm-(driver|client-id|pdev)[ \t]*:[ \t]*(\S*)[ \t]*` spanning the whole line: 0 (driver), 1, 2 or -1. */
static int meta_line(const char *line, size_t n, uint32_t base, uint32_t *at, uint32_t *len)
{
    static const char *const KEYS[] = {"drm-driver", "drm-client-id", "drm-pdev"};
    static const size_t LENGTHS[] = {LEN("drm-driver"), LEN("drm-client-id"), LEN("drm-pdev")};
    if (n < LEN("drm-pdev") || memcmp(line, "drm-", 4) != 0)
        return -1; /* every key starts so, the shortest is drm-pdev */
    for (int key = 0; key < 3; key++) {
        if (line[4] != KEYS[key][4] || n < LENGTHS[key] || memcmp(line, KEYS[key], LENGTHS[key]) != 0)
            continue; /* the keys differ at their fifth byte: at most one is compared whole */
        size_t i = LENGTHS[key];
        while (i < n && is_blank(line[i]))
            i++;
        if (i == n || line[i] != ':')
            return -1;
        i++;
        while (i < n && is_blank(line[i]))
            i++;
        size_t value = i;
        while (i < n && !is_blank(line[i]))
            i++;
        size_t end = i;
        while (i < n && is_blank(line[i]))
            i++;
        if (i != n)
            return -1;
        *at = base + (uint32_t)value;
        *len = (uint32_t)(end - value);
        return key;
    }
    return -1;
}

/* The rest of a counter line after `drm-<kind>`: `-([^:\s]+)[ \t]*:[ \t]*(\d+)[ \t]*(ns|KiB|MiB|GiB)?[ \t]*`
 * to the end of the line. 1 with the fields set, 0 when it does not match, -1 for a number to defer. */
static int counter_rest(const char *line, size_t n, size_t i, uint32_t base, counter *c)
{
    if (i == n || line[i] != '-')
        return 0;
    size_t name = ++i;
    while (i < n && line[i] != ':' && !is_blank(line[i]))
        i++;
    if (i == name)
        return 0;
    c->at = base + (uint32_t)name;
    c->len = (uint32_t)(i - name);
    while (i < n && is_blank(line[i]))
        i++;
    if (i == n || line[i] != ':')
        return 0;
    i++;
    while (i < n && is_blank(line[i]))
        i++;
    size_t number = i;
    while (i < n && line[i] >= '0' && line[i] <= '9')
        i++;
    if (i == number)
        return 0;
    size_t number_end = i;
    while (i < n && is_blank(line[i]))
        i++;
    c->unit = U_NONE;
    for (int u = U_NS; u <= U_GIB; u++) {
        size_t k = UNIT_LENGTHS[u];
        if (n - i >= k && memcmp(line + i, UNIT_NAMES[u], k) == 0) {
            size_t j = i + k;
            while (j < n && is_blank(line[j]))
                j++;
            if (j == n) { /* the unit only counts where the line ends after it */
                c->unit = u;
                i = j;
            }
            break;
        }
    }
    while (i < n && is_blank(line[i]))
        i++;
    if (i != n)
        return 0;
    return digits(line + number, number_end - number, &c->value) == NUM_OK ? 1 : -1;
}

/* Record a counter line: a (kind, name) written before keeps its place and takes the new value. */
static int add_counter(counters *all, const char *text, const counter *c)
{
    for (size_t k = 0; k < all->count; k++) {
        counter *old = &all->items[k];
        if (old->kind == c->kind && old->len == c->len && text[old->at] == text[c->at] &&
            memcmp(text + old->at, text + c->at, c->len) == 0) {
            old->value = c->value;
            old->unit = c->unit;
            old->at = c->at; /* the same name, spelled at its newest place */
            return 0;
        }
    }
    if (all->count == FI_MAX_COUNTERS)
        return -1;
    all->items[all->count++] = *c;
    return 0;
}

/* A counter line: the kinds tried in the alternation's order, the first whose rest matches wins.
 * 0 (no counter), 1 (recorded) or -1 (defer). */
static int counter_line(const char *line, size_t n, uint32_t base, counter *c)
{
    if (n <= 4 || memcmp(line, "drm-", 4) != 0)
        return 0; /* every kind has a name after drm- */
    for (int kind = 0; kind < KINDS; kind++) {
        size_t k = KIND_LENGTHS[kind];
        if (line[4] != KIND_NAMES[kind][0] || n - 4 < k || memcmp(line + 4, KIND_NAMES[kind], k) != 0)
            continue; /* the first byte first: most kinds are told apart by it */
        int got = counter_rest(line, n, 4 + k, base, c);
        if (got != 0) {
            c->kind = kind;
            return got;
        }
    }
    return 0;
}

static const counter *find(const counters *all, const char *text, int kind, const counter *like)
{
    for (size_t k = 0; k < all->count; k++) {
        const counter *c = &all->items[k];
        if (c->kind == kind && c->len == like->len && text[c->at] == text[like->at] &&
            memcmp(text + c->at, text + like->at, like->len) == 0)
            return c;
    }
    return NULL;
}

/* drm_fdinfo._engines and _regions over the counters, in the order they were first written. */
static int finish(const counters *all, const char *text, fi_client *out)
{
    static const int RANK[KINDS] = {-1, -1, -1, -1, 0, 1, 2};
    int ranks[FI_MAX_ITEMS];
    out->engines_count = out->regions_count = 0;
    for (size_t k = 0; k < all->count; k++) {
        const counter *c = &all->items[k];
        if ((c->kind == K_ENGINE && (c->unit == U_NONE || c->unit == U_NS)) ||
            (c->kind == K_CYCLES && c->unit == U_NONE)) {
            fi_engine e = {.at = c->at, .len = c->len, .busy = c->value, .capacity = 1};
            if (c->kind == K_CYCLES) {
                const counter *total = find(all, text, K_TOTAL_CYCLES, c);
                if (total == NULL || total->unit != U_NONE)
                    continue; /* cycles mean nothing without the clock they count against */
                e.total = total->value;
                e.has_total = 1;
            }
            const counter *capacity = find(all, text, K_CAPACITY, c);
            if (capacity != NULL && capacity->unit == U_NONE && capacity->value != 0)
                e.capacity = capacity->value;
            if (out->engines_count == FI_MAX_ITEMS)
                return FI_DEFER;
            out->engines[out->engines_count++] = e;
        }
        int rank = RANK[c->kind];
        if (rank < 0 || c->unit == U_NS)
            continue;
        uint64_t scale = UNIT_BYTES[c->unit];
        if (c->value > UINT64_MAX / scale)
            return FI_DEFER; /* Python's integers do not overflow */
        uint32_t r = 0;
        while (r < out->regions_count && !(out->regions[r].len == c->len &&
                                           memcmp(text + out->regions[r].at, text + c->at, c->len) == 0))
            r++;
        if (r == out->regions_count) {
            if (r == FI_MAX_ITEMS)
                return FI_DEFER;
            out->regions[r] = (fi_region){.at = c->at, .len = c->len, .bytes = c->value * scale};
            ranks[r] = rank;
            out->regions_count++;
        } else if (rank < ranks[r]) {
            out->regions[r].bytes = c->value * scale;
            ranks[r] = rank;
        }
    }
    return FI_CLIENT;
}

int fi_parse(const char *text, size_t len, fi_client *out)
{
    if (len > UINT32_MAX / 2 || !canonical(text, len))
        return FI_DEFER;
    static __thread counters all; /* large: kept off the stack, one per thread */
    all.count = 0;
    int have[3] = {0, 0, 0};
    uint32_t meta_at[3] = {0, 0, 0}, meta_len[3] = {0, 0, 0};
    for (size_t start = 0; start <= len;) {
        const char *nl = memchr(text + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *line = text + start;
        size_t n = end - start;
        uint32_t at, span;
        int key = meta_line(line, n, (uint32_t)start, &at, &span);
        if (key >= 0) {
            have[key] = 1;
            meta_at[key] = at;
            meta_len[key] = span;
        } else {
            counter c;
            int got = counter_line(line, n, (uint32_t)start, &c);
            if (got < 0 || (got > 0 && add_counter(&all, text, &c) < 0))
                return FI_DEFER;
        }
        start = end + 1;
    }
    if (!have[0] || meta_len[0] == 0 || !have[1])
        return FI_NONE;
    int id = meta_int(text + meta_at[1], meta_len[1], &out->client_id);
    if (id == NUM_DEFER)
        return FI_DEFER;
    if (id == NUM_BAD)
        return FI_NONE;
    out->driver_at = meta_at[0];
    out->driver_len = meta_len[0];
    out->pdev_at = meta_at[2];
    out->pdev_len = have[2] ? meta_len[2] : 0;
    return finish(&all, text, out);
}
