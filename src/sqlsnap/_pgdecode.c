/*
 * Binary COPY tuples to the snapshot format's JSON, byte for byte what the server's
 * row_to_json path writes (sources/postgresql.py; tests/test_pgcopy.py compares the two).
 *
 * The binary layouts are those of PostgreSQL's *_send functions (src/backend/utils/adt:
 * numeric.c numeric_send, date.c, timestamp.c, arrayfuncs.c array_send, jsonb.c jsonb_send,
 * uuid.c, varlena.c), and the text written is that of their *_out functions under the
 * session settings sqlsnap sets (TimeZone=UTC, DateStyle=ISO, IntervalStyle=iso_8601), with
 * json.c's rules for dates and timestamps (XSD style: 'T', timestamptz with an offset that
 * sqlsnap writes as 'Z').
 *
 * Nothing here trusts the stream: every length is checked against the message, every value
 * against the range its type can hold, text must be UTF-8 and json/jsonb must be JSON, so a
 * malformed or truncated message is refused (PGD_MSG_BAD) and never written as a wrong value
 * or as invalid JSON (tests/test_pgcopy_fuzz.py).
 */
#include "_pgdecode.h"

#include "_pgfloat.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define USECS_PER_DAY INT64_C(86400000000)
#define USECS_PER_HOUR INT64_C(3600000000)
#define USECS_PER_MINUTE INT64_C(60000000)
#define USECS_PER_SEC INT64_C(1000000)
#define POSTGRES_EPOCH_JDATE 2451545
/* Valid ranges (datatype/timestamp.h). */
#define MIN_TIMESTAMP INT64_C(-211813488000000000)
#define END_TIMESTAMP INT64_C(9223371331200000000)
#define DATE_END_JULIAN 2147483494
#define TZDISP_LIMIT (16 * 3600)

#define NUMERIC_POS 0x0000
#define NUMERIC_NEG 0x4000
#define NUMERIC_NAN 0xC000
#define NUMERIC_PINF 0xD000
#define NUMERIC_NINF 0xF000

static const char signature[11] = "PGCOPY\n\377\r\n\0";

