/* Numbers as the Python twin makes and orjson writes them: round(x, 2) and the JSON of a decimal. */
#ifndef TRACKLAB_SYSMON_NUMBERS_H
#define TRACKLAB_SYSMON_NUMBERS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double POW10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Python's round(x, 2): the decimal nearest the exact binary value (ties to even), as the nearest
 * double. Away from a tie, x * 100's rounding error (under 2^-50 of it) cannot change the nearest
 * integer k, and k / 100 is then the double nearest k/100 (an exact k over 100, rounded once);
 * near a tie, or for a huge or non-finite x, printf decides on the exact value as Python's dtoa. */
static inline double round2(double x)
{
    double y = x * 100.0;
    if (fabs(y) < 0x1p50) {
        double frac = y - floor(y);
        if (fabs(frac - 0.5) > 1e-6 + fabs(y) * 0x1p-49)
            return nearbyint(y) / 100.0;
    } else if (!isfinite(x)) {
        return x;
    }
    char buf[400]; /* %.2f of the largest double: 309 digits, the point and two places */
    snprintf(buf, sizeof buf, "%.2f", x);
    return strtod(buf, NULL);
}

/* `x` as orjson writes it, when x is a decimal of at most 3 places below 1e12 (every value the
 * helper writes: ticks / 100, rates and usage to 2 places, kHz / 1000, millidegrees / 1000): then
 * orjson's shortest round-trip form is that decimal, trailing zeros dropped, ".0" when whole. NaN
 * is null. Returns the length (at most 24), or -1 for anything else (the caller lets orjson write
 * the whole array). */
static inline int put_number(char *p, double x)
{
    if (isnan(x)) {
        memcpy(p, "null", 4);
        return 4;
    }
    if (!(fabs(x) < 1e12))
        return -1;
    if (x == 0.0) {
        const char *zero = signbit(x) ? "-0.0" : "0.0";
        memcpy(p, zero, strlen(zero));
        return (int)strlen(zero);
    }
    for (int places = 0; places <= 3; places++) {
        double k = nearbyint(x * POW10[places]);
        if (k / POW10[places] != x)
            continue;
        char *start = p;
        if (k < 0) {
            *p++ = '-';
            k = -k;
        }
        /* k's decimal digits, then the point `places` digits from the right (zero-padded). The
         * fewest places come first, so the fraction never ends in a zero. */
        char digits[24];
        int n = 0;
        for (unsigned long long v = (unsigned long long)k; v > 0 || n <= places; v /= 10)
            digits[n++] = (char)('0' + v % 10);
        for (int i = n - 1; i >= places; i--)
            *p++ = digits[i];
        *p++ = '.';
        if (places == 0)
            *p++ = '0';
        for (int i = places - 1; i >= 0; i--)
            *p++ = digits[i];
        return (int)(p - start);
    }
    return -1;
}

/* An unsigned 64-bit integer in decimal, as orjson writes a Python int; returns the length. */
static inline int put_uint(char *p, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    for (int i = 0; i < n; i++)
        p[i] = digits[n - 1 - i];
    return n;
}

#endif
