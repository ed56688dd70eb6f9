/* tracklab-sysmon C helper, Intel engine use: EngineMeter's per-tick accounting (see engines.h). */
#include "engines.h"
#include "fdinfo.h"

#include <stdlib.h>
#include <string.h>

typedef unsigned __int128 u128;

typedef struct {
    si_attr *file;
    uint8_t known;   /* verdict and reading are those of the file's last text */
    uint8_t verdict; /* EM_OK, EM_GONE or EM_DEFER */
    em_reading reading;
} member;

typedef struct {
    int32_t card;
    uint8_t classes;
    uint64_t client_id;
    em_time times[EM_CLASSES];
} kept;

/* A tick's clients, in order, with an open-addressing index by (card, id): -1 marks an empty slot. */
typedef struct {
    kept *items;
    size_t count, capacity;
    int32_t *slots;
    size_t mask; /* slots: mask + 1, a power of two at least twice the capacity */
} table;

struct em_meter {
    char **pdevs;
    size_t cards;
    member *members;
    size_t count;
    uint8_t *states; /* si_attr_read's, one per member */
    char *page;      /* si_attr_read's, SI_CHUNK bytes */
    u128 *memory;    /* one tick's sums, per card */
    table before, now;
    fi_client parsed;
};

static size_t hash(int32_t card, uint64_t id, size_t mask)
{
    uint64_t h = (id ^ ((uint64_t)(uint32_t)card << 40)) * 0x9e3779b97f4a7c15u;
    return (size_t)(h >> 17) & mask;
}

/* The slot of (card, id): its item's, or the empty one where it would go. */
static int32_t *slot_of(const table *t, int32_t card, uint64_t id)
{
    size_t s = hash(card, id, t->mask);
    for (;; s = (s + 1) & t->mask) {
        int32_t at = t->slots[s];
        if (at < 0 || (t->items[at].card == card && t->items[at].client_id == id))
            return &t->slots[s];
    }
}

/* Room for n items (and an empty index): 0, or -1 without memory (the table as it was). */
static int table_reset(table *t, size_t n)
{
    if (n > t->capacity || t->slots == NULL) {
        size_t capacity = n > 8 ? n : 8, slots = 16;
        while (slots < 2 * capacity)
            slots *= 2;
        kept *items = malloc(capacity * sizeof *items);
        int32_t *index = malloc(slots * sizeof *index);
        if (items == NULL || index == NULL || capacity > INT32_MAX) {
            free(items);
            free(index);
            return -1;
        }
        free(t->items);
        free(t->slots);
        t->items = items;
        t->slots = index;
        t->capacity = capacity;
        t->mask = slots - 1;
    }
    t->count = 0;
    memset(t->slots, 0xff, (t->mask + 1) * sizeof *t->slots);
    return 0;
}

static void table_index(table *t)
{
    memset(t->slots, 0xff, (t->mask + 1) * sizeof *t->slots);
    for (size_t i = 0; i < t->count; i++)
        if (t->items[i].card >= 0)
            *slot_of(t, t->items[i].card, t->items[i].client_id) = (int32_t)i;
}

em_meter *em_new(void)
{
    em_meter *m = calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->page = malloc(SI_CHUNK);
    if (m->page == NULL || table_reset(&m->before, 0) < 0 || table_reset(&m->now, 0) < 0 || em_cards(m, NULL, 0) < 0) {
        em_free(m);
        return NULL;
    }
    return m;
}

static void free_pdevs(char **pdevs, size_t n)
{
    for (size_t i = 0; pdevs != NULL && i < n; i++)
        free(pdevs[i]);
    free(pdevs);
}

void em_free(em_meter *m)
{
    if (m == NULL)
        return;
    free_pdevs(m->pdevs, m->cards);
    free(m->memory);
    free(m->members);
    free(m->states);
    free(m->page);
    free(m->before.items);
    free(m->before.slots);
    free(m->now.items);
    free(m->now.slots);
    free(m);
}

