/*
 * sqlsnap._pgcopy: read a PostgreSQL COPY TO STDOUT stream a chunk at a time, in C, without
 * the GIL.
 *
 * The Python loop over psycopg's PGconn.get_copy_data() costs about 1 us per row (a call, a
 * tuple and a bytes object for every row), and it holds the GIL meanwhile, so the reader and
 * the writer of an export take turns (the export's user time went from 3.5 to 2.4 s for
 * 1 GB with this reader: bench/README.md).
 * Here the same libpq calls (PQgetCopyData in async mode, poll() on the socket,
 * PQconsumeInput) fill one bytes object of about a chunk, and Python sees one call per chunk.
 *
 * libpq is not linked: psycopg has already loaded one (psycopg-binary bundles its own, the
 * pure-Python psycopg loads the system's), and its PGconn must be driven by that same library.
 * bind() finds the one libpq loaded in this process and takes its functions from it; with
 * none, or more than one, it fails and sqlsnap keeps its Python loop.
 *
 * read_binary() reads a binary COPY of the table's own columns and writes each tuple as the
 * snapshot's JSON line (sqlsnap/_pgdecode.c) as it goes: the server then does no JSON work at
 * all (issue 12: less than half the server CPU of row_to_json). What to write is a "program"
 * (program()), made once per read while the GIL is held: the tuple's field kinds, and a list
 * of ops, each a literal then a field's JSON.
 *
 * This module is optional: when it cannot be built (no C compiler), sqlsnap works the same,
 * only slower, and the server builds the JSON (sources/postgresql.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef __linux__
#error "sqlsnap._pgcopy finds libpq with dl_iterate_phdr, which this build targets on Linux only"
#endif

/* dl_iterate_phdr needs _GNU_SOURCE, which Python.h (pyconfig.h) defines on Linux. */
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <poll.h>
#include <string.h>

#include "_pgdecode.h"

typedef struct pg_conn PGconn;

static int (*pq_get_copy_data)(PGconn *, char **, int);
static void (*pq_freemem)(void *);
static int (*pq_consume_input)(PGconn *);
static int (*pq_socket)(const PGconn *);
static char libpq_path[4096];

/* Results of read_chunk(), as its first item. */
#define COPY_MORE 0  /* the chunk is full, or the wait timed out: call again */
#define COPY_DONE 1  /* the COPY has ended: fetch its result with PQgetResult */
#define COPY_ERROR 2 /* libpq reported an error: PQgetResult / PQerrorMessage say which */
#define COPY_BAD 3   /* binary COPY data that is not one field a row: cancel the COPY */

/* Binary COPY (FORMAT binary) of one json column: the server sends the column's text, like
 * CSV, without scanning every byte for quotes to escape (about 10% less server CPU). Each
 * CopyData message holds one row: int16 1 (fields), int32 n, n bytes. The file header
 * (signature, int32 flags, int32 extension length, extension) rides with the first message,
 * and the trailer (int16 -1) with the last. */
static const char signature[11] = "PGCOPY\n\377\r\n\0";

static uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Find the field in one binary CopyData message: 1 and *start, *length for a row, 0 for a
 * message without one (header or trailer only), -1 if the message is not what was asked. */
static int
binary_field(const char *message, Py_ssize_t n, Py_ssize_t *start, Py_ssize_t *length)
{
    const unsigned char *p = (const unsigned char *)message;
    Py_ssize_t at = 0;
    int found = 0;
    while (at < n) {
        if (n - at >= 19 && memcmp(p + at, signature, sizeof(signature)) == 0) {
            uint32_t extension = be32(p + at + 15);
            if (extension > (uint32_t)(n - at - 19))
                return -1;
            at += 19 + (Py_ssize_t)extension;
        }
        else if (n - at >= 2 && p[at] == 0xff && p[at + 1] == 0xff) {
            at += 2; /* trailer */
        }
        else if (!found && n - at >= 6 && p[at] == 0 && p[at + 1] == 1) {
            uint32_t size = be32(p + at + 2);
            if (size > (uint32_t)(n - at - 6)) /* also a NULL (-1): never from row_to_json */
                return -1;
            *start = at + 6;
            *length = (Py_ssize_t)size;
            at += 6 + (Py_ssize_t)size;
            found = 1;
        }
        else
            return -1;
    }
    return found;
}

