/*
 * The text of a float4 or float8, byte for byte as PostgreSQL 12+ writes it with
 * extra_float_digits > 0 (sqlsnap's session sets 1): float4out/float8out in
 * src/backend/utils/adt/float.c, which call float_to_shortest_decimal_buf and
 * double_to_shortest_decimal_buf (src/common/f2s.c, d2s.c). Those are PostgreSQL's copy of
 * Ryu (Ulf Adams, "Ryu: fast float-to-string conversion", PLDI 2018): the fewest digits that
 * read back as the same value, and of those the closest to it.
 *
 * This file implements the same algorithm, written for sqlsnap rather than copied: one
 * routine for both widths (a float4's digits come from the same exact arithmetic with
 * float4's bounds), with the powers of five computed by scripts/gen_float_tables.py. Its
 * steps and names (vr, vp, vm) follow Ryu's reference implementation, Copyright 2018 Ulf
 * Adams (github.com/ulfjack/ryu, Apache License 2.0 or Boost Software License 1.0), as
 * PostgreSQL adapted it (PostgreSQL Licence). What the output must be:
 *
 *   - the candidates are the decimals strictly between v - (gap below)/2 and v + (gap
 *     above)/2: PostgreSQL never writes a bound itself, even when round-half-even would read
 *     it back as v (STRICTLY_SHORTEST 0 in its ryu_common.h, for readers that get
 *     round-half-even wrong);
 *   - of the candidates with the fewest significant digits, the closest to v; exactly
 *     halfway, the one with an even last digit;
 *   - fixed notation when the decimal exponent is from -4 to 14 (float8) or 5 (float4), as
 *     printf's %g would choose for 15 and 6 digits ("123456789012345", "1e+15", "0.0001",
 *     "1e-05"); else d.ddde+NN with at least two exponent digits;
 *   - "NaN" for every NaN (the sign is not written), "Infinity", "-Infinity", "0", "-0".
 *
 * tests/test_pgcopy.py compares the output with the server's own text for edge cases and
 * random values of both widths (random bit patterns too); tests/test_pgcopy_fuzz.py with the
 * rules above worked out in exact arithmetic (Python's fractions), for random floats, powers
 * of two and of ten and their neighbours.
 */
#include "_pgfloat.h"

#include <string.h>

#include "_pgfloat_tables.h"

/* ceil(log2(5^e)) for 1 <= e <= 3528, and 1 for e = 0 (scripts/gen_float_tables.py checks it). */
static inline int32_t
pow5bits(int32_t e)
{
    return (int32_t)(((uint32_t)e * 1217359) >> 19) + 1;
}

/* floor(log10(2^e)) for 0 <= e <= 1650. */
static inline int32_t
log10_pow2(int32_t e)
{
    return (int32_t)(((uint32_t)e * 78913) >> 18);
}

/* floor(log10(5^e)) for 0 <= e <= 2620. */
static inline int32_t
log10_pow5(int32_t e)
{
    return (int32_t)(((uint32_t)e * 732923) >> 20);
}

#if !defined(__SIZEOF_INT128__) || defined(PGF_NO_INT128)
/* a * b = *high * 2^64 + the result, from 32x32-bit products (no 128-bit type). */
static inline uint64_t
umul128(uint64_t a, uint64_t b, uint64_t *high)
{
    const uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    const uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;
    *high = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
    return (mid << 32) | (uint32_t)p00;
}
#endif

/* floor(m * mul / 2^shift) for a 128-bit table entry mul (low, high) and 64 <= shift < 192;
 * the callers' m (< 2^55) and shifts keep the result within 64 bits. */
static inline uint64_t
mul_shift(uint64_t m, const uint64_t mul[2], int32_t shift)
{
#if defined(__SIZEOF_INT128__) && !defined(PGF_NO_INT128)
    const unsigned __int128 low = (unsigned __int128)m * mul[0];
    const unsigned __int128 high = (unsigned __int128)m * mul[1];
    return (uint64_t)(((low >> 64) + high) >> (shift - 64));
#else
    uint64_t high0, high1, sum;
    const uint64_t low1 = umul128(m, mul[1], &high1);
    const int32_t s = shift - 64;
    (void)umul128(m, mul[0], &high0);
    sum = high0 + low1; /* (m * mul) >> 64 is high1:sum */
    high1 += sum < high0;
    if (s == 0)
        return sum;
    return s < 64 ? (sum >> s) | (high1 << (64 - s)) : high1 >> (s - 64);
#endif
}

