/* tracklab-sysmon C helper, DRM fdinfo: one /proc/PID/fdinfo/N text parsed as drm_fdinfo.parse_fdinfo does.
 *
 * It decides only canonical text (printable ASCII, tabs and newlines; see canonical.h) whose numbers are
 * plain decimals of at most 18 digits and whose region sizes fit 64 bits; on anything else it returns
 * FI_DEFER and Python parses the text with the Python parser, so both agree by construction on odd
 * input. Lines are matched as the parser's two regular expressions match them (the alternatives tried in
 * their order); a key written twice counts with its last value, in the order it was first written.
 * Names are handed back as spans of the text.
 */
#ifndef TRACKLAB_FDINFO_H
#define TRACKLAB_FDINFO_H

#include <stddef.h>
#include <stdint.h>

enum { FI_CLIENT = 0, FI_NONE = 1, FI_DEFER = 2 }; /* a client; not a DRM client (None); Python decides */
enum { FI_MAX_COUNTERS = 96, FI_MAX_ITEMS = 48 };    /* more lines than these: FI_DEFER */

typedef struct {
    uint32_t at, len; /* the name: text[at, at + len) */
    uint64_t busy;
    uint64_t total; /* has_total: the cycles' clock (xe) */
    uint64_t capacity;
    uint8_t has_total;
} fi_engine;

typedef struct {
    uint32_t at, len;
    uint64_t bytes;
} fi_region;

typedef struct {
    uint32_t driver_at, driver_len;
    uint32_t pdev_at, pdev_len; /* pdev_len 0: None */
    uint64_t client_id;
    uint32_t engines_count, regions_count;
    fi_engine engines[FI_MAX_ITEMS];
    fi_region regions[FI_MAX_ITEMS];
} fi_client;

int fi_parse(const char *text, size_t len, fi_client *out);

#endif