/* Nothing buffered: wait up to timeout_ms for the server, then let libpq read what arrived.
 * 1: read (call PQgetCopyData again); 0: timed out or interrupted (return to Python);
 * -1: the connection failed. Called without the GIL. */
static int
wait_for_input(PGconn *conn, int sock, int timeout_ms)
{
    struct pollfd pfd = {.fd = sock, .events = POLLIN};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready == 0 || (ready < 0 && errno == EINTR))
        return 0;
    if (ready < 0 || !pq_consume_input(conn))
        return -1;
    return 1;
}

struct found {
    int count;
    char path[sizeof(libpq_path)];
};

static int
find_libpq(struct dl_phdr_info *info, size_t size, void *data)
{
    struct found *found = data;
    const char *name = info->dlpi_name;
    const char *base;
    (void)size;
    if (name == NULL || name[0] == '\0')
        return 0;
    base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strncmp(base, "libpq", 5) == 0 && (base[5] == '.' || base[5] == '-')) {
        found->count++;
        snprintf(found->path, sizeof(found->path), "%s", name);
    }
    return 0;
}

static PyObject *
bind(PyObject *self, PyObject *noargs)
{
    struct found found = {0};
    void *handle;
    (void)self;
    (void)noargs;
    if (pq_get_copy_data != NULL)
        return PyUnicode_DecodeFSDefault(libpq_path);
    dl_iterate_phdr(find_libpq, &found);
    if (found.count != 1) {
        PyErr_Format(PyExc_OSError, "expected one libpq loaded in this process, found %d",
                     found.count);
        return NULL;
    }
    /* RTLD_NOLOAD: only a reference to the library psycopg already loaded, never another. */
    handle = dlopen(found.path, RTLD_NOW | RTLD_NOLOAD);
    if (handle == NULL) {
        PyErr_Format(PyExc_OSError, "cannot open %s: %s", found.path, dlerror());
        return NULL;
    }
    pq_freemem = (void (*)(void *))dlsym(handle, "PQfreemem");
    pq_consume_input = (int (*)(PGconn *))dlsym(handle, "PQconsumeInput");
    pq_socket = (int (*)(const PGconn *))dlsym(handle, "PQsocket");
    pq_get_copy_data = (int (*)(PGconn *, char **, int))dlsym(handle, "PQgetCopyData");
    if (!pq_freemem || !pq_consume_input || !pq_socket || !pq_get_copy_data) {
        pq_get_copy_data = NULL;
        PyErr_Format(PyExc_OSError, "%s lacks the COPY functions", found.path);
        return NULL;
    }
    snprintf(libpq_path, sizeof(libpq_path), "%s", found.path);
    return PyUnicode_DecodeFSDefault(libpq_path);
}