static inline int
multiple_of_pow5(uint64_t value, int32_t p)
{
    int32_t count = 0;
    while (value % 5 == 0) {
        value /= 5;
        if (++count >= p)
            return 1;
    }
    return count >= p;
}

/* A decimal digits * 10^exp10. */
typedef struct {
    uint64_t digits;
    int32_t exp10;
} decimal;

/* The shortest decimal for m2 * 2^e2 (m2 < 2^54, with its leading bit; e2 >= -1074),
 * narrow_below when the next float down is nearer than the next one up (v is a power of two
 * above the smallest normal). */
static decimal
shortest(uint64_t m2, int32_t e2, int narrow_below)
{
    /* v and the two bounds in units of 2^(e2 - 2): even the narrow half-gap is whole. */
    const uint64_t mv = 4 * m2, mp = mv + 2, mm = mv - (narrow_below ? 1 : 2);
    uint64_t vr, vp, vm;
    int32_t e10, removed = 0;
    int vr_exact = 0, last = 0;
    decimal out;
    e2 -= 2;
    if (e2 >= 0) {
        /* Scaled by 10^-q, one digit more than the candidates can need (q one less than
         * log10(2^e2)), so that the first removed digit rounds. */
        const int32_t q = log10_pow2(e2) - (e2 > 3);
        const int32_t shift = -e2 + q + PGF_POW5_INV_BITS + pow5bits(q) - 1;
        vr = mul_shift(mv, pgf_pow5_inv[q], shift);
        vp = mul_shift(mp, pgf_pow5_inv[q], shift);
        vm = mul_shift(mm, pgf_pow5_inv[q], shift);
        e10 = q;
        /* x * 2^e2 / 10^q = x * 2^(e2 - q) / 5^q is whole iff 5^q divides x. Tested for
         * q <= 21 only, as Ryu (so PostgreSQL) does; at most one of mm, mv, mp is a multiple
         * of 5. */
        if (q <= 21) {
            if (mv % 5 == 0)
                vr_exact = multiple_of_pow5(mv, q);
            else
                vp -= (uint64_t)multiple_of_pow5(mp, q); /* the bound itself is excluded */
        }
    }
    else {
        const int32_t q = log10_pow5(-e2) - (-e2 > 1);
        const int32_t i = -e2 - q;
        const int32_t shift = q - (pow5bits(i) - PGF_POW5_BITS);
        vr = mul_shift(mv, pgf_pow5[i], shift);
        vp = mul_shift(mp, pgf_pow5[i], shift);
        vm = mul_shift(mm, pgf_pow5[i], shift);
        e10 = q + e2;
        /* x * 2^e2 / 10^(q + e2) = x * 5^i / 2^q is whole iff 2^q divides x: always for mv
         * (4 * m2) and mp (4 * m2 + 2) when q <= 1, never for mp beyond. */
        if (q <= 1) {
            vr_exact = 1;
            vp--;
        }
        else if (q < 63)
            /* 2^(q - 1), as Ryu: where that differs from 2^q, v's last two digits are 25 or
             * 75 (an odd multiple of 5^n), so no tie is misjudged. */
            vr_exact = (mv & ((UINT64_C(1) << (q - 1)) - 1)) == 0;
    }
    /* Drop digits while a candidate remains at the coarser scale: vm is at or below the lower
     * bound (excluded), vp the last whole number below the upper one. */
    if (!vr_exact) {
        /* The common case: the digits dropped only decide the rounding of the last one kept. */
        while (vp / 100 > vm / 100) {
            last = (int)(vr % 100) / 10;
            vr /= 100;
            vp /= 100;
            vm /= 100;
            removed += 2;
        }
        if (vp / 10 > vm / 10) {
            last = (int)(vr % 10);
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
    }
    else {
        while (vp / 10 > vm / 10) {
            vr_exact &= last == 0; /* still exact below the last dropped digit */
            last = (int)(vr % 10);
            vr /= 10;
            vp /= 10;
            vm /= 10;
            removed++;
        }
        if (vr_exact && last == 5 && vr % 2 == 0)
            last = 4; /* exactly halfway: to the even digit */
    }
    /* vr + 1 when vr is not above the lower bound, or when rounding up. */
    out.digits = vr + (vr == vm || last >= 5);
    out.exp10 = e10 + removed;
    return out;
}

static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                  "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                  "8081828384858687888990919293949596979899";

/* The text of a decimal; fixed notation for decimal exponents from -4 to fixed_below - 1. */
static int
put_decimal(char *out, int negative, decimal d, int32_t fixed_below)
{
    char buffer[20], *const end = buffer + sizeof(buffer), *digits = end;
    int n, at = 0, i;
    int32_t exponent;
    while (d.digits % 10 == 0) { /* a rounded-up last digit can leave a zero: 1.0e+21 -> 1e+21 */
        d.digits /= 10;
        d.exp10++;
    }
    for (; d.digits >= 100; d.digits /= 100) { /* two digits a division (from a table) */
        digits -= 2;
        memcpy(digits, digit_pairs + 2 * (d.digits % 100), 2);
    }
    if (d.digits >= 10) {
        digits -= 2;
        memcpy(digits, digit_pairs + 2 * d.digits, 2);
    }
    else
        *--digits = (char)('0' + d.digits);
    n = (int)(end - digits);
    exponent = d.exp10 + n - 1; /* of the first digit */
    if (negative)
        out[at++] = '-';
    if (exponent >= -4 && exponent < fixed_below) {
        if (d.exp10 >= 0) { /* ddd000 */
            memcpy(out + at, digits, (size_t)n);
            at += n;
            memset(out + at, '0', (size_t)d.exp10);
            return at + d.exp10;
        }
        if (exponent >= 0) { /* dd.ddd */
            memcpy(out + at, digits, (size_t)exponent + 1);
            at += exponent + 1;
            out[at++] = '.';
            memcpy(out + at, digits + exponent + 1, (size_t)(n - exponent - 1));
            return at + n - exponent - 1;
        }
        out[at++] = '0'; /* 0.000ddd */
        out[at++] = '.';
        for (i = -1; i > exponent; i--)
            out[at++] = '0';
        memcpy(out + at, digits, (size_t)n);
        return at + n;
    }
    out[at++] = digits[0];
    if (n > 1) {
        out[at++] = '.';
        memcpy(out + at, digits + 1, (size_t)n - 1);
        at += n - 1;
    }
    out[at++] = 'e';
    out[at++] = exponent < 0 ? '-' : '+';
    if (exponent < 0)
        exponent = -exponent;
    if (exponent >= 100)
        out[at++] = (char)('0' + exponent / 100);
    out[at++] = (char)('0' + exponent / 10 % 10);
    out[at++] = (char)('0' + exponent % 10);
    return at;
}

/* NaN, the infinities and the zeros (ryu_common.h copy_special_str). */
static int
put_special(char *out, int negative, int all_ones, int mantissa)
{
    if (all_ones && mantissa) {
        memcpy(out, "NaN", 3);
        return 3;
    }
    if (all_ones) {
        memcpy(out, negative ? "-Infinity" : "Infinity", 8 + (size_t)negative);
        return 8 + negative;
    }
    memcpy(out, negative ? "-0" : "0", 1 + (size_t)negative);
    return 1 + negative;
}

/* A float of mbits significand bits (without the leading one) and ebits exponent bits. */
static int
put_float(uint64_t bits, int mbits, int ebits, int32_t fixed_below, char *out)
{
    const int negative = (int)(bits >> (mbits + ebits)) & 1;
    const uint64_t mantissa = bits & ((UINT64_C(1) << mbits) - 1);
    const int32_t all_ones = (1 << ebits) - 1, bias = (1 << (ebits - 1)) - 1;
    const int32_t exponent = (int32_t)((bits >> mbits) & (uint64_t)all_ones);
    if (exponent == all_ones || (exponent == 0 && mantissa == 0))
        return put_special(out, negative, exponent == all_ones, mantissa != 0);
    if (exponent == 0) /* subnormal */
        return put_decimal(out, negative, shortest(mantissa, 1 - bias - mbits, 0), fixed_below);
    return put_decimal(out, negative,
                       shortest(mantissa | (UINT64_C(1) << mbits), exponent - bias - mbits,
                                mantissa == 0 && exponent > 1),
                       fixed_below);
}

int
pgf_float8(uint64_t bits, char *out)
{
    return put_float(bits, 52, 11, 15, out);
}

int
pgf_float4(uint32_t bits, char *out)
{
    return put_float(bits, 23, 8, 6, out);
}
