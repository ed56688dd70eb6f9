/* tracklab-sysmon C helper, Intel engine use: intel_engines.EngineMeter's accounting over the DRM clients.
 *
 * A meter keeps what EngineMeter keeps between ticks: each client's engine times per class (the kept-larger
 * rule), keyed by (card, drm-client-id), and of each member of the walk's kept fdinfo files (si_attr, in the
 * walk's order) the reading its last text gave, so a text that did not change is not parsed again. One tick:
 * em_read reads the members and parses the changed texts (fi_parse), then em_account_members sums each card's
 * shares of the interval over its clients (busy_percent's arithmetic, in the clients' order), the classes they
 * list and the device memory they hold. A walk's tick hands its clients' readings to em_account instead.
 * Rounding and records stay in Python. Text fi_parse leaves to Python is parsed there and handed back (em_set).
 * Numbers: engine times and clocks below 2^63 (fi_parse's 18 digits always are; Python does not hand over
 * others), memory summed in 128 bits.
 */
#ifndef TRACKLAB_ENGINES_H
#define TRACKLAB_ENGINES_H

#include <stddef.h>
#include <stdint.h>

#include "sysints.h"

enum { EM_CLASSES = 5 }; /* render, copy, video, video-enhance, compute: intel_cards.ENGINE_ORDER */
enum { EM_OK = 0, EM_GONE = 1, EM_DEFER = 2 }; /* a member after em_read */

typedef struct {
    uint64_t busy, total, capacity; /* capacity >= 1 */
    uint8_t has_total;
} em_time;

/* One client as read: its card (index into em_cards' list), id, the classes it lists (bit c: class c) with
 * the time of each (a class listed twice: its last engine), and the bytes it holds in vram and local regions. */
typedef struct {
    int32_t card;
    uint8_t classes;
    uint64_t client_id;
    uint64_t memory_lo, memory_hi;
    em_time times[EM_CLASSES];
} em_reading;

/* One card's sums over its clients on one tick: the shares per class (0.0 where none), the classes any client
 * lists, and memory (hi << 64 | lo). */
typedef struct {
    double shares[EM_CLASSES];
    uint64_t memory_lo, memory_hi;
    uint8_t classes;
} em_card;

typedef struct em_meter em_meter;

/* NULL without memory. */
em_meter *em_new(void);
void em_free(em_meter *m);

/* The cards' PCI addresses (lower case, copied), in the order em_card results follow. Kept times follow their
 * card by address; the members' readings are parsed again. 0, or -1 without memory (nothing changed). */
int em_cards(em_meter *m, const char *const *pdevs, size_t n);

/* Reads the n members (the walk's kept files; a list unlike the last call's is taken up, readings following
 * their file) and parses those whose text changed. states[i]: EM_OK (a client of one of the cards), EM_GONE
 * (unreadable, not a DRM client, or of no card) or EM_DEFER (text fi_parse leaves to Python: the caller hands
 * its reading to em_set). Returns how many are not EM_OK, or (size_t)-1 without memory. */
size_t em_read(em_meter *m, si_attr *const *files, size_t n, uint8_t *states);

/* Member i's reading (NULL: it is gone), for a member em_read deferred. */
void em_set(em_meter *m, size_t i, const em_reading *r);

/* One tick over the members em_read found (EM_OK, or set) in their order, or over n readings: the first of a
 * (card, client id) counts. measured: whether the tick has an interval (seconds) since the last one; without
 * it the times are kept and no share is added. out: one em_card per card. 0, or -1 without memory (the kept
 * times are those before the call). */
int em_account_members(em_meter *m, int measured, double interval, em_card *out);
int em_account(em_meter *m, const em_reading *readings, size_t n, int measured, double interval, em_card *out);

/* The kept clients (the last tick's), their times in `times` (class, card and id set): how many there are;
 * at most `cap` are written. */
size_t em_kept(const em_meter *m, em_reading *out, size_t cap);

#endif