static PyObject *
read_chunk(PyObject *self, PyObject *args)
{
    unsigned long long address;
    Py_ssize_t target, size = 0, capacity, rows = 0;
    int timeout_ms, binary, status = COPY_MORE, sock;
    PGconn *conn;
    PyObject *chunk;
    char *row;
    (void)self;

    if (!PyArg_ParseTuple(args, "Knip:read_chunk", &address, &target, &timeout_ms, &binary))
        return NULL;
    if (pq_get_copy_data == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call bind() first");
        return NULL;
    }
    if (target < 1) {
        PyErr_SetString(PyExc_ValueError, "target must be positive");
        return NULL;
    }
    conn = (PGconn *)(uintptr_t)address;
    /* Room for the target and the row that crosses it; a longer row grows the buffer. */
    capacity = target + 64 * 1024;
    chunk = PyBytes_FromStringAndSize(NULL, capacity);
    if (chunk == NULL)
        return NULL;

    Py_BEGIN_ALLOW_THREADS
    sock = pq_socket(conn);
    for (;;) {
        int n = pq_get_copy_data(conn, &row, 1);
        if (n > 0) {
            const char *line = row;
            Py_ssize_t length = n;
            if (binary) {
                Py_ssize_t start = 0;
                int field = binary_field(row, n, &start, &length);
                if (field <= 0) {
                    pq_freemem(row);
                    if (field == 0)
                        continue;
                    status = COPY_BAD;
                    break;
                }
                line = row + start;
            }
            /* A line: the row, and the newline that CSV sends and binary does not. */
            if (size + length + 1 > capacity) {
                int resized;
                Py_ssize_t wanted = capacity * 2 > size + length + 1 ? capacity * 2 : size + length + 1;
                Py_BLOCK_THREADS
                resized = _PyBytes_Resize(&chunk, wanted);
                Py_UNBLOCK_THREADS
                if (resized < 0) { /* chunk is NULL and MemoryError is set */
                    pq_freemem(row);
                    status = -1;
                    break;
                }
                capacity = wanted;
            }
            memcpy(PyBytes_AS_STRING(chunk) + size, line, (size_t)length);
            size += length;
            if (binary)
                PyBytes_AS_STRING(chunk)[size++] = '\n';
            pq_freemem(row);
            rows++;
            if (size >= target)
                break;
        }
        else if (n == 0) {
            int ready = wait_for_input(conn, sock, timeout_ms);
            if (ready == 0)
                break; /* back to Python, which looks at cancellation and calls again */
            if (ready < 0) {
                status = COPY_ERROR;
                break;
            }
        }
        else {
            status = n == -1 ? COPY_DONE : COPY_ERROR;
            break;
        }
    }
    Py_END_ALLOW_THREADS

    if (status < 0)
        return NULL;
    if (_PyBytes_Resize(&chunk, size) < 0)
        return NULL;
    return Py_BuildValue("(iNn)", status, chunk, rows);
}


/* -- binary tuples to JSON (read_binary, decode) ------------------------------------------- */

typedef struct {
    pgd_program program;
    unsigned char *codes;
    pgd_op *ops;
    char *literals;
    const unsigned char **field_data;
    int32_t *field_len;
    pgd_buf out; /* decode()'s, reused from one call to the next */
    int state; /* PGD_STARTED, PGD_ENDED */
    int mark; /* a field whose value marks a row (-1: none), counted in marked (take_marked) */
    Py_ssize_t marked;
} program_t;

static const char program_name[] = "sqlsnap._pgcopy.program";

static void
program_free(PyObject *capsule)
{
    program_t *p = PyCapsule_GetPointer(capsule, program_name);
    if (p == NULL)
        return;
    free(p->codes);
    free(p->ops);
    free(p->literals);
    free(p->field_data);
    free(p->field_len);
    free(p->out.data);
    free(p);
}