static uint16_t
be16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t
be64(const unsigned char *p)
{
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

int
pgd_reserve(pgd_buf *out, size_t extra)
{
    size_t want, cap;
    char *data;
    if (out->cap - out->len >= extra)
        return 0;
    want = out->len + extra;
    if (want < out->len)
        return -1;
    if (out->grow != NULL)
        return out->grow(out, want);
    cap = out->cap ? out->cap : 4096;
    while (cap < want) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    data = realloc(out->data, cap);
    if (data == NULL)
        return -1;
    out->data = data;
    out->cap = cap;
    return 0;
}

/* Callers reserve first: these write without checking. */
#define PUT(out, c) ((out)->data[(out)->len++] = (char)(c))

static void
put_mem(pgd_buf *out, const void *p, size_t n)
{
    memcpy(out->data + out->len, p, n);
    out->len += n;
}

static void
put_u64(pgd_buf *out, uint64_t v)
{
    char tmp[20];
    int i = 20;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put_mem(out, tmp + i, (size_t)(20 - i));
}

static void
put_i64(pgd_buf *out, int64_t v)
{
    if (v < 0) {
        PUT(out, '-');
        put_u64(out, (uint64_t)0 - (uint64_t)v);
    }
    else
        put_u64(out, (uint64_t)v);
}

/* pg_ultostr_zeropad: at least width digits. */
static void
put_zeropad(pgd_buf *out, uint64_t v, int width)
{
    char tmp[20];
    int i = 20;
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (20 - i < width)
        tmp[--i] = '0';
    put_mem(out, tmp + i, (size_t)(20 - i));
}

/* Length of the UTF-8 sequence at p (at most n bytes), 0 when it is not one. */
static size_t
utf8_length(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return n >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return n >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return n >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
                       (p[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

/* 1 for bytes written unchanged inside a JSON string (printable ASCII but " and \). */
static unsigned char plain[256];

void
pgd_init(void)
{
    int c;
    for (c = 0x20; c < 0x80; c++)
        plain[c] = 1;
    plain['"'] = plain['\\'] = 0;
}

/* How many bytes at p, at most n, are written unchanged inside a JSON string (plain[]). Text
 * is mostly plain ASCII, so it is tested 16 bytes at a time (SSE2, which every x86-64 has):
 * byte by byte, scanning jsonb's strings was the decoder's largest cost (10% of the client's
 * CPU samples on the benchmark, bench/README.md). */
static size_t
plain_run(const unsigned char *p, size_t n)
{
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'),
                  space = _mm_set1_epi8(0x20);
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        /* A signed comparison: bytes from 0x80 are negative, so "below 0x20" finds them too. */
        __m128i special = _mm_or_si128(_mm_cmplt_epi8(v, space),
                                       _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
        unsigned mask = (unsigned)_mm_movemask_epi8(special);
        if (mask)
            return i + (size_t)__builtin_ctz(mask);
    }
#endif
    while (i < n && plain[p[i]])
        i++;
    return i;
}

/* json.c escape_json: ", \, \b \f \n \r \t, other control characters as \u00xx. */
static int
put_string(pgd_buf *out, const unsigned char *p, size_t n, const char **reason)
{
    static const char hex[] = "0123456789abcdef";
    size_t i = 0;
    if (pgd_reserve(out, n * 6 + 2) < 0) {
        *reason = "out of memory";
        return -1;
    }
    PUT(out, '"');
    while (i < n) {
        size_t start = i, len;
        unsigned char c;
        i += plain_run(p + i, n - i);
        put_mem(out, p + start, i - start);
        if (i == n)
            break;
        c = p[i];
        if (c >= 0x80) {
            len = utf8_length(p + i, n - i);
            if (len == 0) {
                *reason = "text that is not UTF-8 (is the database's encoding SQL_ASCII? use --no-binary-copy)";
                return -1;
            }
            put_mem(out, p + i, len);
            i += len;
            continue;
        }
        PUT(out, '\\');
        switch (c) {
        case '"': PUT(out, '"'); break;
        case '\\': PUT(out, '\\'); break;
        case '\b': PUT(out, 'b'); break;
        case '\f': PUT(out, 'f'); break;
        case '\n': PUT(out, 'n'); break;
        case '\r': PUT(out, 'r'); break;
        case '\t': PUT(out, 't'); break;
        case 0:
            *reason = "text holding a NUL byte";
            return -1;
        default:
            PUT(out, 'u');
            PUT(out, '0');
            PUT(out, '0');
            PUT(out, hex[c >> 4]);
            PUT(out, hex[c & 15]);
        }
        i++;
    }
    PUT(out, '"');
    return 0;
}

/* -- JSON validation (json and jsonb text are written as they are) ------------------------ */

static int
is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A JSON number at p[*i]: advance *i past it; 0 when there is none. */
static int
scan_number(const unsigned char *p, size_t n, size_t *i)
{
    size_t at = *i;
    if (at < n && p[at] == '-')
        at++;
    if (at >= n || !is_digit(p[at]))
        return 0;
    if (p[at] == '0')
        at++;
    else
        while (at < n && is_digit(p[at]))
            at++;
    if (at < n && p[at] == '.') {
        at++;
        if (at >= n || !is_digit(p[at]))
            return 0;
        while (at < n && is_digit(p[at]))
            at++;
    }
    if (at < n && (p[at] == 'e' || p[at] == 'E')) {
        at++;
        if (at < n && (p[at] == '+' || p[at] == '-'))
            at++;
        if (at >= n || !is_digit(p[at]))
            return 0;
        while (at < n && is_digit(p[at]))
            at++;
    }
    *i = at;
    return 1;
}

static int
is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* A JSON string at p[*i] (the opening quote): advance past its closing quote. */
static int
scan_string(const unsigned char *p, size_t n, size_t *i)
{
    size_t at = *i + 1;
    while (at < n) {
        unsigned char c;
        at += plain_run(p + at, n - at);
        if (at >= n)
            break;
        c = p[at];
        if (c == '"') {
            *i = at + 1;
            return 1;
        }
        if (c < 0x20)
            return 0;
        if (c == '\\') {
            if (at + 1 >= n)
                return 0;
            c = p[at + 1];
            if (c == 'u') {
                if (at + 6 > n || !is_hex(p[at + 2]) || !is_hex(p[at + 3]) || !is_hex(p[at + 4]) ||
                    !is_hex(p[at + 5]))
                    return 0;
                at += 6;
            }
            else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                     c == 'r' || c == 't')
                at += 2;
            else
                return 0;
        }
        else if (c >= 0x80) {
            size_t len = utf8_length(p + at, n - at);
            if (len == 0)
                return 0;
            at += len;
        }
        else
            at++;
    }
    return 0;
}

static int
scan_word(const unsigned char *p, size_t n, size_t *i, const char *word)
{
    size_t len = strlen(word);
    if (n - *i < len || memcmp(p + *i, word, len) != 0)
        return 0;
    *i += len;
    return 1;
}

enum { J_VALUE, J_VALUE_OR_END, J_KEY_OR_END, J_KEY, J_COLON, J_AFTER };

/* Whether p[0..n) is one JSON value (RFC 8259, whitespace around it allowed). */
static int
valid_json(const unsigned char *p, size_t n)
{
    unsigned char small[256], *stack = small; /* 1: in an object, 0: in an array */
    size_t depth = 0, cap = sizeof(small), i = 0;
    int state = J_VALUE, ok = 0;
    for (;;) {
        unsigned char c;
        while (i < n && is_ws(p[i]))
            i++;
        if (i == n) {
            ok = state == J_AFTER && depth == 0;
            break;
        }
        c = p[i];
        if (state == J_VALUE_OR_END && c == ']') {
            depth--;
            i++;
            state = J_AFTER;
            continue;
        }
        if (state == J_KEY_OR_END && c == '}') {
            depth--;
            i++;
            state = J_AFTER;
            continue;
        }
        if (state == J_VALUE || state == J_VALUE_OR_END) {
            if (c == '{' || c == '[') {
                if (depth == cap) {
                    unsigned char *grown = malloc(cap * 2);
                    if (grown == NULL)
                        break;
                    memcpy(grown, stack, cap);
                    if (stack != small)
                        free(stack);
                    stack = grown;
                    cap *= 2;
                }
                stack[depth++] = c == '{';
                i++;
                state = c == '{' ? J_KEY_OR_END : J_VALUE_OR_END;
                continue;
            }
            if (c == '"' ? scan_string(p, n, &i)
                         : c == 't' ? scan_word(p, n, &i, "true")
                         : c == 'f' ? scan_word(p, n, &i, "false")
                         : c == 'n' ? scan_word(p, n, &i, "null")
                         : scan_number(p, n, &i)) {
                state = J_AFTER;
                continue;
            }
            break;
        }
        if (state == J_KEY_OR_END || state == J_KEY) {
            if (c != '"' || !scan_string(p, n, &i))
                break;
            state = J_COLON;
            continue;
        }
        if (state == J_COLON) {
            if (c != ':')
                break;
            i++;
            state = J_VALUE;
            continue;
        }
        /* J_AFTER */
        if (depth == 0)
            break;
        if (c == ',') {
            state = stack[depth - 1] ? J_KEY : J_VALUE;
            i++;
            continue;
        }
        if (c == (stack[depth - 1] ? '}' : ']')) {
            depth--;
            i++;
            continue;
        }
        break;
    }
    if (stack != small)
        free(stack);
    return ok;
}

/* -- dates and times (datetime.c, timestamp.c, date.c) ------------------------------------ */

/* datetime.c j2date: Julian day to the proleptic Gregorian calendar (year 0 is 1 BC). */
static void
j2date(int jd, int *year, int *month, int *day)
{
    unsigned int julian, quad, extra;
    int y;
    julian = (unsigned int)jd;
    julian += 32044;
    quad = julian / 146097;
    extra = (julian - quad * 146097) * 4 + 3;
    julian += 60 + quad * 3 + extra / 146097;
    quad = julian / 1461;
    julian -= quad * 1461;
    y = (int)(julian * 4 / 1461);
    julian = ((y != 0) ? ((julian + 305) % 365) : ((julian + 306) % 366)) + 123;
    y += (int)(quad * 4);
    *year = y - 4800;
    quad = julian * 2141 / 65536;
    *day = (int)(julian - 7834 * quad / 256);
    *month = (int)((quad + 10) % 12 + 1);
}

/* EncodeDateOnly (ISO/XSD): YYYY-MM-DD; BC years as their positive number ("BC" comes last). */
static void
put_ymd(pgd_buf *out, int year, int month, int day)
{
    put_zeropad(out, (uint64_t)(year > 0 ? year : -(year - 1)), 4);
    PUT(out, '-');
    put_zeropad(out, (uint64_t)month, 2);
    PUT(out, '-');
    put_zeropad(out, (uint64_t)day, 2);
}

/* AppendSeconds: seconds (two digits when fill), then the fraction without trailing zeros. */
static void
put_seconds(pgd_buf *out, int64_t sec, int64_t fsec, int fill)
{
    uint64_t s = (uint64_t)(sec < 0 ? -sec : sec), f = (uint64_t)(fsec < 0 ? -fsec : fsec);
    if (fill)
        put_zeropad(out, s, 2);
    else
        put_u64(out, s);
    if (f != 0) {
        char digits[6];
        int len = 6, k;
        for (k = 5; k >= 0; k--) {
            digits[k] = (char)('0' + f % 10);
            f /= 10;
        }
        while (digits[len - 1] == '0')
            len--;
        PUT(out, '.');
        put_mem(out, digits, (size_t)len);
    }
}

static void
put_hms(pgd_buf *out, int64_t t)
{
    int64_t hour = t / USECS_PER_HOUR, min, sec;
    t -= hour * USECS_PER_HOUR;
    min = t / USECS_PER_MINUTE;
    t -= min * USECS_PER_MINUTE;
    sec = t / USECS_PER_SEC;
    put_zeropad(out, (uint64_t)hour, 2);
    PUT(out, ':');
    put_zeropad(out, (uint64_t)min, 2);
    PUT(out, ':');
    put_seconds(out, sec, t - sec * USECS_PER_SEC, 1);
}

/* EncodeTimezone, ISO style: +hh, +hh:mm or +hh:mm:ss; tz is seconds west of UTC. */
static void
put_zone(pgd_buf *out, int32_t tz)
{
    int sec = tz < 0 ? -tz : tz, min, hour;
    min = sec / 60;
    sec -= min * 60;
    hour = min / 60;
    min -= hour * 60;
    PUT(out, tz <= 0 ? '+' : '-');
    put_zeropad(out, (uint64_t)hour, 2);
    if (sec != 0 || min != 0) {
        PUT(out, ':');
        put_zeropad(out, (uint64_t)min, 2);
    }
    if (sec != 0) {
        PUT(out, ':');
        put_zeropad(out, (uint64_t)sec, 2);
    }
}

static int
put_timestamp(pgd_buf *out, int64_t ts, int utc, const char **reason)
{
    int64_t date, t;
    int year, month, day;
    if (ts == INT64_MIN || ts == INT64_MAX) {
        const char *s = ts == INT64_MAX ? "\"infinity\"" : "\"-infinity\"";
        put_mem(out, s, strlen(s));
        return 0;
    }
    if (ts < MIN_TIMESTAMP || ts >= END_TIMESTAMP) {
        *reason = "a timestamp out of range";
        return -1;
    }
    date = ts / USECS_PER_DAY;
    t = ts - date * USECS_PER_DAY;
    if (t < 0) {
        t += USECS_PER_DAY;
        date -= 1;
    }
    j2date((int)(date + POSTGRES_EPOCH_JDATE), &year, &month, &day);
    PUT(out, '"');
    put_ymd(out, year, month, day);
    PUT(out, 'T');
    put_hms(out, t);
    if (utc)
        PUT(out, 'Z');
    if (year <= 0)
        put_mem(out, " BC", 3);
    PUT(out, '"');
    return 0;
}

static void
put_iso_part(pgd_buf *out, int64_t value, char unit)
{
    if (value == 0)
        return;
    put_i64(out, value);
    PUT(out, unit);
}

/* EncodeInterval, IntervalStyle iso_8601 (interval2itm for the fields). */
static void
put_interval(pgd_buf *out, int64_t time, int32_t day, int32_t month)
{
    int64_t year = month / 12, mon = month % 12, hour, min, sec, fsec;
    if (month == INT32_MAX && day == INT32_MAX && time == INT64_MAX) {
        put_mem(out, "\"infinity\"", 10); /* PostgreSQL 17's infinite intervals */
        return;
    }
    if (month == INT32_MIN && day == INT32_MIN && time == INT64_MIN) {
        put_mem(out, "\"-infinity\"", 11);
        return;
    }
    hour = time / USECS_PER_HOUR;
    time -= hour * USECS_PER_HOUR;
    min = time / USECS_PER_MINUTE;
    time -= min * USECS_PER_MINUTE;
    sec = time / USECS_PER_SEC;
    fsec = time - sec * USECS_PER_SEC;
    PUT(out, '"');
    if (year == 0 && mon == 0 && day == 0 && hour == 0 && min == 0 && sec == 0 && fsec == 0) {
        put_mem(out, "PT0S\"", 5);
        return;
    }
    PUT(out, 'P');
    put_iso_part(out, year, 'Y');
    put_iso_part(out, mon, 'M');
    put_iso_part(out, day, 'D');
    if (hour != 0 || min != 0 || sec != 0 || fsec != 0)
        PUT(out, 'T');
    put_iso_part(out, hour, 'H');
    put_iso_part(out, min, 'M');
    if (sec != 0 || fsec != 0) {
        if (sec < 0 || fsec < 0)
            PUT(out, '-');
        put_seconds(out, sec, fsec, 0);
        PUT(out, 'S');
    }
    PUT(out, '"');
}

/* -- numeric (numeric.c numeric_send, get_str_from_var) ----------------------------------- */

static int
put_numeric(pgd_buf *out, const unsigned char *p, size_t n, const char **reason)
{
    int16_t ndigits, weight, dscale;
    uint16_t sign;
    int d, i;
    size_t room;
    if (n < 8)
        goto bad;
    ndigits = (int16_t)be16(p);
    weight = (int16_t)be16(p + 2);
    sign = be16(p + 4);
    dscale = (int16_t)be16(p + 6);
    if (ndigits < 0 || n != 8 + 2 * (size_t)ndigits || dscale < 0 || dscale > 0x3FFF)
        goto bad;
    if (sign == NUMERIC_NAN || sign == NUMERIC_PINF || sign == NUMERIC_NINF) {
        const char *s = sign == NUMERIC_NAN ? "\"NaN\"" : sign == NUMERIC_PINF ? "\"Infinity\""
                                                                               : "\"-Infinity\"";
        if (ndigits != 0)
            goto bad;
        put_mem(out, s, strlen(s));
        return 0;
    }
    if (sign != NUMERIC_POS && sign != NUMERIC_NEG)
        goto bad;
    for (i = 0; i < ndigits; i++)
        if (be16(p + 8 + 2 * i) > 9999)
            goto bad;
    room = (size_t)(weight >= 0 ? weight + 1 : 1) * 4 + (size_t)dscale + 8;
    if (pgd_reserve(out, room) < 0) {
        *reason = "out of memory";
        return -1;
    }
    if (sign == NUMERIC_NEG)
        PUT(out, '-');
    if (weight < 0) {
        d = weight + 1;
        PUT(out, '0');
    }
    else {
        for (d = 0; d <= weight; d++) {
            int dig = d < ndigits ? be16(p + 8 + 2 * d) : 0, d1, putit = d > 0;
            d1 = dig / 1000;
            dig -= d1 * 1000;
            putit |= d1 > 0;
            if (putit)
                PUT(out, '0' + d1);
            d1 = dig / 100;
            dig -= d1 * 100;
            putit |= d1 > 0;
            if (putit)
                PUT(out, '0' + d1);
            d1 = dig / 10;
            dig -= d1 * 10;
            putit |= d1 > 0;
            if (putit)
                PUT(out, '0' + d1);
            PUT(out, '0' + dig);
        }
    }
    if (dscale > 0) {
        size_t end = out->len + 1 + (size_t)dscale;
        PUT(out, '.');
        for (i = 0; i < dscale; d++, i += 4) {
            int dig = d >= 0 && d < ndigits ? be16(p + 8 + 2 * d) : 0;
            PUT(out, '0' + dig / 1000);
            PUT(out, '0' + dig / 100 % 10);
            PUT(out, '0' + dig / 10 % 10);
            PUT(out, '0' + dig % 10);
        }
        out->len = end;
    }
    return 0;
bad:
    *reason = "a malformed numeric";
    return -1;
}

/* -- fields ------------------------------------------------------------------------------- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
put_base64(pgd_buf *out, const unsigned char *p, size_t n)
{
    size_t i = 0;
    char *w;
    PUT(out, '"');
    w = out->data + out->len;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) | p[i + 2];
        *w++ = b64chars[v >> 18];
        *w++ = b64chars[(v >> 12) & 63];
        *w++ = b64chars[(v >> 6) & 63];
        *w++ = b64chars[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        *w++ = b64chars[v >> 18];
        *w++ = b64chars[(v >> 12) & 63];
        *w++ = '=';
        *w++ = '=';
    }
    else if (n - i == 2) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8);
        *w++ = b64chars[v >> 18];
        *w++ = b64chars[(v >> 12) & 63];
        *w++ = b64chars[(v >> 6) & 63];
        *w++ = '=';
    }
    out->len = (size_t)(w - out->data);
    PUT(out, '"');
}

/* The element type an array of code must hold (pg_type.oid), or 0 when any text type will do. */
static int
element_ok(int code, uint32_t oid)
{
    switch (code) {
    case PGD_TEXT: return oid == 25 || oid == 1043 || oid == 1042 || oid == 19;
    case PGD_FLOAT_TEXT: return oid == 25;
    case PGD_BOOL: return oid == 16;
    case PGD_INT2: return oid == 21;
    case PGD_INT4: return oid == 23;
    case PGD_INT8: return oid == 20;
    case PGD_OID: return oid == 26;
    case PGD_NUMERIC: return oid == 1700;
    case PGD_JSONB: return oid == 3802;
    case PGD_JSON: return oid == 114;
    case PGD_BYTEA: return oid == 17;
    case PGD_UUID: return oid == 2950;
    case PGD_DATE: return oid == 1082;
    case PGD_TIME: return oid == 1083;
    case PGD_TIMETZ: return oid == 1266;
    case PGD_TIMESTAMP: return oid == 1114;
    case PGD_TIMESTAMPTZ: return oid == 1184;
    case PGD_INTERVAL: return oid == 1186;
    case PGD_FLOAT4: return oid == 700;
    case PGD_FLOAT8: return oid == 701;
    default: return 0;
    }
}

static int put_value(pgd_buf *out, int code, const unsigned char *p, size_t n, const char **reason);

#define MAXDIM 6

struct array {
    int ndim, code;
    int32_t dims[MAXDIM];
    const unsigned char *at, *end;
};

static int
put_dim(pgd_buf *out, struct array *a, int d, const char **reason)
{
    int32_t i;
    if (pgd_reserve(out, 1) < 0)
        goto oom;
    PUT(out, '[');
    for (i = 0; i < a->dims[d]; i++) {
        if (pgd_reserve(out, 1) < 0)
            goto oom;
        if (i > 0)
            PUT(out, ',');
        if (d + 1 < a->ndim) {
            if (put_dim(out, a, d + 1, reason) < 0)
                return -1;
        }
        else {
            int32_t len;
            if (a->end - a->at < 4)
                goto bad;
            len = (int32_t)be32(a->at);
            a->at += 4;
            if (len == -1) {
                if (pgd_reserve(out, 4) < 0)
                    goto oom;
                put_mem(out, "null", 4);
                continue;
            }
            if (len < 0 || len > a->end - a->at)
                goto bad;
            if (put_value(out, a->code, a->at, (size_t)len, reason) < 0)
                return -1;
            a->at += len;
        }
    }
    if (pgd_reserve(out, 1) < 0)
        goto oom;
    PUT(out, ']');
    return 0;
bad:
    *reason = "a malformed array";
    return -1;
oom:
    *reason = "out of memory";
    return -1;
}

/* arrayfuncs.c array_send; written as json.c array_to_json: nested arrays, lower bounds
 * dropped, [] when empty. */
static int
put_array(pgd_buf *out, int code, const unsigned char *p, size_t n, const char **reason)
{
    struct array a;
    int32_t flags;
    uint64_t items = 1;
    int d;
    if (n < 12)
        goto bad;
    a.ndim = (int32_t)be32(p);
    flags = (int32_t)be32(p + 4);
    if (a.ndim < 0 || a.ndim > MAXDIM || (flags != 0 && flags != 1) ||
        !element_ok(code, be32(p + 8)) || n < 12 + 8 * (size_t)a.ndim)
        goto bad;
    for (d = 0; d < a.ndim; d++) {
        a.dims[d] = (int32_t)be32(p + 12 + 8 * d);
        if (a.dims[d] < 0)
            goto bad;
        items *= (uint64_t)a.dims[d];
        if (items > n) /* each element takes at least its 4-byte length */
            goto bad;
    }
    a.code = code;
    a.at = p + 12 + 8 * a.ndim;
    a.end = p + n;
    if (a.ndim == 0 || items == 0) {
        if (a.at != a.end)
            goto bad;
        if (pgd_reserve(out, 2) < 0) {
            *reason = "out of memory";
            return -1;
        }
        put_mem(out, "[]", 2);
        return 0;
    }
    if (put_dim(out, &a, 0, reason) < 0)
        return -1;
    if (a.at != a.end)
        goto bad;
    return 0;
bad:
    *reason = "a malformed array";
    return -1;
}

static int
put_value(pgd_buf *out, int code, const unsigned char *p, size_t n, const char **reason)
{
    if (code >= PGD_ARRAY)
        return put_array(out, code - PGD_ARRAY, p, n, reason);
    if (code == PGD_TEXT)
        return put_string(out, p, n, reason);
    if (code == PGD_NUMERIC)
        return put_numeric(out, p, n, reason);
    if (code == PGD_FLOAT_TEXT) {
        size_t i = 0;
        if (scan_number(p, n, &i) && i == n) {
            if (pgd_reserve(out, n) < 0)
                goto oom;
            put_mem(out, p, n);
            return 0;
        }
        /* NaN, Infinity, -Infinity: strings (json.c, IsValidJsonNumber) */
        return put_string(out, p, n, reason);
    }
    if (code == PGD_JSON || code == PGD_JSONB) {
        size_t start = 0, end = n, i;
        if (code == PGD_JSONB) {
            if (n < 1 || p[0] != 1) {
                *reason = "a jsonb value of an unknown version";
                return -1;
            }
            start = 1;
        }
        if (!valid_json(p + start, n - start)) {
            *reason = "a json value that is not JSON";
            return -1;
        }
        if (pgd_reserve(out, n) < 0)
            goto oom;
        if (code == PGD_JSONB) {
            put_mem(out, p + 1, n - 1);
            return 0;
        }
        /* btrim(translate(j::text, E'\t\n\r', '   ')): tabs and line breaks can only be
         * whitespace between tokens (json input refuses them raw inside strings). */
        while (start < end && is_ws(p[start]))
            start++;
        while (end > start && is_ws(p[end - 1]))
            end--;
        for (i = start; i < end; i++)
            PUT(out, is_ws(p[i]) ? ' ' : p[i]);
        return 0;
    }
    if (code == PGD_BYTEA) {
        if (n > (SIZE_MAX - 8) / 4 * 3 || pgd_reserve(out, (n + 2) / 3 * 4 + 2) < 0)
            goto oom;
        put_base64(out, p, n);
        return 0;
    }
    /* Fixed sizes from here: one reservation covers the longest of them (an interval). */
    if (pgd_reserve(out, 64) < 0)
        goto oom;
    switch (code) {
    case PGD_BOOL:
        if (n != 1 || p[0] > 1)
            goto bad;
        if (p[0])
            put_mem(out, "true", 4);
        else
            put_mem(out, "false", 5);
        return 0;
    case PGD_INT2:
        if (n != 2)
            goto bad;
        put_i64(out, (int16_t)be16(p));
        return 0;
    case PGD_INT4:
        if (n != 4)
            goto bad;
        put_i64(out, (int32_t)be32(p));
        return 0;
    case PGD_INT8:
        if (n != 8)
            goto bad;
        put_i64(out, (int64_t)be64(p));
        return 0;
    case PGD_OID:
        if (n != 4)
            goto bad;
        put_u64(out, be32(p));
        return 0;
    case PGD_UUID: {
        static const char hex[] = "0123456789abcdef";
        int i;
        if (n != 16)
            goto bad;
        PUT(out, '"');
        for (i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                PUT(out, '-');
            PUT(out, hex[p[i] >> 4]);
            PUT(out, hex[p[i] & 15]);
        }
        PUT(out, '"');
        return 0;
    }
    case PGD_DATE: {
        int32_t date;
        int year, month, day;
        if (n != 4)
            goto bad;
        date = (int32_t)be32(p);
        if (date == INT32_MIN || date == INT32_MAX) {
            const char *s = date == INT32_MAX ? "\"infinity\"" : "\"-infinity\"";
            put_mem(out, s, strlen(s));
            return 0;
        }
        if (date < -POSTGRES_EPOCH_JDATE || date >= DATE_END_JULIAN - POSTGRES_EPOCH_JDATE)
            goto bad;
        j2date(date + POSTGRES_EPOCH_JDATE, &year, &month, &day);
        PUT(out, '"');
        put_ymd(out, year, month, day);
        if (year <= 0)
            put_mem(out, " BC", 3);
        PUT(out, '"');
        return 0;
    }
    case PGD_TIME:
    case PGD_TIMETZ: {
        int64_t t;
        int32_t zone = 0;
        if (n != (code == PGD_TIME ? 8u : 12u))
            goto bad;
        t = (int64_t)be64(p);
        if (t < 0 || t > USECS_PER_DAY)
            goto bad;
        if (code == PGD_TIMETZ) {
            zone = (int32_t)be32(p + 8);
            if (zone <= -TZDISP_LIMIT || zone >= TZDISP_LIMIT)
                goto bad;
        }
        PUT(out, '"');
        put_hms(out, t);
        if (code == PGD_TIMETZ)
            put_zone(out, zone);
        PUT(out, '"');
        return 0;
    }
    case PGD_TIMESTAMP:
    case PGD_TIMESTAMPTZ:
        if (n != 8)
            goto bad;
        return put_timestamp(out, (int64_t)be64(p), code == PGD_TIMESTAMPTZ, reason);
    case PGD_INTERVAL:
        if (n != 16)
            goto bad;
        put_interval(out, (int64_t)be64(p), (int32_t)be32(p + 8), (int32_t)be32(p + 12));
        return 0;
    case PGD_FLOAT4:
    case PGD_FLOAT8: {
        /* float4send/float8send: the IEEE 754 bits, big-endian. Numbers as the server's
         * float4out/float8out write them; NaN and the infinities as strings (json.c). */
        char text[PGF_MAX_LEN];
        int len;
        if (n != (code == PGD_FLOAT4 ? 4u : 8u))
            goto bad;
        len = code == PGD_FLOAT4 ? pgf_float4(be32(p), text) : pgf_float8(be64(p), text);
        if (text[len - 1] == 'N' || text[len - 1] == 'y') { /* NaN, [-]Infinity: no number ends so */
            PUT(out, '"');
            put_mem(out, text, (size_t)len);
            PUT(out, '"');
        }
        else
            put_mem(out, text, (size_t)len);
        return 0;
    }
    default:
        *reason = "a column of an unknown kind";
        return -1;
    }
bad:
    *reason = "a value of the wrong size or out of its type's range";
    return -1;
oom:
    *reason = "out of memory";
    return -1;
}

int
pgd_message(const pgd_program *program, const unsigned char *message, size_t n, pgd_buf *out,
            int *state, const char **reason)
{
    size_t at = 0;
    int found = 0, f, o;
    while (at < n) {
        int16_t count;
        if (*state & PGD_ENDED) {
            *reason = "data after the end of the COPY";
            return PGD_MSG_BAD;
        }
        if (!(*state & PGD_STARTED)) {
            if (n - at < 19 || memcmp(message + at, signature, sizeof(signature)) != 0) {
                *reason = "a COPY without its binary header";
                return PGD_MSG_BAD;
            }
            uint32_t flags = be32(message + at + 11), extension = be32(message + at + 15);
            if (flags != 0 || extension > n - at - 19) {
                *reason = "a COPY header with flags or a truncated extension";
                return PGD_MSG_BAD;
            }
            at += 19 + extension;
            *state |= PGD_STARTED;
            continue;
        }
        if (n - at < 2) {
            *reason = "a truncated row";
            return PGD_MSG_BAD;
        }
        count = (int16_t)be16(message + at);
        at += 2;
        if (count == -1) {
            *state |= PGD_ENDED;
            continue;
        }
        if (found) {
            *reason = "two rows in one message";
            return PGD_MSG_BAD;
        }
        if (count != program->nfields) {
            *reason = "a row with another number of fields than asked for";
            return PGD_MSG_BAD;
        }
        for (f = 0; f < count; f++) {
            int32_t len;
            if (n - at < 4) {
                *reason = "a truncated row";
                return PGD_MSG_BAD;
            }
            len = (int32_t)be32(message + at);
            at += 4;
            if (len < -1 || (len >= 0 && (size_t)len > n - at)) {
                *reason = "a truncated row";
                return PGD_MSG_BAD;
            }
            program->field_data[f] = message + at;
            program->field_len[f] = len;
            if (len > 0)
                at += (size_t)len;
        }
        found = 1;
    }
    if (!found)
        return PGD_MSG_NONE;
    for (o = 0; o < program->nops; o++) {
        const pgd_op *op = &program->ops[o];
        if (pgd_reserve(out, op->literal_len + 4) < 0) {
            *reason = "out of memory";
            return PGD_MSG_BAD;
        }
        put_mem(out, op->literal, op->literal_len);
        if (op->field < 0)
            continue;
        f = op->field;
        if (program->field_len[f] < 0) {
            if (op->null_mode == PGD_NULL_JSON)
                put_mem(out, "null", 4);
            continue;
        }
        if (put_value(out, program->codes[f], program->field_data[f], (size_t)program->field_len[f],
                      reason) < 0)
            return PGD_MSG_BAD;
    }
    return PGD_MSG_ROW;
}
