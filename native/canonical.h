/* The canonical subset both C parsers accept (see docs/native.md): shared by sysmon.c and procwalk.c. */
#ifndef TRACKLAB_SYSMON_CANONICAL_H
#define TRACKLAB_SYSMON_CANONICAL_H

#include <stddef.h>

enum { NUM_OK, NUM_BAD, NUM_DEFER };

/* Only printable ASCII, tabs and newlines: then lines, whitespace and digits mean what Python's
 * str.splitlines, str.split and int mean. Anything else goes to the Python parser. */
static inline int canonical(const char *t, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if ((c < 0x20 || c > 0x7e) && c != '\n' && c != '\t')
            return 0;
    }
    return 1;
}

static inline int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n';
}

#endif