/* program(codes: bytes, ops: list[tuple[bytes, int, int]], mark: int = -1) -> capsule */
static PyObject *
make_program(PyObject *self, PyObject *args)
{
    Py_buffer codes;
    PyObject *ops, *capsule;
    program_t *p;
    Py_ssize_t nops, i, total = 0, at = 0, nfields;
    int mark = -1;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*O!|i:program", &codes, &PyList_Type, &ops, &mark))
        return NULL;
    nfields = codes.len;
    if (mark < -1 || mark >= nfields) {
        PyBuffer_Release(&codes);
        PyErr_SetString(PyExc_ValueError, "mark names a field that is not in the tuple");
        return NULL;
    }
    nops = PyList_GET_SIZE(ops);
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        goto oom;
    p->codes = malloc((size_t)nfields + 1);
    p->field_data = calloc((size_t)nfields + 1, sizeof(*p->field_data));
    p->field_len = calloc((size_t)nfields + 1, sizeof(*p->field_len));
    p->ops = calloc((size_t)nops + 1, sizeof(*p->ops));
    if (!p->codes || !p->field_data || !p->field_len || !p->ops)
        goto oom;
    memcpy(p->codes, codes.buf, (size_t)nfields);
    for (i = 0; i < nfields; i++) {
        int code = p->codes[i];
        if (!(code < PGD_SCALARS || (code >= PGD_ARRAY && code < PGD_ARRAY + PGD_SCALARS))) {
            PyErr_Format(PyExc_ValueError, "unknown field code %d", code);
            goto fail;
        }
    }
    for (i = 0; i < nops; i++) {
        PyObject *op = PyList_GET_ITEM(ops, i);
        if (!PyTuple_Check(op) || PyTuple_GET_SIZE(op) != 3 || !PyBytes_Check(PyTuple_GET_ITEM(op, 0))) {
            PyErr_SetString(PyExc_TypeError, "ops are (literal: bytes, field: int, null_mode: int)");
            goto fail;
        }
        total += PyBytes_GET_SIZE(PyTuple_GET_ITEM(op, 0));
    }
    p->literals = malloc((size_t)total + 1);
    if (p->literals == NULL)
        goto oom;
    for (i = 0; i < nops; i++) {
        PyObject *op = PyList_GET_ITEM(ops, i);
        PyObject *literal = PyTuple_GET_ITEM(op, 0);
        long field = PyLong_AsLong(PyTuple_GET_ITEM(op, 1));
        long mode = PyLong_AsLong(PyTuple_GET_ITEM(op, 2));
        if (PyErr_Occurred())
            goto fail;
        if (field >= nfields || field < -1 || (mode != PGD_NULL_JSON && mode != PGD_NULL_EMPTY)) {
            PyErr_SetString(PyExc_ValueError, "an op names a field that is not in the tuple");
            goto fail;
        }
        memcpy(p->literals + at, PyBytes_AS_STRING(literal), (size_t)PyBytes_GET_SIZE(literal));
        p->ops[i].literal = p->literals + at;
        p->ops[i].literal_len = (size_t)PyBytes_GET_SIZE(literal);
        p->ops[i].field = (int)field;
        p->ops[i].null_mode = (int)mode;
        at += PyBytes_GET_SIZE(literal);
    }
    p->mark = mark;
    p->program.nfields = (int)nfields;
    p->program.codes = p->codes;
    p->program.nops = (int)nops;
    p->program.ops = p->ops;
    p->program.field_data = p->field_data;
    p->program.field_len = p->field_len;
    PyBuffer_Release(&codes);
    capsule = PyCapsule_New(p, program_name, program_free);
    if (capsule == NULL) {
        free(p->codes); free(p->ops); free(p->literals); free(p->field_data); free(p->field_len);
        free(p);
    }
    return capsule;
oom:
    PyErr_NoMemory();
fail:
    PyBuffer_Release(&codes);
    if (p != NULL) {
        free(p->codes); free(p->ops); free(p->literals); free(p->field_data); free(p->field_len);
        free(p);
    }
    return NULL;
}

/* decode()'s output as bytes, and its buffer emptied for the next call. */
static PyObject *
take_chunk(program_t *p, int status, Py_ssize_t rows, const char *reason)
{
    PyObject *data = PyBytes_FromStringAndSize(status == COPY_BAD ? "" : p->out.data,
                                               status == COPY_BAD ? 0 : (Py_ssize_t)p->out.len);
    p->out.len = 0;
    if (data == NULL)
        return NULL;
    return Py_BuildValue("(iNns)", status, data, status == COPY_BAD ? 0 : rows, reason);
}

/* read_binary writes straight into the bytes object it returns (no copy of each chunk); when
 * a row does not fit, the object grows, which needs the GIL for a moment. */
