/* The canonical subset both C parsers accept (see docs/native.md): shared by sysmon.c and procwalk.c. */
#ifndef TRACKLAB_SYSMON_CANONICAL_H
#define TRACKLAB_SYSMON_CANONICAL_H

#include <stddef.h>

enum { NUM_OK, NUM_BAD, NUM_DEFER };

/* Only printable ASCII, tabs and newlines: then lines, whitespace and digits mean what Python's
 * str.splitlines, str.split and int mean. Anything else goes to the Python parser. */
static inline int canonical_odd(unsigned char c)
{
    return ((unsigned char)(c - 0x20) > 0x5e) & (c != '\n') & (c != '\t');
}

static inline int canonical(const char *t, size_t len)
{
    size_t i = 0;
    for (; i + 16 <= len; i += 16) { /* blocks without an early exit: -O2 vectorizes them (5x faster) */
        int odd = 0;
        for (size_t k = 0; k < 16; k++)
            odd |= canonical_odd((unsigned char)t[i + k]);
        if (odd)
            return 0;
    }
    for (; i < len; i++)
        if (canonical_odd((unsigned char)t[i]))
            return 0;
    return 1;
}

static inline int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n';
}

#endif