int em_cards(em_meter *m, const char *const *pdevs, size_t n)
{
    char **copy = calloc(n ? n : 1, sizeof *copy);
    u128 *memory = calloc(n ? n : 1, sizeof *memory);
    if (copy == NULL || memory == NULL) {
        free(copy);
        free(memory);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((copy[i] = strdup(pdevs[i])) == NULL) {
            free_pdevs(copy, n);
            free(memory);
            return -1;
        }
    table *before = &m->before; /* kept times follow their card's address (-1: a card gone, never matched) */
    for (size_t i = 0; i < before->count; i++) {
        kept *k = &before->items[i];
        int32_t card = -1;
        for (size_t j = 0; k->card >= 0 && j < n; j++)
            if (strcmp(m->pdevs[k->card], copy[j]) == 0)
                card = (int32_t)j;
        k->card = card;
    }
    table_index(before);
    free_pdevs(m->pdevs, m->cards);
    free(m->memory);
    m->pdevs = copy;
    m->cards = n;
    m->memory = memory;
    for (size_t i = 0; i < m->count; i++)
        m->members[i].known = 0; /* a reading names its card by index: parsed again */
    return 0;
}

/* intel_cards.engine_class: the name, else the name without its trailing digits; -1 for neither. */
static int engine_class(const char *name, size_t len)
{
    static const char *const NAMES[] = {"render", "copy", "video", "video-enhance", "compute",
                                        "rcs", "bcs", "vcs", "vecs", "ccs"};
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < 10; k++)
            if (strlen(NAMES[k]) == len && memcmp(NAMES[k], name, len) == 0)
                return k % EM_CLASSES;
        while (len > 0 && name[len - 1] >= '0' && name[len - 1] <= '9')
            len--;
    }
    return -1;
}

static int starts(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(s, prefix, k) == 0;
}

/* The card whose address is pdev lower-cased (ASCII: the text is canonical); -1 for none. */
static int32_t card_of(const em_meter *m, const char *pdev, size_t len)
{
    for (size_t c = 0; len > 0 && c < m->cards; c++) {
        const char *want = m->pdevs[c];
        size_t i = 0;
        for (; i < len && want[i] != '\0'; i++) {
            char ch = pdev[i] >= 'A' && pdev[i] <= 'Z' ? (char)(pdev[i] - 'A' + 'a') : pdev[i];
            if (ch != want[i])
                break;
        }
        if (i == len && want[i] == '\0')
            return (int32_t)c;
    }
    return -1;
}

/* A member's text: its verdict, and its reading where EM_OK (EngineMeter's _by_class and memory). */
static int parse(em_meter *m, const char *text, size_t len, em_reading *r)
{
    fi_client *c = &m->parsed;
    int got = fi_parse(text, len, c);
    if (got != FI_CLIENT)
        return got == FI_NONE ? EM_GONE : EM_DEFER;
    r->card = c->pdev_len ? card_of(m, text + c->pdev_at, c->pdev_len) : -1;
    if (r->card < 0)
        return EM_GONE;
    r->client_id = c->client_id;
    r->classes = 0;
    for (uint32_t e = 0; e < c->engines_count; e++) {
        const fi_engine *engine = &c->engines[e];
        int cls = engine_class(text + engine->at, engine->len);
        if (cls < 0)
            continue;
        r->classes |= (uint8_t)(1u << cls);
        r->times[cls] = (em_time){.busy = engine->busy, .total = engine->total, .capacity = engine->capacity,
                                  .has_total = engine->has_total};
    }
    u128 memory = 0;
    for (uint32_t k = 0; k < c->regions_count; k++) {
        const fi_region *region = &c->regions[k];
        const char *name = text + region->at;
        if (starts(name, region->len, "vram") || starts(name, region->len, "local"))
            memory += region->bytes;
    }
    r->memory_lo = (uint64_t)memory;
    r->memory_hi = (uint64_t)(memory >> 64);
    return EM_OK;
}

/* The members as `files` lists them, each keeping its reading where its file was a member before. */
static int take_up(em_meter *m, si_attr *const *files, size_t n)
{
    member *members = calloc(n ? n : 1, sizeof *members);
    uint8_t *states = malloc(n ? n : 1);
    if (members == NULL || states == NULL) {
        free(members);
        free(states);
        return -1;
    }
    size_t cursor = 0; /* the order is mostly kept: look on from the last match first */
    for (size_t i = 0; i < n; i++) {
        members[i].file = files[i];
        for (size_t tried = 0; tried < m->count; tried++, cursor = (cursor + 1) % m->count)
            if (m->members[cursor].file == files[i]) {
                members[i] = m->members[cursor];
                cursor = (cursor + 1) % m->count;
                break;
            }
    }
    free(m->members);
    free(m->states);
    m->members = members;
    m->states = states;
    m->count = n;
    return 0;
}