static int
grow_bytes(pgd_buf *out, size_t want)
{
    PyObject **chunk = out->owner;
    size_t cap = out->cap * 2 > want ? out->cap * 2 : want;
    PyGILState_STATE gil;
    int resized;
    if (cap > (size_t)PY_SSIZE_T_MAX)
        return -1;
    gil = PyGILState_Ensure();
    resized = _PyBytes_Resize(chunk, (Py_ssize_t)cap);
    if (resized < 0)
        PyErr_Clear(); /* the decoder says "out of memory", in its one line */
    PyGILState_Release(gil);
    if (resized < 0)
        return -1;
    out->data = PyBytes_AS_STRING(*chunk);
    out->cap = cap;
    return 0;
}

/* read_binary(pgconn_ptr, target, timeout_ms, program) -> (status, lines, rows, reason) */
static PyObject *
read_binary(PyObject *self, PyObject *args)
{
    unsigned long long address;
    Py_ssize_t target, rows = 0;
    int timeout_ms, status = COPY_MORE, sock;
    PyObject *capsule;
    program_t *p;
    PGconn *conn;
    const char *reason = "";
    char *row;
    PyObject *chunk;
    pgd_buf out = {0};
    (void)self;
    if (!PyArg_ParseTuple(args, "KniO:read_binary", &address, &target, &timeout_ms, &capsule))
        return NULL;
    p = PyCapsule_GetPointer(capsule, program_name);
    if (p == NULL)
        return NULL;
    if (pq_get_copy_data == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call bind() first");
        return NULL;
    }
    if (target < 1) {
        PyErr_SetString(PyExc_ValueError, "target must be positive");
        return NULL;
    }
    conn = (PGconn *)(uintptr_t)address;
    /* Room for the target and the row that crosses it; a longer row grows the object. */
    chunk = PyBytes_FromStringAndSize(NULL, target + 64 * 1024);
    if (chunk == NULL)
        return NULL;
    out.data = PyBytes_AS_STRING(chunk);
    out.cap = (size_t)(target + 64 * 1024);
    out.grow = grow_bytes;
    out.owner = &chunk;
    Py_BEGIN_ALLOW_THREADS
    sock = pq_socket(conn);
    for (;;) {
        int n = pq_get_copy_data(conn, &row, 1);
        if (n > 0) {
            int got = pgd_message(&p->program, (const unsigned char *)row, (size_t)n, &out,
                                  &p->state, &reason);
            pq_freemem(row);
            if (got == PGD_MSG_BAD) {
                status = COPY_BAD;
                break;
            }
            if (got == PGD_MSG_ROW) {
                rows++;
                if (p->mark >= 0 && p->field_len[p->mark] >= 0)
                    p->marked++;
                if ((Py_ssize_t)out.len >= target)
                    break;
            }
        }
        else if (n == 0) {
            int ready = wait_for_input(conn, sock, timeout_ms);
            if (ready == 0)
                break; /* back to Python, which looks at cancellation and calls again */
            if (ready < 0) {
                status = COPY_ERROR;
                break;
            }
        }
        else {
            status = n == -1 ? COPY_DONE : COPY_ERROR;
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (status == COPY_DONE && !(p->state & PGD_ENDED)) {
        status = COPY_BAD;
        reason = "the COPY ended without its trailer";
    }
    if (chunk == NULL) /* a failed resize: the decoder has said so (COPY_BAD) */
        chunk = PyBytes_FromStringAndSize("", 0);
    if (chunk == NULL || _PyBytes_Resize(&chunk, status == COPY_BAD ? 0 : (Py_ssize_t)out.len) < 0)
        return NULL;
    return Py_BuildValue("(iNns)", status, chunk, status == COPY_BAD ? 0 : rows, reason);
}

/* take_marked(program) -> int: the rows read since the last call whose mark field was not
 * NULL (Python then looks for them in the lines only when there are some: a search of
 * every chunk cost about 1 ms a MiB, 10% of the client's CPU). */
static PyObject *
take_marked(PyObject *self, PyObject *capsule)
{
    program_t *p = PyCapsule_GetPointer(capsule, program_name);
    Py_ssize_t marked;
    (void)self;
    if (p == NULL)
        return NULL;
    marked = p->marked;
    p->marked = 0;
    return PyLong_FromSsize_t(marked);
}

/* decode(program, messages: list[bytes]) -> (status, lines, rows, reason): the same as
 * read_binary on these CopyData messages, without a server (tests, fuzzing). */
static PyObject *
decode(PyObject *self, PyObject *args)
{
    PyObject *capsule, *messages;
    program_t *p;
    Py_ssize_t i, rows = 0;
    int status = COPY_DONE;
    const char *reason = "";
    (void)self;
    if (!PyArg_ParseTuple(args, "OO!:decode", &capsule, &PyList_Type, &messages))
        return NULL;
    p = PyCapsule_GetPointer(capsule, program_name);
    if (p == NULL)
        return NULL;
    for (i = 0; i < PyList_GET_SIZE(messages); i++) {
        PyObject *m = PyList_GET_ITEM(messages, i);
        int got;
        if (!PyBytes_Check(m)) {
            PyErr_SetString(PyExc_TypeError, "messages are bytes");
            return NULL;
        }
        got = pgd_message(&p->program, (const unsigned char *)PyBytes_AS_STRING(m),
                          (size_t)PyBytes_GET_SIZE(m), &p->out, &p->state, &reason);
        if (got == PGD_MSG_BAD) {
            status = COPY_BAD;
            break;
        }
        rows += got == PGD_MSG_ROW;
    }
    if (status == COPY_DONE && !(p->state & PGD_ENDED)) {
        status = COPY_BAD;
        reason = "the COPY ended without its trailer";
    }
    return take_chunk(p, status, rows, reason);
}

static PyMethodDef methods[] = {
    {"bind", bind, METH_NOARGS,
     "bind() -> str\n\nFind the libpq loaded in this process and use its functions; return its path."},
    {"read_chunk", read_chunk, METH_VARARGS,
     "read_chunk(pgconn_ptr, target_bytes, timeout_ms, binary) -> (status, lines, rows)\n\n"
     "Read COPY rows as lines until about target_bytes, the end of the COPY, an error, or a\n"
     "wait of timeout_ms with nothing received. binary: the COPY is FORMAT binary of one\n"
     "column, else one line a row (CSV of one column). status: MORE call again, DONE, ERROR\n"
     "(libpq's), BAD (binary data not of one field a row)."},
    {"program", make_program, METH_VARARGS,
     "program(codes, ops, mark=-1) -> program\n\nWhat read_binary writes for each tuple: codes, one byte a\n"
     "field (its kind, _pgdecode.h); ops, (literal, field, null_mode) each, written in turn:\n"
     "the literal, then the field's JSON (none when field is -1; a NULL as null, or nothing\n"
     "when null_mode is 1). mark: a field whose non-NULL rows take_marked() counts."},
    {"take_marked", take_marked, METH_O,
     "take_marked(program) -> int\n\nThe rows read_binary read since the last call whose mark\n"
     "field was not NULL."},
    {"read_binary", read_binary, METH_VARARGS,
     "read_binary(pgconn_ptr, target_bytes, timeout_ms, program) -> (status, lines, rows, reason)\n\n"
     "Read a binary COPY and write its tuples as program says, until about target_bytes, the\n"
     "end of the COPY, an error, or a wait of timeout_ms. status as read_chunk's; BAD: a\n"
     "malformed tuple, said by reason (lines is then empty)."},
    {"decode", decode, METH_VARARGS,
     "decode(program, messages) -> (status, lines, rows, reason)\n\nread_binary over a list of\n"
     "CopyData messages instead of a connection (for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_pgcopy", "Read PostgreSQL COPY output in chunks, without the GIL.",
    -1, methods,
};

PyMODINIT_FUNC
PyInit__pgcopy(void)
{
    PyObject *m;
    pgd_init();
    m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddIntConstant(m, "MORE", COPY_MORE) < 0 ||
        PyModule_AddIntConstant(m, "BAD", COPY_BAD) < 0 ||
        PyModule_AddIntConstant(m, "DONE", COPY_DONE) < 0 ||
        PyModule_AddIntConstant(m, "ERROR", COPY_ERROR) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
