/* The C test programs' one assertion: CHECK(cond, fmt, ...) counts a pass or prints the failure. */
#ifndef TRACKLAB_SYSMON_TEST_CHECK_H
#define TRACKLAB_SYSMON_TEST_CHECK_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                                           \
    do {                                                           \
        if (cond) {                                                \
            passed++;                                              \
        } else {                                                   \
            failed++;                                              \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);   \
            fprintf(stderr, __VA_ARGS__);                          \
            fputc('\n', stderr);                                   \
        }                                                          \
    } while (0)

#endif