size_t em_read(em_meter *m, si_attr *const *files, size_t n, uint8_t *states)
{
    int same = n == m->count;
    for (size_t i = 0; same && i < n; i++)
        same = m->members[i].file == files[i];
    if (!same && take_up(m, files, n) < 0)
        return (size_t)-1;
    size_t changed = si_attr_read(files, n, m->states, m->page);
    if (changed == (size_t)-1) {
        for (size_t i = 0; i < n; i++)
            m->members[i].known = 0;
        return changed;
    }
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        member *mb = &m->members[i];
        uint8_t state = m->states[i];
        if (state == SI_UNREADABLE) {
            mb->known = 1;
            mb->verdict = EM_GONE;
        } else if (state == SI_CHANGED || !mb->known) {
            size_t len;
            const char *text = si_attr_text(mb->file, &len);
            mb->verdict = (uint8_t)(text != NULL ? parse(m, text, len, &mb->reading) : EM_GONE);
            mb->known = 1;
        }
        states[i] = mb->verdict;
        count += mb->verdict != EM_OK;
    }
    return count;
}

void em_set(em_meter *m, size_t i, const em_reading *r)
{
    if (i >= m->count)
        return;
    m->members[i].verdict = r != NULL ? EM_OK : EM_GONE;
    if (r != NULL)
        m->members[i].reading = *r;
}

/* busy_percent's share, where _advance adds one: 0.0 for none. */
static double share(const em_time *start, const em_time *now, double interval)
{
    uint64_t busy = now->busy - start->busy; /* now->busy >= start->busy */
    double span = now->has_total && start->has_total ? (double)((int64_t)now->total - (int64_t)start->total)
                                                     : interval * 1e9;
    if (span <= 0)
        return 0.0;
    double got = 100.0 * (double)busy / (span * (double)(now->capacity > 1 ? now->capacity : 1));
    return got < 100.0 ? got : 100.0;
}

/* One client of this tick into t (the first of its key), its card's sums in out. */
static void account_one(em_meter *m, const em_reading *r, int measured, double interval, em_card *out)
{
    table *t = &m->now;
    if (r->card < 0 || (size_t)r->card >= m->cards)
        return;
    int32_t *slot = slot_of(t, r->card, r->client_id);
    if (*slot >= 0)
        return; /* one client shared through several fds or processes counts once */
    *slot = (int32_t)t->count;
    kept *k = &t->items[t->count++];
    k->card = r->card;
    k->client_id = r->client_id;
    k->classes = r->classes;
    em_card *card = &out[r->card];
    card->classes |= r->classes;
    m->memory[r->card] += (u128)r->memory_hi << 64 | r->memory_lo;
    int32_t at = *slot_of(&m->before, r->card, r->client_id);
    const kept *before = at >= 0 ? &m->before.items[at] : NULL;
    for (int cls = 0; cls < EM_CLASSES; cls++) {
        if (!(r->classes >> cls & 1))
            continue;
        const em_time *now = &r->times[cls];
        k->times[cls] = *now;
        if (before == NULL || !(before->classes >> cls & 1))
            continue; /* no earlier value to count from */
        const em_time *start = &before->times[cls];
        if (now->busy < start->busy) {
            k->times[cls] = *start; /* kept larger: ignored until the counter catches up, no share */
            continue;
        }
        if (now->busy != start->busy && measured)
            card->shares[cls] += share(start, now, interval);
    }
}

/* Starts a tick of n clients at most; -1 without memory. */
static int begin(em_meter *m, size_t n, em_card *out)
{
    if (table_reset(&m->now, n) < 0)
        return -1;
    memset(out, 0, m->cards * sizeof *out);
    memset(m->memory, 0, m->cards * sizeof *m->memory);
    return 0;
}

static void finish(em_meter *m, em_card *out)
{
    for (size_t c = 0; c < m->cards; c++) {
        out[c].memory_lo = (uint64_t)m->memory[c];
        out[c].memory_hi = (uint64_t)(m->memory[c] >> 64);
    }
    table swap = m->before; /* this tick's clients are the next one's kept times */
    m->before = m->now;
    m->now = swap;
}

int em_account_members(em_meter *m, int measured, double interval, em_card *out)
{
    if (begin(m, m->count, out) < 0)
        return -1;
    for (size_t i = 0; i < m->count; i++)
        if (m->members[i].known && m->members[i].verdict == EM_OK)
            account_one(m, &m->members[i].reading, measured, interval, out);
    finish(m, out);
    return 0;
}

int em_account(em_meter *m, const em_reading *readings, size_t n, int measured, double interval, em_card *out)
{
    if (begin(m, n, out) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        account_one(m, &readings[i], measured, interval, out);
    finish(m, out);
    return 0;
}

size_t em_kept(const em_meter *m, em_reading *out, size_t cap)
{
    const table *t = &m->before;
    for (size_t i = 0; i < t->count && i < cap; i++) {
        const kept *k = &t->items[i];
        out[i] = (em_reading){.card = k->card, .classes = k->classes, .client_id = k->client_id};
        memcpy(out[i].times, k->times, sizeof k->times);
    }
    return t->count;
}
