/* What the kernels' C files share: the buffers one call of _classify.c's, _aggregate.c's or
 * _audit.c's kernels holds (_kernels.c keeps its own `Views`, which also checks the buffers' formats), and
 * the range tables' IPv4 lookup (lookup4 in _kernels.c, classify in _classify.c), and the test
 * for an IPv4 address in the 16-octet address columns (all four files). */
#ifndef IMFLOW_KERNELS_H
#define IMFLOW_KERNELS_H

#include <Python.h>
#include <stdint.h>

/* The buffers a call holds, all released by held_release() whatever path it leaves by. */
typedef struct {
    Py_buffer *b;
    int taken, cap;
    const char *who; /* the kernel, for its errors */
} Held;

/* A C-contiguous buffer of n items of `size` octets (n < 0: any count), kept in `h`; NULL
 * with an exception set otherwise. */
static inline void *held_buffer(Held *h, PyObject *obj, int writable, Py_ssize_t size, Py_ssize_t n,
                                const char *name)
{
    if (h->taken >= h->cap) {
        PyErr_Format(PyExc_SystemError, "%s: more buffers than it keeps room for", h->who);
        return NULL;
    }
    Py_buffer *b = &h->b[h->taken];
    if (PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return NULL;
    h->taken++;
    if (b->itemsize != size || b->len % size || (n >= 0 && b->len / size != n)) {
        PyErr_Format(PyExc_ValueError, "%s: %s: %zd items of %zd octets expected, got %zd octets in items of %zd",
                     h->who, name, n, size, b->len, b->itemsize);
        return NULL;
    }
    return b->buf;
}

/* The items of `size` octets in a C-contiguous buffer (a call's row count, from its first
 * column), or -1 with an exception set. */
static inline Py_ssize_t buffer_items(PyObject *obj, Py_ssize_t size)
{
    Py_buffer probe;
    if (PyObject_GetBuffer(obj, &probe, PyBUF_C_CONTIGUOUS) < 0)
        return -1;
    Py_ssize_t n = probe.len / size;
    PyBuffer_Release(&probe);
    return n;
}

static inline void held_release(Held *h)
{
    for (int j = 0; j < h->taken; j++)
        PyBuffer_Release(&h->b[j]);
    h->taken = 0;
}

/* An IPv4 address as collector.netflow.batch.ADDR holds it: mapped into ::ffff:0:0/96 (hi 0,
 * the low half V4_MAPPED | the address). Written with & so that vector loops can use it. */
#define V4_MAPPED 0xFFFF00000000ULL

static inline int is_v4(uint64_t hi, uint64_t lo)
{
    return (hi == 0) & (lo >> 32 == V4_MAPPED >> 32);
}

/* A range table (collector.classify.ranges.RangeTable): level1 by the top s1 bits of a key,
 * level2 rows by the next s2 bits; a value with RANGE_POINTER set in level1 picks a level2 row,
 * in level2 a cell split by an interval boundary (the value is then the one of the last start
 * at or below the address). */
#define RANGE_POINTER 0x8000

/* One range table: level1 by the top s1 bits of a key, level2 rows by the next s2 bits. */
typedef struct {
    const uint16_t *level1, *level2, *values;
    const uint32_t *starts4;            /* IPv4 */
    const uint64_t *starts_hi, *starts_lo; /* IPv6 */
    Py_ssize_t rows2, ns;
    int s2, shift1, shift2;
    uint64_t mask2;
} Table;

/* The cell value of a key (the top 32 bits of an IPv4 address, `hi` of an IPv6 one), or
 * RANGE_POINTER for a cell split by a boundary; `bad` set when a level-1 pointer leaves level2
 * (the tables are built in Python: checked where used, not by a pass over level1 per call). */
static inline uint16_t cell(const Table *t, uint64_t key, int *bad)
{
    uint16_t v = t->level1[key >> t->shift1];
    if (!(v & RANGE_POINTER))
        return v;
    Py_ssize_t row = v & (RANGE_POINTER - 1);
    if (row >= t->rows2) {
        *bad = 1;
        return 0;
    }
    return t->level2[((size_t)row << t->s2) + ((key >> t->shift2) & t->mask2)];
}

static inline uint16_t range4(const Table *t, uint32_t a, int *bad)
{
    uint16_t v = cell(t, a, bad);
    if (!(v & RANGE_POINTER))
        return v;
    Py_ssize_t lo = 0, hi = t->ns; /* the last start <= a (starts[0] is 0) */
    while (hi - lo > 1) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (t->starts4[mid] <= a)
            lo = mid;
        else
            hi = mid;
    }
    return t->values[lo];
}

#endif
