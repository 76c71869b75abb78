/*
 * Binary COPY tuples to the snapshot format's JSON (sqlsnap/_pgdecode.c). Plain C, no Python
 * API: it runs without the GIL.
 */
#ifndef SQLSNAP_PGDECODE_H
#define SQLSNAP_PGDECODE_H

#include <stddef.h>
#include <stdint.h>

/* How one field of the tuple is written. The numbers are part of the interface with
 * sources/postgresql.py (_CODES there). An array is PGD_ARRAY + its element's code. */
enum {
    PGD_TEXT = 0,        /* text, varchar, bpchar, name, citext, enum, and any col::text */
    PGD_BOOL = 1,
    PGD_INT2 = 2,
    PGD_INT4 = 3,
    PGD_INT8 = 4,
    PGD_OID = 5,
    PGD_NUMERIC = 6,
    PGD_FLOAT_TEXT = 7,  /* a float's text (col::text; before PostgreSQL 12): a number, or "NaN"... */
    PGD_JSON = 8,        /* json: its text on one line (tabs and line breaks to spaces, trimmed) */
    PGD_JSONB = 9,
    PGD_BYTEA = 10,
    PGD_UUID = 11,
    PGD_DATE = 12,
    PGD_TIME = 13,
    PGD_TIMETZ = 14,
    PGD_TIMESTAMP = 15,
    PGD_TIMESTAMPTZ = 16,
    PGD_INTERVAL = 17,
    PGD_FLOAT4 = 18,     /* float4 and float8 as stored, written as the server's text (_pgfloat.c) */
    PGD_FLOAT8 = 19,
    PGD_SCALARS = 20,
    PGD_ARRAY = 32,
};

/* How a NULL is written by an op: JSON null, or nothing at all (a value cut out of the row
 * for Python, where an empty field means NULL). */
enum { PGD_NULL_JSON = 0, PGD_NULL_EMPTY = 1 };

typedef struct {
    const char *literal; /* written first */
    size_t literal_len;
    int field;           /* then this field's JSON, or nothing when < 0 */
    int null_mode;
} pgd_op;

typedef struct {
    int nfields;
    const unsigned char *codes; /* nfields */
    int nops;
    const pgd_op *ops;
    /* Scratch, nfields of each, owned by the caller. */
    const unsigned char **field_data;
    int32_t *field_len;
} pgd_program;

typedef struct pgd_buf pgd_buf;
struct pgd_buf {
    char *data;
    size_t len, cap;
    /* NULL: data is malloc'd and grows by realloc. Else called to make room for want bytes
     * (0 on success, -1 when out of memory), with owner its own. */
    int (*grow)(pgd_buf *out, size_t want);
    void *owner;
};

/* What one CopyData message held. */
enum { PGD_MSG_BAD = -1, PGD_MSG_NONE = 0, PGD_MSG_ROW = 1 };

/* Where a stream is: bits of the int that pgd_message keeps (0 before the first message). */
#define PGD_STARTED 1 /* the file header was read */
#define PGD_ENDED 2   /* the trailer was read: nothing may follow */

/* Decode one CopyData message of a binary COPY: the file header (which rides with the first
 * row), one tuple, and/or the trailer. Appends the tuple's JSON line to out. Returns
 * PGD_MSG_ROW, PGD_MSG_NONE (header or trailer only) or PGD_MSG_BAD with *reason set; out
 * may then hold part of a row, and must be thrown away. *state says where the stream is. */
int pgd_message(const pgd_program *program, const unsigned char *message, size_t n, pgd_buf *out,
                int *state, const char **reason);

/* Fill the decoder's tables: once, before any other call (the module's init). */
void pgd_init(void);

/* Grow out to hold extra more bytes; 0 on success, -1 when out of memory. */
int pgd_reserve(pgd_buf *out, size_t extra);

#endif
