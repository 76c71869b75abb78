/*
 * float4 and float8 as PostgreSQL 12+ writes them (sqlsnap/_pgfloat.c). Plain C, no Python API.
 */
#ifndef SQLSNAP_PGFLOAT_H
#define SQLSNAP_PGFLOAT_H

#include <stdint.h>

/* The longest text written: "-1.2345678901234567e-308". */
#define PGF_MAX_LEN 24

/* Write the text of the float8 (float4) whose IEEE 754 bits are given, as float8out
 * (float4out) writes it with extra_float_digits > 0, into out (PGF_MAX_LEN bytes, not
 * NUL-terminated); return its length. */
int pgf_float8(uint64_t bits, char *out);
int pgf_float4(uint32_t bits, char *out);

#endif
