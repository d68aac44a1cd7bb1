/* Compiled kernels of the hot path: grouped sums (the aggregator), the set walk and field
 * reads (the decoder), IPv4 range-table lookups and learned-address lookups (the classifier),
 * the audit log's rows; _classify.c (the classifier's common case in one pass), _aggregate.c
 * (the aggregator's reduction of a batch) and _audit.c (the audit log's selection and chunk
 * encoding) are built into the same module and listed in its method table below. Optional: without them the same work is done in NumPy, with the
 * same results (collector/kernels/__init__.py is the switch).
 *
 * Grouped sums by hashing: the aggregator's per-batch reduction in one pass, no sort.
 *
 * group_sums(keys, values, first, sums, counts, seed) -> k, or -1
 *
 *   keys    a tuple of (column, cardinality) pairs: one-dimensional C-contiguous integer
 *           buffers of n items (1, 2, 4 or 8 octets), every value below its cardinality; a
 *           row's key is its values side by side, each in a bit field as wide as its
 *           cardinality needs (the `width` collector.kernels.grouping.group_rows sums), the
 *           fields 64 bits at most together (else ValueError)
 *   values  a tuple of 0-4 C-contiguous buffers of n unsigned 64-bit integers to sum per group
 *   first   a writable buffer of signed 64-bit integers: the first row of each group
 *   sums    a tuple of writable buffers of unsigned 64-bit integers, one per values
 *   counts  a writable buffer of unsigned 64-bit integers: the rows of each group
 *           (the outputs' room, the fewest items of any of them, bounds the groups: n holds
 *           every batch, fewer keep a batch of few groups from allocating n of each)
 *   seed    an integer mixed into the hash (the caller picks it at random once)
 *
 * Groups are numbered 0..k-1 in the order of their first rows; sums wrap modulo 2^64, as
 * NumPy's uint64 additions do. -1 means a probe sequence grew past MAX_PROBE (keys made to
 * collide): nothing useful was written, and the caller groups the batch another way; -3 that
 * there were more groups than the outputs' room (nothing useful written either).
 *
 * Why a table and not a sort: a batch of 53k flows holds a few thousand groups, so a table
 * sized to the groups (grown as they come, never to the rows) stays in the CPU's caches, and
 * one pass replaces NumPy's key building, sort, gathers and reduceats. The loops run without
 * the GIL.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"

#define MAX_KEYS 8
#define MAX_VALUES 4
#define MAX_PROBE 64
#define FIRST_BITS 12 /* 4,096 slots to start with */
#define AHEAD 16 /* rows: a power of two */

static inline uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

#define MAX_FIELDS 32
#define MAX_PER_RUN 8
/* the most any function holds: fields' buffer, starts, counts, per-run columns and outputs */
#define MAX_VIEWS (MAX_FIELDS + MAX_PER_RUN + 3)

/* The buffers a call holds, all released by release() whatever path it leaves by. */
typedef struct {
    Py_buffer views[MAX_VIEWS];
    int taken;
} Views;

static void release(Views *v)
{
    for (int i = 0; i < v->taken; i++)
        PyBuffer_Release(&v->views[i]);
    v->taken = 0;
}

/* A one-dimensional C-contiguous buffer of integers into *b: 0, or -1 with an exception set
 * and nothing held. */
static int get_ints(Py_buffer *b, PyObject *obj, int writable, Py_ssize_t min_items, int need_size)
{
    if (PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    const char *f = b->format ? b->format : "B";
    if (*f == '<' || *f == '=' || *f == '@')
        f++;
    int integer = f[0] && !f[1] && strchr("bBhHiIlLqQnN", f[0]) != NULL;
    if (b->ndim != 1 || !integer || !(b->itemsize == 1 || b->itemsize == 2 || b->itemsize == 4 || b->itemsize == 8))
        PyErr_Format(PyExc_TypeError, "expected a one-dimensional integer buffer, got format %s ndim %d", f, b->ndim);
    else if (need_size && b->itemsize != need_size)
        PyErr_Format(PyExc_TypeError, "expected %d-octet items, got %zd", need_size, b->itemsize);
    else if (b->shape[0] < min_items)
        PyErr_Format(PyExc_ValueError, "buffer of %zd items, needs %zd", b->shape[0], min_items);
    else
        return 0;
    PyBuffer_Release(b);
    return -1;
}

/* get_ints() kept in `v` for release(); NULL with an exception set otherwise. */
static Py_buffer *take(Views *v, PyObject *obj, int writable, Py_ssize_t min_items, int need_size)
{
    Py_buffer *b = &v->views[v->taken];
    if (get_ints(b, obj, writable, min_items, need_size) < 0)
        return NULL;
    v->taken++;
    return b;
}

/* Any C-contiguous buffer (datagrams, address columns), kept in `v` for release(). */
static Py_buffer *take_raw(Views *v, PyObject *obj, int writable)
{
    Py_buffer *b = &v->views[v->taken];
    if (PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return NULL;
    v->taken++;
    return b;
}

/* key = key << bits | column, one pass per column with its item size fixed: shifts and ors
 * vectorise where a mixed radix's 64-bit multiplies do not (half the time a column here) */
static void pack(uint64_t *key, const Py_buffer *c, int bits, Py_ssize_t n, int first)
{
#define PACK(T)                                                                          \
    do {                                                                                 \
        const T *p = (const T *)c->buf;                                                  \
        if (first || bits >= 64) /* a 64-bit field: the others are 0 bits wide, all 0 */ \
            for (Py_ssize_t i = 0; i < n; i++) key[i] = (uint64_t)p[i];                  \
        else                                                                             \
            for (Py_ssize_t i = 0; i < n; i++) key[i] = key[i] << bits | (uint64_t)p[i]; \
    } while (0)
    switch (c->itemsize) {
    case 1: PACK(uint8_t); break;
    case 2: PACK(uint16_t); break;
    case 4: PACK(uint32_t); break;
    default: PACK(uint64_t); break;
    }
#undef PACK
}

/* The grouping proper; -1 on a too long probe, -2 when out of memory, -3 past `room` groups.
 *
 * A group's key, row count and sums lie together in one record (rec[g * stride]: key, count,
 * then the nv sums), so a row touches the slot table and one record, not the key, the counts
 * and each sum apart, each at random; the k records are copied out at the end. */
static Py_ssize_t group(const uint64_t *key, Py_ssize_t n, const uint64_t *const *vals, int nv,
                        int64_t *first, uint64_t *const *sums, uint64_t *counts, Py_ssize_t room, uint64_t seed)
{
    int bits = FIRST_BITS;
    size_t cap = (size_t)1 << bits, stride = (size_t)nv + 2;
    int32_t *slot = malloc(cap * sizeof *slot);
    Py_ssize_t most = n < room ? n : room; /* groups there can be: records for those only */
    uint64_t *rec = malloc((size_t)(most > 0 ? most : 1) * stride * sizeof *rec);
    if (!slot || !rec) {
        free(slot);
        free(rec);
        return -2;
    }
    memset(slot, 0xff, cap * sizeof *slot);
    const uint64_t *v0 = nv > 0 ? vals[0] : NULL, *v1 = nv > 1 ? vals[1] : NULL;
    Py_ssize_t k = 0;
    /* each row's slot is fetched AHEAD rows early, so the table's cache misses overlap
     * (measured on a v5 batch: 6.0 -> 5.7 ns a row) */
    uint64_t ring[AHEAD];
    for (Py_ssize_t i = 0; i < AHEAD && i < n; i++)
        ring[i] = mix(key[i] ^ seed);
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t x = key[i], hv = ring[i & (AHEAD - 1)];
        if (i + AHEAD < n) {
            uint64_t ahead = mix(key[i + AHEAD] ^ seed);
            ring[i & (AHEAD - 1)] = ahead;
            __builtin_prefetch(&slot[ahead & (cap - 1)]);
        }
        size_t mask = cap - 1, h = (size_t)(hv & mask);
        uint64_t *r;
        int probes = 0;
        for (;;) {
            int32_t g = slot[h];
            if (g < 0) {
                if (k >= room) {
                    free(slot);
                    free(rec);
                    return -3;
                }
                g = (int32_t)k++;
                slot[h] = g;
                r = rec + (size_t)g * stride;
                r[0] = x;
                memset(r + 1, 0, (stride - 1) * sizeof *r);
                first[g] = i;
                if ((size_t)k * 4 > cap) { /* at most a quarter full: grow fourfold, re-place */
                    free(slot);
                    bits += 2;
                    cap = (size_t)1 << bits;
                    mask = cap - 1;
                    slot = malloc(cap * sizeof *slot);
                    if (!slot) {
                        free(rec);
                        return -2;
                    }
                    memset(slot, 0xff, cap * sizeof *slot);
                    for (Py_ssize_t j = 0; j < k; j++) {
                        size_t hh = (size_t)(mix(rec[(size_t)j * stride] ^ seed) & mask);
                        while (slot[hh] >= 0)
                            hh = (hh + 1) & mask;
                        slot[hh] = (int32_t)j;
                    }
                }
                break;
            }
            r = rec + (size_t)g * stride;
            if (r[0] == x)
                break;
            if (++probes > MAX_PROBE) {
                free(slot);
                free(rec);
                return -1;
            }
            h = (h + 1) & mask;
        }
        r[1] += 1;
        switch (nv) { /* the aggregator's two (bytes, packets) without a loop */
        case 0: break;
        case 1: r[2] += v0[i]; break;
        case 2: r[2] += v0[i]; r[3] += v1[i]; break;
        default:
            for (int v = 0; v < nv; v++)
                r[2 + v] += vals[v][i];
        }
    }
    for (Py_ssize_t g = 0; g < k; g++) {
        const uint64_t *r = rec + (size_t)g * stride;
        counts[g] = r[1];
        for (int v = 0; v < nv; v++)
            sums[v][g] = r[2 + v];
    }
    free(slot);
    free(rec);
    return k;
}

static PyObject *group_sums(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6 || !PyTuple_Check(args[0]) || !PyTuple_Check(args[1]) || !PyTuple_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "group_sums(keys: tuple, values: tuple, first, sums: tuple, counts, seed)");
        return NULL;
    }
    Py_ssize_t nk = PyTuple_GET_SIZE(args[0]), nv = PyTuple_GET_SIZE(args[1]);
    if (nk < 1 || nk > MAX_KEYS || nv > MAX_VALUES || PyTuple_GET_SIZE(args[3]) != nv) {
        PyErr_SetString(PyExc_ValueError, "1-8 key columns, 0-4 value columns and one sum buffer per value column");
        return NULL;
    }
    uint64_t seed = PyLong_AsUnsignedLongLongMask(args[5]);
    if (PyErr_Occurred())
        return NULL;
    Views v = {.taken = 0};
    Py_buffer *keys[MAX_KEYS];
    int bits[MAX_KEYS], width = 0;
    const uint64_t *vals[MAX_VALUES];
    uint64_t *sums[MAX_VALUES];
    Py_ssize_t n = -1;
    PyObject *result = NULL;
    for (Py_ssize_t c = 0; c < nk; c++) {
        PyObject *pair = PyTuple_GET_ITEM(args[0], c);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "a key is a (column, cardinality) pair");
            goto done;
        }
        if (!(keys[c] = take(&v, PyTuple_GET_ITEM(pair, 0), 0, 0, 0)))
            goto done;
        uint64_t size = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(pair, 1));
        if (PyErr_Occurred())
            goto done;
        bits[c] = size > 1 ? 64 - __builtin_clzll(size - 1) : 0;
        width += bits[c];
        if (width > 64) {
            PyErr_SetString(PyExc_ValueError, "key fields wider than 64 bits together");
            goto done;
        }
        if (n < 0)
            n = keys[c]->shape[0];
        else if (keys[c]->shape[0] != n) {
            PyErr_SetString(PyExc_ValueError, "key columns of different lengths");
            goto done;
        }
    }
    Py_buffer *fb = take(&v, args[2], 1, 0, 8), *cb = fb ? take(&v, args[4], 1, 0, 8) : NULL;
    if (!cb)
        goto done;
    Py_ssize_t room = fb->shape[0] < cb->shape[0] ? fb->shape[0] : cb->shape[0]; /* groups the outputs hold */
    for (Py_ssize_t c = 0; c < nv; c++) {
        Py_buffer *b = take(&v, PyTuple_GET_ITEM(args[1], c), 0, n, 8);
        if (!b)
            goto done;
        vals[c] = b->buf;
        if (!(b = take(&v, PyTuple_GET_ITEM(args[3], c), 1, 0, 8)))
            goto done;
        sums[c] = b->buf;
        if (b->shape[0] < room)
            room = b->shape[0];
    }
    Py_ssize_t k;
    Py_BEGIN_ALLOW_THREADS
    uint64_t *key = malloc((size_t)(n ? n : 1) * sizeof *key);
    if (!key)
        k = -2;
    else {
        int packed = 0;
        for (Py_ssize_t c = 0; c < nk; c++)
            if (bits[c]) /* a column of cardinality 1 holds only 0 (one exporter's batch): no pass */
                pack(key, keys[c], bits[c], n, !packed++);
        if (!packed)
            memset(key, 0, (size_t)n * sizeof *key);
        k = group(key, n, vals, (int)nv, fb->buf, sums, cb->buf, room, seed);
        free(key);
    }
    Py_END_ALLOW_THREADS
    if (k == -2)
        PyErr_NoMemory();
    else
        result = PyLong_FromSsize_t(k);
done:
    release(&v);
    return result;
}

/* fields(buf, starts, counts, record_len, per_run, specs) -> None
 *
 *   buf         a C-contiguous buffer holding a decode group's data records of record_len
 *               octets, in runs: run r is counts[r] records back to back from starts[r] (a
 *               data set's records, read where they lie in the batch's datagrams); starts
 *               None: the runs back to back from buf's start (records gathered first).
 *               starts and counts are signed 64-bit; every run must lie inside buf; n, the
 *               records in all, is the sum of the counts.
 *   per_run     a tuple of at most 8 C-contiguous buffers with one item per run (the chunk
 *               columns: session ids, sampling rates, export times, uptimes)
 *   specs       a tuple of what to write, each into `out`, a writable C-contiguous buffer of
 *               n items, item i for record i:
 *     (0, offset, width, out)   READ: the big-endian unsigned field of `width` octets (1, 2, 4
 *               or 8; 4 or 16 for an address) at `offset` in the record; items of 1, 2, 4 or 8
 *               octets take it modulo their size (NumPy's unsafe cast); items of 16 octets are
 *               addresses as collector.netflow.batch.ADDR holds them (two native 64-bit
 *               halves, IPv4 mapped into ::ffff:0:0/96)
 *     (1, offset, width, out, m)  SCALED: the field times per_run[m] (uint32: the sampling
 *               rate) into uint64 items, wrapping modulo 2^64 as NumPy's multiply does
 *     (2, j, out)               REPEAT: per_run[j]'s item of the record's run (item sizes equal)
 *     (3, offset, width, out, e, u)  UPTIME: a sysUpTime-relative time as UNIX seconds
 *               (float64): per_run[e] (float64 export time) + the signed 32-bit difference
 *               of the field and per_run[u] (uint32 header uptime) / 1000
 *     (4, offset, width, out, divisor)  DIVIDED: the field / divisor as float64 (seconds
 *               from milliseconds; divisor 1: the value as a float)
 *
 * Each result equals what collector.netflow.reads.Reads computes in NumPy without the
 * kernels. The records are taken a tile at a time (TILE records from one or more runs) and
 * each spec runs over the tile in a tight loop of its own: one loop per field beat one loop
 * per record with a switch per field (0.65 against 1.2 ms for 11 fields of 53k records), and
 * a tile stays in the core's first-level cache between the loops, so the records scattered
 * over the batch's datagrams are neither copied together first nor fetched from memory once
 * per field.
 */
#define TILE 256

enum { READ, SCALED, REPEAT, UPTIME, DIVIDED };

typedef struct {
    int kind;
    Py_ssize_t offset;
    int width, size;
    char *out;
    const void *a;   /* SCALED: multipliers; REPEAT: values; UPTIME: export times */
    const uint32_t *uptime;
    double divisor;
} Field;

typedef struct {
    const unsigned char *p; /* the first record of the segment */
    Py_ssize_t count, pos, run;
} Segment;

static inline uint64_t be(const unsigned char *p, int width)
{
    switch (width) {
    case 1: return p[0];
    case 2: { uint16_t v; memcpy(&v, p, 2); return __builtin_bswap16(v); }
    case 4: { uint32_t v; memcpy(&v, p, 4); return __builtin_bswap32(v); }
    default: { uint64_t v; memcpy(&v, p, 8); return __builtin_bswap64(v); }
    }
}

/* A sysUpTime-relative time as UNIX seconds: the export time plus the signed 32-bit difference
 * of the field and the header's uptime, in milliseconds (both reads, the loops per field and
 * v5's one loop, compute it here). */
static inline double since_uptime(double export, uint32_t field, uint32_t uptime)
{
    return export + (double)(int32_t)(field - uptime) / 1e3;
}

/* One spec over one tile's segments, a loop per (width, item size): the compiler keeps each tight. */
static void apply(const Field *f, const Segment *seg, int nseg, Py_ssize_t reclen)
{
#define EACH(BODY)                                                         \
    for (int s = 0; s < nseg; s++) {                                       \
        const unsigned char *p = seg[s].p + f->offset;                     \
        Py_ssize_t pos = seg[s].pos, run = seg[s].run, cnt = seg[s].count; \
        (void)run;                                                         \
        for (Py_ssize_t i = 0; i < cnt; i++, p += reclen) { BODY; }       \
    }
#define WIDTHS(M)                                                          \
    switch (f->width) {                                                    \
    case 1: M(1); break;                                                   \
    case 2: M(2); break;                                                   \
    case 4: M(4); break;                                                   \
    default: M(8); break;                                                  \
    }
    switch (f->kind) {
    case READ:
        if (f->size == 16) {
            uint64_t *a = (uint64_t *)f->out;
            if (f->width == 4)
                EACH(a[2 * (pos + i)] = 0; a[2 * (pos + i) + 1] = V4_MAPPED | be(p, 4))
            else
                EACH(a[2 * (pos + i)] = be(p, 8); a[2 * (pos + i) + 1] = be(p + 8, 8))
            break;
        }
#define INTO(T, W) do { T *o = (T *)f->out; EACH(o[pos + i] = (T)be(p, W)) } while (0)
#define SIZES(W)                                                           \
        switch (f->size) {                                                 \
        case 1: INTO(uint8_t, W); break;                                   \
        case 2: INTO(uint16_t, W); break;                                  \
        case 4: INTO(uint32_t, W); break;                                  \
        default: INTO(uint64_t, W); break;                                 \
        }
        WIDTHS(SIZES)
        break;
    case SCALED: {
        uint64_t *o = (uint64_t *)f->out;
        const uint32_t *m = f->a;
#define SCALE(W) EACH(o[pos + i] = be(p, W) * (uint64_t)m[run])
        WIDTHS(SCALE)
        break;
    }
    case REPEAT:
#define REP(T) do { T *o = (T *)f->out; const T *v = f->a; EACH(o[pos + i] = v[run]) } while (0)
        switch (f->size) {
        case 1: REP(uint8_t); break;
        case 2: REP(uint16_t); break;
        case 4: REP(uint32_t); break;
        default: REP(uint64_t); break;
        }
        break;
    case UPTIME: {
        double *o = (double *)f->out;
        const double *e = f->a;
        const uint32_t *u = f->uptime;
#define SINCE(W) EACH(o[pos + i] = since_uptime(e[run], (uint32_t)be(p, W), u[run]))
        WIDTHS(SINCE)
        break;
    }
    default: { /* DIVIDED */
        double *o = (double *)f->out, d = f->divisor;
#define DIV(W) EACH(o[pos + i] = (double)be(p, W) / d)
        WIDTHS(DIV)
        break;
    }
    }
#undef DIV
#undef SINCE
#undef REP
#undef SCALE
#undef SIZES
#undef INTO
#undef WIDTHS
#undef EACH
}

/* NetFlow v5's fields as the decoder asks for them (collector.netflow.columns), whatever their
 * offsets: the addresses, the interfaces, packets and octets times the sampling rate, the ports,
 * the protocol, then the uptimes of the first and the last packet, or of the last only (the
 * first is read only for the audit log). One loop over the records writes them all: with the
 * kinds and widths fixed the compiler keeps it tight, where the loops per field pay their loop
 * and address arithmetic once a field (decode 11.0 against 14.2 ns a flow). Any other list of
 * specs takes the loops per field. */
static const struct { int kind, width, size; } V5[] = {
    {READ, 4, 16}, {READ, 4, 16}, {READ, 2, 4}, {READ, 2, 4}, {SCALED, 4, 8}, {SCALED, 4, 8},
    {READ, 2, 2}, {READ, 2, 2}, {READ, 1, 1}, {UPTIME, 4, 8}, {UPTIME, 4, 8},
};
#define N_V5 ((Py_ssize_t)(sizeof V5 / sizeof V5[0]))

/* 2: the eleven specs of V5; 1: the ten without the first packet's uptime; 0: another list. */
static int v5_like(const Field *f, Py_ssize_t nf)
{
    if (nf != N_V5 && nf != N_V5 - 1)
        return 0;
    for (Py_ssize_t j = 0; j < nf; j++)
        if (f[j].kind != V5[j].kind || f[j].width != V5[j].width || f[j].size != V5[j].size)
            return 0;
    return nf == N_V5 ? 2 : 1;
}

static inline void v5_runs(const Field *f, int both, const unsigned char *base, const int64_t *starts,
                           const int64_t *counts, Py_ssize_t m, Py_ssize_t reclen)
{
    uint64_t *src = (uint64_t *)f[0].out, *dst = (uint64_t *)f[1].out;
    uint32_t *in_if = (uint32_t *)f[2].out, *out_if = (uint32_t *)f[3].out;
    uint64_t *packets = (uint64_t *)f[4].out, *octets = (uint64_t *)f[5].out;
    uint16_t *sport = (uint16_t *)f[6].out, *dport = (uint16_t *)f[7].out;
    uint8_t *proto = (uint8_t *)f[8].out;
    const Field *ff = &f[9], *fl = &f[9 + both]; /* the first packet's uptime (both), the last's */
    double *last = (double *)fl->out, *first = (double *)ff->out;
    const Py_ssize_t o_src = f[0].offset, o_dst = f[1].offset, o_in = f[2].offset, o_out = f[3].offset,
                     o_pk = f[4].offset, o_oc = f[5].offset, o_sp = f[6].offset, o_dp = f[7].offset,
                     o_pr = f[8].offset, o_fi = ff->offset, o_la = fl->offset;
    const uint32_t *m_pk = f[4].a, *m_oc = f[5].a;
    Py_ssize_t pos = 0;
    for (Py_ssize_t r = 0; r < m; r++) {
        const unsigned char *p = base + starts[r];
        const uint64_t k_pk = m_pk[r], k_oc = m_oc[r];
        const double t_fi = ((const double *)ff->a)[r], t_la = ((const double *)fl->a)[r];
        const uint32_t u_fi = ff->uptime[r], u_la = fl->uptime[r];
        for (Py_ssize_t i = 0, n = counts[r]; i < n; i++, pos++, p += reclen) {
            src[2 * pos] = 0;
            src[2 * pos + 1] = V4_MAPPED | be(p + o_src, 4);
            dst[2 * pos] = 0;
            dst[2 * pos + 1] = V4_MAPPED | be(p + o_dst, 4);
            in_if[pos] = (uint32_t)be(p + o_in, 2);
            out_if[pos] = (uint32_t)be(p + o_out, 2);
            packets[pos] = be(p + o_pk, 4) * k_pk;
            octets[pos] = be(p + o_oc, 4) * k_oc;
            sport[pos] = (uint16_t)be(p + o_sp, 2);
            dport[pos] = (uint16_t)be(p + o_dp, 2);
            proto[pos] = p[o_pr];
            if (both)
                first[pos] = since_uptime(t_fi, (uint32_t)be(p + o_fi, 4), u_fi);
            last[pos] = since_uptime(t_la, (uint32_t)be(p + o_la, 4), u_la);
        }
    }
}

/* v5_runs with `both` a constant at each call, so each copy has no test of it per record */
static void v5_fields(const Field *f, int kind, const unsigned char *base, const int64_t *starts,
                      const int64_t *counts, Py_ssize_t m, Py_ssize_t reclen)
{
    if (kind == 2)
        v5_runs(f, 1, base, starts, counts, m, reclen);
    else
        v5_runs(f, 0, base, starts, counts, m, reclen);
}

static int spec_int(PyObject *spec, Py_ssize_t i, long *out)
{
    *out = PyLong_AsLong(PyTuple_GET_ITEM(spec, i));
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *fields(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6 || !PyTuple_Check(args[4]) || !PyTuple_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "fields(buf, starts, counts, record_len, per_run: tuple, specs: tuple)");
        return NULL;
    }
    Py_ssize_t reclen = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
    Py_ssize_t nf = PyTuple_GET_SIZE(args[5]), np_ = PyTuple_GET_SIZE(args[4]);
    if (reclen < 1 || nf > MAX_FIELDS || np_ > MAX_PER_RUN) {
        PyErr_SetString(PyExc_ValueError, "record_len >= 1, at most 32 specs and 8 per-run columns");
        return NULL;
    }
    Views v = {.taken = 0};
    Field f[MAX_FIELDS];
    const void *per[MAX_PER_RUN];
    Py_ssize_t per_size[MAX_PER_RUN];
    PyObject *result = NULL;
    const int64_t *starts = NULL, *counts;
    int64_t *packed = NULL; /* starts None: the runs' starts, back to back */
    Py_ssize_t m, n = 0;
    Py_buffer *buf = take_raw(&v, args[0], 0), *b, *cb;
    if (!buf || !(cb = take(&v, args[2], 0, 0, 8)))
        goto done;
    m = cb->shape[0];
    counts = cb->buf;
    if (args[1] != Py_None) {
        if (!(b = take(&v, args[1], 0, m, 8)))
            goto done;
        starts = b->buf;
    } else if (!(starts = packed = malloc((size_t)(m ? m : 1) * sizeof *packed))) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t r = 0; r < m; r++) {
        if (packed)
            packed[r] = n * reclen;
        if (counts[r] < 0 || starts[r] < 0 || starts[r] > buf->len || counts[r] > (buf->len - starts[r]) / reclen) {
            PyErr_Format(PyExc_ValueError, "run %zd of %lld records at offset %lld lies outside the buffer", r,
                         (long long)counts[r], (long long)starts[r]);
            goto done;
        }
        n += counts[r];
    }
    for (Py_ssize_t j = 0; j < np_; j++) {
        if (!(b = take_raw(&v, PyTuple_GET_ITEM(args[4], j), 0)))
            goto done;
        if (b->itemsize < 1 || b->len < m * b->itemsize) {
            PyErr_Format(PyExc_ValueError, "per-run column %zd: %zd octets for %zd runs", j, b->len, m);
            goto done;
        }
        per[j] = b->buf;
        per_size[j] = b->itemsize;
    }
    for (Py_ssize_t j = 0; j < nf; j++) {
        PyObject *spec = PyTuple_GET_ITEM(args[5], j);
        Py_ssize_t len = PyTuple_Check(spec) ? PyTuple_GET_SIZE(spec) : 0;
        long kind = -1, offset = 0, width = 0, x = 0, y = 0;
        static const int want[] = {4, 5, 3, 6, 5}; /* items of each kind's tuple */
        if (len < 3 || spec_int(spec, 0, &kind) < 0 || kind < READ || kind > DIVIDED || len != want[kind]) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "spec %zd: not one of the five kinds (see the module source)", j);
            goto done;
        }
        Field *fj = &f[j];
        memset(fj, 0, sizeof *fj);
        fj->kind = (int)kind;
        if (kind == REPEAT) {
            if (spec_int(spec, 1, &x) < 0)
                goto done;
        } else if (spec_int(spec, 1, &offset) < 0 || spec_int(spec, 2, &width) < 0) {
            goto done;
        }
        if (!(b = take_raw(&v, PyTuple_GET_ITEM(spec, kind == REPEAT ? 2 : 3), 1)))
            goto done;
        fj->offset = offset;
        fj->width = (int)width;
        fj->size = (int)b->itemsize;
        fj->out = b->buf;
        int z = fj->size, w = fj->width, ok = b->len >= n * z;
        switch (kind) {
        case READ:
            ok &= z == 16 ? (w == 4 || w == 16) : (z == 1 || z == 2 || z == 4 || z == 8);
            break;
        case SCALED:
            ok &= spec_int(spec, 4, &x) == 0 && x >= 0 && x < np_ && per_size[x] == 4 && z == 8;
            if (ok)
                fj->a = per[x];
            break;
        case REPEAT:
            ok &= x >= 0 && x < np_ && per_size[x] == z && (z == 1 || z == 2 || z == 4 || z == 8);
            if (ok)
                fj->a = per[x];
            w = 1;
            break;
        case UPTIME:
            ok &= spec_int(spec, 4, &x) == 0 && spec_int(spec, 5, &y) == 0 && x >= 0 && x < np_ && y >= 0
                  && y < np_ && per_size[x] == 8 && per_size[y] == 4 && z == 8;
            if (ok) {
                fj->a = per[x];
                fj->uptime = per[y];
            }
            break;
        default:
            fj->divisor = PyFloat_AsDouble(PyTuple_GET_ITEM(spec, 4));
            ok &= z == 8 && !PyErr_Occurred();
            break;
        }
        if (PyErr_Occurred())
            goto done;
        if (kind != REPEAT && z != 16 && !(w == 1 || w == 2 || w == 4 || w == 8))
            ok = 0;
        if (!ok || offset < 0 || offset + w > reclen) {
            PyErr_Format(PyExc_ValueError, "spec %zd (kind %ld): offset %ld, width %ld into %d-octet items of %zd "
                         "octets in all", j, kind, offset, width, z, b->len);
            goto done;
        }
    }
    int v5 = v5_like(f, nf);
    if (v5) {
        Py_BEGIN_ALLOW_THREADS
        v5_fields(f, v5, buf->buf, starts, counts, m, reclen);
        Py_END_ALLOW_THREADS
        goto ok;
    }
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *base = buf->buf;
    Segment seg[TILE];
    Py_ssize_t r = 0, within = 0, pos = 0;
    while (pos < n) {
        int ns = 0;
        Py_ssize_t got = 0;
        while (got < TILE && r < m) {
            Py_ssize_t take_n = counts[r] - within;
            if (take_n > TILE - got)
                take_n = TILE - got;
            if (take_n > 0) {
                seg[ns++] = (Segment){base + starts[r] + within * reclen, take_n, pos + got, r};
                got += take_n;
                within += take_n;
            }
            if (within >= counts[r]) {
                r++;
                within = 0;
            }
        }
        for (Py_ssize_t j = 0; j < nf; j++)
            apply(&f[j], seg, ns, reclen);
        pos += got;
    }
    Py_END_ALLOW_THREADS
ok:
    result = Py_None;
    Py_INCREF(result);
done:
    free(packed);
    release(&v);
    return result;
}

/* audit_fill(idx, now, max_age, max_skew, exporter, cols, outs) -> None
 *
 * The flow audit log's rows taken from a classified batch (collector.auditlog.AuditBuffer._fill
 * does the same in NumPy, with the same results): row i of `outs` from flow idx[i].
 *
 *   idx       signed 64-bit flow indexes, each below the batch's length
 *   now, max_age, max_skew   seconds: an end time outside [now - max_age, now + max_skew]
 *             (or NaN) becomes now; a start after the end or more than max_age before it
 *             becomes the end
 *   exporter  the exporter index of every flow (an integer), used when cols' last item is None
 *   cols      the batch's columns, one item per flow: end, start (float64), src_addr, dst_addr
 *             (16-octet ADDR items), src_port, dst_port (uint16), proto (uint8), service
 *             (uint16), bytes, packets (uint64), in_if, out_if (uint32), has_host,
 *             host_is_src (bool), exporters (uint32 per flow, or None)
 *   outs      the rows' columns (collector.store.audit.COLUMNS): start_ms, end_ms (int64),
 *             host_hi, host_lo, peer_hi, peer_lo (uint64), host_port, peer_port (uint16),
 *             exporter (uint32), proto (uint8), service (uint16), bytes, packets (uint64),
 *             in_if, out_if (uint32), direction (uint8: 0 no internal host, 1 the host sent
 *             it, 2 it came in)
 *
 * The host side is the source when the classifier says so or there is no internal host.
 * One pass over the selected flows instead of some twenty NumPy takes and wheres, two of
 * them over 16-octet structured items.
 */
#define AUDIT_IN 15
#define AUDIT_OUT 16

/* rint() in the default rounding mode (to nearest, ties to even, as np.rint) without a libm
 * call: adding and taking away 1.5 * 2^52 leaves x rounded to an integer when |x| < 2^51 */
static inline int64_t round_even(double x)
{
    const double big = 6755399441055744.0;
    return fabs(x) < 2251799813685248.0 ? (int64_t)((x + big) - big) : (int64_t)rint(x);
}

static PyObject *audit_fill(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 7 || !PyTuple_Check(args[5]) || PyTuple_GET_SIZE(args[5]) != AUDIT_IN || !PyTuple_Check(args[6])
        || PyTuple_GET_SIZE(args[6]) != AUDIT_OUT) {
        PyErr_SetString(PyExc_TypeError, "audit_fill(idx, now, max_age, max_skew, exporter, cols: 15, outs: 16)");
        return NULL;
    }
    static const int in_size[AUDIT_IN] = {8, 8, 16, 16, 2, 2, 1, 2, 8, 8, 4, 4, 1, 1, 4};
    static const int out_size[AUDIT_OUT] = {8, 8, 8, 8, 8, 8, 2, 2, 4, 1, 2, 8, 8, 4, 4, 1};
    double now = PyFloat_AsDouble(args[1]), max_age = PyFloat_AsDouble(args[2]), skew = PyFloat_AsDouble(args[3]);
    unsigned long exporter = PyLong_AsUnsignedLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    Views v = {.taken = 0};
    PyObject *result = NULL;
    const char *in[AUDIT_IN] = {NULL};
    char *out[AUDIT_OUT];
    Py_ssize_t flows = -1, n;
    Py_buffer *ib = take(&v, args[0], 0, 0, 8), *b;
    if (!ib)
        goto done;
    n = ib->shape[0];
    for (int j = 0; j < AUDIT_IN; j++) {
        PyObject *o = PyTuple_GET_ITEM(args[5], j);
        if (j == AUDIT_IN - 1 && o == Py_None)
            break;
        if (!(b = take_raw(&v, o, 0)))
            goto done;
        Py_ssize_t items = b->itemsize ? b->len / b->itemsize : 0;
        if (b->itemsize != in_size[j] || (flows >= 0 && items != flows)) {
            PyErr_Format(PyExc_ValueError, "column %d: %zd items of %zd octets, expected %zd of %d", j, items,
                         b->itemsize, flows, in_size[j]);
            goto done;
        }
        flows = items;
        in[j] = b->buf;
    }
    for (int j = 0; j < AUDIT_OUT; j++) {
        if (!(b = take_raw(&v, PyTuple_GET_ITEM(args[6], j), 1)))
            goto done;
        if (b->itemsize != out_size[j] || b->len < n * out_size[j]) {
            PyErr_Format(PyExc_ValueError, "output %d: %zd octets of %zd-octet items for %zd rows", j, b->len,
                         b->itemsize, n);
            goto done;
        }
        out[j] = b->buf;
    }
    const int64_t *idx = ib->buf;
    for (Py_ssize_t i = 0; i < n; i++)
        if (idx[i] < 0 || idx[i] >= flows) {
            PyErr_Format(PyExc_IndexError, "row %zd takes flow %lld of %zd", i, (long long)idx[i], flows);
            goto done;
        }
    Py_BEGIN_ALLOW_THREADS
    const double *end = (const double *)in[0], *start = (const double *)in[1];
    const uint64_t *src = (const uint64_t *)in[2], *dst = (const uint64_t *)in[3];
    const uint16_t *sport = (const uint16_t *)in[4], *dport = (const uint16_t *)in[5], *service = (const uint16_t *)in[7];
    const uint8_t *proto = (const uint8_t *)in[6], *has = (const uint8_t *)in[12], *is_src = (const uint8_t *)in[13];
    const uint64_t *bytes = (const uint64_t *)in[8], *packets = (const uint64_t *)in[9];
    const uint32_t *in_if = (const uint32_t *)in[10], *out_if = (const uint32_t *)in[11];
    const uint32_t *exporters = (const uint32_t *)in[14];
    int64_t *start_ms = (int64_t *)out[0], *end_ms = (int64_t *)out[1];
    uint64_t *host_hi = (uint64_t *)out[2], *host_lo = (uint64_t *)out[3], *peer_hi = (uint64_t *)out[4],
             *peer_lo = (uint64_t *)out[5], *o_bytes = (uint64_t *)out[11], *o_packets = (uint64_t *)out[12];
    uint16_t *host_port = (uint16_t *)out[6], *peer_port = (uint16_t *)out[7], *o_service = (uint16_t *)out[10];
    uint32_t *o_exporter = (uint32_t *)out[8], *o_in = (uint32_t *)out[13], *o_out = (uint32_t *)out[14];
    uint8_t *o_proto = (uint8_t *)out[9], *direction = (uint8_t *)out[15];
    double lo = now - max_age, hi = now + skew;
    /* a few passes over the rows, each reading a few columns: one pass reading all fifteen
     * took twice as long (the selected flows lie scattered over the batch's columns) */
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t k = idx[i];
        double e = end[k], s = start[k];
        if (!(e >= lo && e <= hi))
            e = now;
        if (!(s <= e && s >= e - max_age))
            s = e;
        start_ms[i] = round_even(s * 1000.0);
        end_ms[i] = round_even(e * 1000.0);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t k = idx[i];
        int h = has[k] != 0, fwd = is_src[k] != 0 || !h;
        const uint64_t *ha = fwd ? src + 2 * k : dst + 2 * k, *pa = fwd ? dst + 2 * k : src + 2 * k;
        host_hi[i] = ha[0];
        host_lo[i] = ha[1];
        peer_hi[i] = pa[0];
        peer_lo[i] = pa[1];
        host_port[i] = fwd ? sport[k] : dport[k];
        peer_port[i] = fwd ? dport[k] : sport[k];
        direction[i] = (uint8_t)(h ? (is_src[k] ? 1 : 2) : 0);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t k = idx[i];
        o_exporter[i] = exporters ? exporters[k] : (uint32_t)exporter;
        o_proto[i] = proto[k];
        o_service[i] = service[k];
        o_bytes[i] = bytes[k];
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t k = idx[i];
        o_packets[i] = packets[k];
        o_in[i] = in_if[k];
        o_out[i] = out_if[k];
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    release(&v);
    return result;
}

/* lookup4(addr, level1, level2, starts, values, s1, s2, out, other) -> rows not IPv4
 *
 *   addr     n addresses as collector.netflow.batch.ADDR holds them (16-octet items: two
 *            native 64-bit halves, IPv4 mapped into ::ffff:0:0/96)
 *   level1   uint16 entries for the top s1 bits of an IPv4 address; RANGE_POINTER (0x8000) set:
 *            the low 15 bits pick a row of level2
 *   level2   uint16 rows of 2^s2 entries for the next s2 bits; RANGE_POINTER set: the cell is split
 *            by an interval boundary, and the value is the one of the last interval start
 *            (`starts`, uint32, sorted) at or below the address (`values`, uint16)
 *   out      uint16, n items: each IPv4 address's value (0 for the others)
 *   other    uint8, n items: 1 where the address is not IPv4 (the caller looks those up in
 *            the IPv6 table)
 *
 * collector.classify.ranges.RangeTable.lookup does the same in NumPy (a gather per level, a
 * searchsorted for split cells); here one pass, without first copying the address words out.
 */
#define LEARNED_BLOCK 64

static PyObject *lookup4(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "lookup4(addr, level1, level2, starts, values, s1, s2, out, other)");
        return NULL;
    }
    int s1 = (int)PyLong_AsLong(args[5]), s2 = (int)PyLong_AsLong(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (s1 < 1 || s2 < 0 || s1 + s2 > 32) {
        PyErr_SetString(PyExc_ValueError, "strides must satisfy 1 <= s1, 0 <= s2, s1 + s2 <= 32");
        return NULL;
    }
    Views v = {.taken = 0};
    PyObject *result = NULL;
    Py_buffer *b[7];
    if (!(b[0] = take_raw(&v, args[0], 0)))
        goto done;
    if (b[0]->itemsize != 16 || b[0]->len % 16) {
        PyErr_SetString(PyExc_TypeError, "addr: 16-octet items expected");
        goto done;
    }
    Py_ssize_t n = b[0]->len / 16;
    /* level1, level2, starts, values, out, other: item sizes 2, 2, 4, 2, 2, 1 */
    static const int sizes[6] = {2, 2, 4, 2, 2, 1};
    static const Py_ssize_t argi[6] = {1, 2, 3, 4, 7, 8};
    for (int j = 0; j < 6; j++) { /* level2 is two-dimensional: any buffer of 2-octet items */
        b[1 + j] = j == 1 ? take_raw(&v, args[argi[j]], 0) : take(&v, args[argi[j]], j >= 4, j >= 4 ? n : 0, sizes[j]);
        if (!b[1 + j])
            goto done;
    }
    if (b[2]->itemsize != 2) {
        PyErr_SetString(PyExc_TypeError, "level2: 2-octet items expected");
        goto done;
    }
    const uint16_t *level1 = b[1]->buf, *level2 = b[2]->buf, *values = b[4]->buf;
    const uint32_t *starts = b[3]->buf;
    uint16_t *out = b[5]->buf;
    uint8_t *other = b[6]->buf;
    Py_ssize_t n1 = b[1]->shape[0], n2 = b[2]->len / 2, ns = b[3]->shape[0];
    if (n1 != ((Py_ssize_t)1 << s1) || ns < 1 || b[4]->shape[0] != ns) {
        PyErr_SetString(PyExc_ValueError, "table or output sizes do not match");
        goto done;
    }
    Table t = {.level1 = level1, .level2 = level2, .values = values, .starts4 = starts, .rows2 = n2 >> s2,
               .ns = ns, .s2 = s2, .shift1 = 32 - s1, .shift2 = 32 - s1 - s2,
               .mask2 = ((uint64_t)1 << s2) - 1};
    Py_ssize_t others = 0;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    const uint64_t *a = b[0]->buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t hi = a[2 * i], lo = a[2 * i + 1];
        int v6 = !is_v4(hi, lo);
        other[i] = (uint8_t)v6;
        others += v6;
        out[i] = v6 ? 0 : range4(&t, (uint32_t)lo, &bad);
    }
    Py_END_ALLOW_THREADS
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "level1 points past level2");
        goto done;
    }
    result = PyLong_FromSsize_t(others);
done:
    release(&v);
    return result;
}

/* learned(src, dst, src_skip, dst_skip, keys, entries, filter, now, seed, mix, spread, shift,
 *         fshift, rounds, out_src, out_dst, hits) -> k
 *
 * The lookup of collector.dns.table.View (addresses learned from DNS answers) for both
 * addresses of n flows in one pass:
 *
 *   src, dst n addresses each as collector.netflow.batch.ADDR holds them (16-octet items)
 *   src_skip, dst_skip
 *            None, or n one-octet items: a non-zero item's address is not looked up (its out
 *            item is 0): the classifier passes its internal-address masks
 *   keys     uint32 fingerprints of a table of 2^k slots (0 = empty)
 *   entries  one 32-octet Learned record per slot (collector.dns.table.ENTRY)
 *   filter   uint64 words, a power of two of them: the prefilter. An address can be in the
 *            table only where both its bits are set in its word: word (g >> fshift) & (words
 *            - 1), bits fp & 63 and (fp >> 6) & 63, g = key * spread. A quarter of a megabyte
 *            for 100k addresses: it stays in the CPU's caches, and most addresses (not
 *            learned) are settled by it without touching the table's megabytes.
 *   seed, mix, spread, shift
 *            the hash, as collector.dns.table._hash computes it: a = (hi ^ seed) * mix,
 *            a ^= a >> 32, a *= spread, key = a ^ lo; fingerprint fp = its low 32 bits (0 taken
 *            as 1), home slot = (key * spread) >> shift
 *   rounds   slots probed at most from the home slot (linear probing)
 *   out_src, out_dst
 *            writable uint16, n items each: the service of the slot where the fingerprint,
 *            both halves and expires > now match, else 0
 *   hits     writable int64, n items: the rows where either out item is non-zero, in order;
 *            k of them (the return value)
 *
 * Like View.lookup_pair, the probe of an address stops at the slot holding it or at an empty
 * slot; a slot of another address with the same fingerprint sends it on to the next slot.
 * Slots and words are masked to the table: no argument makes it read outside the buffers.
 */
typedef struct {
    uint64_t hi, lo;
    double expires;
    uint16_t service;
    uint8_t pad[6];
} Learned;

_Static_assert(sizeof(Learned) == 32, "collector.dns.table.ENTRY is 32 octets");

/* Addresses past the prefilter, waiting for their probes (learned()). */
typedef struct {
    int n;
    Py_ssize_t row[LEARNED_BLOCK];
    int side[LEARNED_BLOCK];
    uint64_t hi[LEARNED_BLOCK], lo[LEARNED_BLOCK];
    size_t home[LEARNED_BLOCK], at[LEARNED_BLOCK]; /* at: the slot holding the fingerprint, or SIZE_MAX */
    uint32_t fp[LEARNED_BLOCK];
} Candidates;

static void probe_learned(Candidates *c, const uint32_t *keys, const Learned *entries, size_t mask,
                          Py_ssize_t rounds, double now, uint16_t *const out[2], int64_t *hits, Py_ssize_t *k)
{
    int later[LEARNED_BLOCK], nl = 0;
    for (int b = 0; b < c->n; b++) {
        size_t s = c->home[b];
        uint32_t key = keys[s];
        int mine = (key == c->fp[b]) & (rounds > 0);
        c->at[b] = mine ? s : SIZE_MAX;
        if (mine)
            __builtin_prefetch(&entries[s]);
        later[nl] = b;
        nl += !mine & (key != 0) & (rounds > 1);
    }
    for (int j = 0; j < nl; j++) { /* the few whose home slot holds another entry */
        int b = later[j];
        for (Py_ssize_t r = 1; r < rounds; r++) {
            size_t s = (c->home[b] + (size_t)r) & mask;
            uint32_t key = keys[s];
            if (key == c->fp[b]) {
                c->at[b] = s;
                __builtin_prefetch(&entries[s]);
                break;
            }
            if (!key)
                break;
        }
    }
    for (int b = 0; b < c->n; b++) {
        if (c->at[b] == SIZE_MAX)
            continue;
        const Learned *e = &entries[c->at[b]];
        if (e->hi != c->hi[b] || e->lo != c->lo[b]) { /* another address with this fingerprint: probe on */
            e = NULL;
            for (Py_ssize_t r = (Py_ssize_t)((c->at[b] - c->home[b]) & mask) + 1; r < rounds; r++) {
                size_t s = (c->home[b] + (size_t)r) & mask;
                uint32_t key = keys[s];
                if (!key)
                    break;
                if (key == c->fp[b] && entries[s].hi == c->hi[b] && entries[s].lo == c->lo[b]) {
                    e = &entries[s];
                    break;
                }
            }
            if (!e)
                continue;
        }
        if (e->expires > now && e->service) {
            out[c->side[b]][c->row[b]] = e->service;
            /* candidates come in row order (a row's sides one after the other): the rows
             * matched, in order, with no pass over every row */
            if (!*k || hits[*k - 1] != c->row[b])
                hits[(*k)++] = c->row[b];
        }
    }
}

/* The hash and the prefilter of learned(), for one address. */
typedef struct {
    uint64_t seed, mix, spread;
    const uint64_t *filter;
    long fshift;
    size_t fmask;
} LearnedHash;

/* Whether the address passes the prefilter (both its bits set in its word); its fingerprint
 * and g = key * spread (the home slot's top bits) for the probes. */
static inline int learned_filter(uint64_t hi, uint64_t lo, const LearnedHash *h, uint32_t *fp, uint64_t *g)
{
    uint64_t key = (hi ^ h->seed) * h->mix;
    key ^= key >> 32;
    key = key * h->spread ^ lo;
    uint32_t f = (uint32_t)key;
    f += !f; /* 0 marks an empty slot: taken as 1 */
    *fp = f;
    *g = key * h->spread;
    uint64_t bits = (1ULL << (f & 63)) | (1ULL << ((f >> 6) & 63));
    return (h->filter[(size_t)(*g >> h->fshift) & h->fmask] & bits) == bits;
}

static inline void learned_candidate(Candidates *c, Py_ssize_t row, int side, uint64_t hi, uint64_t lo,
                                     uint32_t fp, uint64_t g, long shift, size_t mask, const uint32_t *keys)
{
    int b = c->n++;
    c->row[b] = row;
    c->side[b] = side;
    c->hi[b] = hi;
    c->lo[b] = lo;
    c->fp[b] = fp;
    c->home[b] = (size_t)(g >> shift) & mask;
    __builtin_prefetch(&keys[c->home[b]]);
}

static PyObject *learned(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 17) {
        PyErr_SetString(PyExc_TypeError, "learned(src, dst, src_skip, dst_skip, keys, entries, filter, now, seed, "
                                         "mix, spread, shift, fshift, rounds, out_src, out_dst, hits)");
        return NULL;
    }
    double now = PyFloat_AsDouble(args[7]);
    uint64_t seed = PyLong_AsUnsignedLongLongMask(args[8]), mixc = PyLong_AsUnsignedLongLongMask(args[9]),
             spread = PyLong_AsUnsignedLongLongMask(args[10]);
    long shift = PyLong_AsLong(args[11]), fshift = PyLong_AsLong(args[12]);
    Py_ssize_t rounds = PyLong_AsSsize_t(args[13]);
    if (PyErr_Occurred())
        return NULL;
    if (shift < 1 || shift > 63 || fshift < 1 || fshift > 63 || rounds < 0) {
        PyErr_SetString(PyExc_ValueError, "shift and fshift in [1, 63], rounds >= 0");
        return NULL;
    }
    Views v = {.taken = 0};
    PyObject *result = NULL;
    Py_buffer *ab[2], *sk[2] = {NULL, NULL}, *kb, *eb, *fb, *ob[2], *hb;
    Py_ssize_t n = 0;
    for (int side = 0; side < 2; side++) {
        if (!(ab[side] = take_raw(&v, args[side], 0)))
            goto done;
        if (ab[side]->itemsize != 16 || ab[side]->len % 16 || (uintptr_t)ab[side]->buf % 8) {
            PyErr_SetString(PyExc_TypeError, "src, dst: aligned 16-octet items expected");
            goto done;
        }
    }
    n = ab[0]->len / 16;
    if (ab[1]->len / 16 != n) {
        PyErr_SetString(PyExc_ValueError, "src and dst differ in length");
        goto done;
    }
    for (int side = 0; side < 2; side++)
        if (args[2 + side] != Py_None) {
            if (!(sk[side] = take_raw(&v, args[2 + side], 0)))
                goto done;
            if (sk[side]->itemsize != 1 || sk[side]->len < n) {
                PyErr_SetString(PyExc_ValueError, "src_skip, dst_skip: n one-octet items expected");
                goto done;
            }
        }
    if (!(kb = take(&v, args[4], 0, 1, 4)) || !(fb = take(&v, args[6], 0, 1, 8)) ||
        !(ob[0] = take(&v, args[14], 1, n, 2)) || !(ob[1] = take(&v, args[15], 1, n, 2)) ||
        !(hb = take(&v, args[16], 1, n, 8)))
        goto done;
    Py_ssize_t size = kb->shape[0], words = fb->shape[0];
    if ((size & (size - 1)) || (words & (words - 1))) {
        PyErr_SetString(PyExc_ValueError, "keys, filter: a power of two items expected");
        goto done;
    }
    if (!(eb = take_raw(&v, args[5], 0)))
        goto done;
    if (eb->itemsize != (Py_ssize_t)sizeof(Learned) || eb->len < size * eb->itemsize || (uintptr_t)eb->buf % 8) {
        PyErr_SetString(PyExc_TypeError, "entries: one aligned 32-octet record per slot expected");
        goto done;
    }
    Py_ssize_t k = 0;
    Py_BEGIN_ALLOW_THREADS
    const uint64_t *a[2] = {ab[0]->buf, ab[1]->buf};
    const uint8_t *skip[2] = {sk[0] ? sk[0]->buf : NULL, sk[1] ? sk[1]->buf : NULL};
    const uint32_t *keys = kb->buf;
    const uint64_t *filter = fb->buf;
    const Learned *entries = eb->buf;
    uint16_t *out[2] = {ob[0]->buf, ob[1]->buf};
    int64_t *hits = hb->buf;
    size_t mask = (size_t)size - 1, fmask = (size_t)words - 1;
    const LearnedHash h = {seed, mixc, spread, filter, fshift, fmask};
    /* One pass of the addresses to look up through the prefilter (in cache); the few that
     * pass are hashed to their home slots, prefetched, and gathered LEARNED_BLOCK at a time for
     * three passes: their fingerprints probed and the entry prefetched where a slot holds one's
     * own; those compared, and the rows matched noted as they are found (in row order). The
     * table is megabytes read at random: a block at a time, its cache misses overlap instead of
     * coming one after another. */
    Candidates c;
    c.n = 0;
    static const uint8_t none[1] = {0};
    const uint8_t *sk0 = skip[0] ? skip[0] : none, *sk1 = skip[1] ? skip[1] : none;
    size_t st0 = skip[0] ? 1 : 0, st1 = skip[1] ? 1 : 0;
    memset(out[0], 0, (size_t)n * sizeof(uint16_t));
    memset(out[1], 0, (size_t)n * sizeof(uint16_t));
    for (Py_ssize_t i = 0; i < n; i++, sk0 += st0, sk1 += st1) {
        int s0 = *sk0 != 0, s1 = *sk1 != 0;
        uint32_t fp;
        uint64_t g;
        if (s0 | s1) {
            /* The usual flow, one internal host: one side to look up at most. Which side
             * follows no pattern in real traffic, so it is picked by indexing, not by a branch
             * (a mispredicted branch cost more than the rest of the row); a row with both
             * sides skipped is hashed all the same and its verdict dropped. */
            int side = s0;
            const uint64_t *at = a[side] + 2 * i;
            if (__builtin_expect(learned_filter(at[0], at[1], &h, &fp, &g) & !(s0 & s1), 0)) {
                learned_candidate(&c, i, side, at[0], at[1], fp, g, shift, mask, keys);
                if (c.n > LEARNED_BLOCK - 2) {
                    probe_learned(&c, keys, entries, mask, rounds, now, out, hits, &k);
                    c.n = 0;
                }
            }
        } else { /* both sides external (or no masks): both looked up */
            for (int side = 0; side < 2; side++) {
                const uint64_t *at = a[side] + 2 * i;
                if (__builtin_expect(learned_filter(at[0], at[1], &h, &fp, &g), 0))
                    learned_candidate(&c, i, side, at[0], at[1], fp, g, shift, mask, keys);
            }
            if (c.n > LEARNED_BLOCK - 2) {
                probe_learned(&c, keys, entries, mask, rounds, now, out, hits, &k);
                c.n = 0;
            }
        }
    }
    probe_learned(&c, keys, entries, mask, rounds, now, out, hits, &k);
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(k);
done:
    release(&v);
    return result;
}

/* walk(buf, starts, ends, max_sets, d, pos, sid, size, more) -> sets
 *
 * The set walk of the decoder's bulk path (collector/netflow/bulk.py) for many datagrams:
 * datagram j's sets from offset starts[j] while 4 octets remain before ends[j] (int64, both
 * inside buf), each set header a big-endian (id, length) pair. Every set met is written, in
 * datagram and position order, to d (j), pos, sid and size (int64 buffers of
 * len(starts) * max_sets items). A set whose length is below 4 or runs past the datagram's end
 * ends that datagram's walk (it is written: the caller judges it); so does the max_sets-th set,
 * and then more[j] says whether another set would follow (uint8, one per datagram).
 */
static PyObject *walk(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError, "walk(buf, starts, ends, max_sets, d, pos, sid, size, more)");
        return NULL;
    }
    Py_ssize_t max_sets = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (max_sets < 1) {
        PyErr_SetString(PyExc_ValueError, "max_sets >= 1");
        return NULL;
    }
    Views v = {.taken = 0};
    PyObject *result = NULL;
    Py_buffer *b[8];
    if (!(b[0] = take_raw(&v, args[0], 0)) || !(b[1] = take(&v, args[1], 0, 0, 8)))
        goto done;
    Py_ssize_t n = b[1]->shape[0];
    if (!(b[2] = take(&v, args[2], 0, n, 8)))
        goto done;
    for (int j = 0; j < 4; j++) /* d, pos, sid, size: room for max_sets sets of every datagram */
        if (!(b[3 + j] = take(&v, args[4 + j], 1, n * max_sets, 8)))
            goto done;
    if (!(b[7] = take(&v, args[8], 1, n, 1)))
        goto done;
    const int64_t *starts = b[1]->buf, *ends = b[2]->buf;
    for (Py_ssize_t j = 0; j < n; j++)
        if (starts[j] < 0 || ends[j] > b[0]->len || starts[j] > ends[j]) {
            PyErr_Format(PyExc_ValueError, "datagram %zd: [%lld, %lld) outside the buffer", j,
                         (long long)starts[j], (long long)ends[j]);
            goto done;
        }
    Py_ssize_t m = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *u = b[0]->buf;
    int64_t *od = b[3]->buf, *op = b[4]->buf, *oi = b[5]->buf, *oz = b[6]->buf;
    uint8_t *more = b[7]->buf;
    for (Py_ssize_t j = 0; j < n; j++) {
        int64_t p = starts[j], e = ends[j];
        Py_ssize_t k = 0;
        more[j] = 0;
        while (e - p >= 4) {
            if (k == max_sets) {
                more[j] = 1;
                break;
            }
            int64_t id = (int64_t)u[p] << 8 | u[p + 1], len = (int64_t)u[p + 2] << 8 | u[p + 3];
            od[m] = j;
            op[m] = p;
            oi[m] = id;
            oz[m] = len;
            m++;
            k++;
            if (len < 4 || p + len > e)
                break;
            p += len;
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(m);
done:
    release(&v);
    return result;
}

/* Message headers of a batch, one pass (collector/netflow/bulk.py; its NumPy way is the same):
 *
 * headers(buf, off, lens, src, version, count, export, seq, uptime, rate5, end, key, ok)
 *
 *   buf      the batch's datagrams; the 24 octets at each offset must lie in it (the receive
 *            arena's slots, or the joined datagrams' padding), else ValueError
 *   off, lens int64 n: where each datagram starts in buf, and its octets
 *   src      int64 n: each datagram's source index (below 2^22), or None: all from one source
 *   out, int64 n each: version; count (octets 2-3: v5 records, IPFIX length, v9 count); seq;
 *            uptime (ms, 0 for IPFIX); rate5 (a v5 header's 14-bit sampling interval, 0 as 1);
 *            end (where the message ends: IPFIX by its length field); key (the session key + 1,
 *            src << 40 | version << 32 | domain, the domain being v5's engine type and id, v9's
 *            source id or IPFIX's observation domain; 0 for a datagram too short for its
 *            version's header or of another version)
 *   export   out, float64 n: export time, UNIX seconds (v5 with its nanoseconds)
 *   ok       out, uint8 n: the header is whole and its count fits (IPFIX: 16 <= length <= the
 *            datagram; v5: 24 + 48 records <= the datagram)
 */
static PyObject *headers(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "headers(buf, off, lens, src, version, count, export, seq, uptime, rate5, end, "
                                         "key, ok)");
        return NULL;
    }
    Views v = {.taken = 0};
    PyObject *result = NULL;
    Py_buffer *b[13];
    if (!(b[0] = take_raw(&v, args[0], 0)) || !(b[1] = take(&v, args[1], 0, 0, 8)))
        goto done;
    Py_ssize_t n = b[1]->shape[0];
    if (!(b[2] = take(&v, args[2], 0, n, 8)))
        goto done;
    b[3] = NULL;
    if (args[3] != Py_None && !(b[3] = take(&v, args[3], 0, n, 8)))
        goto done;
    for (int j = 4; j < 12; j++) /* export (6) float64, the others int64 */
        if (!(b[j] = j == 6 ? take_raw(&v, args[j], 1) : take(&v, args[j], 1, n, 8)))
            goto done;
    if (!(b[12] = take_raw(&v, args[12], 1)))
        goto done;
    if (b[6]->len != n * 8 || b[6]->itemsize != 8 || b[12]->len != n || b[12]->itemsize != 1) {
        PyErr_SetString(PyExc_ValueError, "headers: export needs n float64, ok n octets");
        goto done;
    }
    const int64_t *off = b[1]->buf, *lens = b[2]->buf, *src = b[3] ? b[3]->buf : NULL;
    for (Py_ssize_t j = 0; j < n; j++)
        if (off[j] < 0 || off[j] + 24 > b[0]->len || (src && (src[j] < 0 || src[j] >= (1 << 22)))) {
            PyErr_Format(PyExc_ValueError, "datagram %zd: header at %lld outside the buffer, or source %lld",
                         j, (long long)off[j], src ? (long long)src[j] : 0LL);
            goto done;
        }
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *u = b[0]->buf;
    int64_t *version = b[4]->buf, *count = b[5]->buf, *seq = b[7]->buf, *uptime = b[8]->buf, *rate5 = b[9]->buf,
            *end = b[10]->buf, *key = b[11]->buf;
    double *export = b[6]->buf;
    uint8_t *ok = b[12]->buf;
    for (Py_ssize_t j = 0; j < n; j++) {
        const unsigned char *p = u + off[j];
        int64_t ver = (int64_t)be(p, 2), f2 = (int64_t)be(p + 2, 2), f4 = (int64_t)be(p + 4, 4),
                f8 = (int64_t)be(p + 8, 4), f12 = (int64_t)be(p + 12, 4), f16 = (int64_t)be(p + 16, 4);
        int64_t len = lens[j], dom;
        int whole;
        version[j] = ver;
        count[j] = f2;
        if (ver == 10) {
            whole = len >= 16;
            dom = f12;
            export[j] = (double)f4;
            seq[j] = f8;
            uptime[j] = 0;
            end[j] = off[j] + f2;
            ok[j] = whole && f2 >= 16 && f2 <= len;
        } else if (ver == 5) {
            whole = len >= 24;
            dom = (int64_t)be(p + 20, 2);
            double ns = (double)f12 * 1e-9;
            export[j] = (double)f8 + ns;
            seq[j] = f16;
            uptime[j] = f4;
            end[j] = off[j] + len;
            ok[j] = whole && 24 + 48 * f2 <= len;
        } else {
            whole = ver == 9 && len >= 20;
            dom = f16;
            export[j] = (double)f8;
            seq[j] = f12;
            uptime[j] = f4;
            end[j] = off[j] + len;
            ok[j] = whole;
        }
        rate5[j] = (int64_t)(be(p + 22, 2) & 0x3FFF);
        if (!rate5[j])
            rate5[j] = 1;
        key[j] = whole ? ((src ? src[j] : 0) << 40 | ver << 32 | dom) + 1 : 0;
    }
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    release(&v);
    return result;
}

/* _classify.c */
PyObject *imflow_classify(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* _aggregate.c */
PyObject *imflow_bins(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *imflow_totals(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
/* _audit.c */
PyObject *imflow_audit_spans(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *imflow_audit_pack(PyObject *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *imflow_audit_select(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

static PyMethodDef methods[] = {
    {"classify", (PyCFunction)(void (*)(void))imflow_classify, METH_FASTCALL,
     "classify(src, dst, sport, dport, proto, table4, table6, proto_offset, owned, n_services, service, method, "
     "src_int, dst_int, service_is_src, side_known, host, has_host, host_is_src, rare) -> rows left to the caller "
     "(see _classify.c)"},
    {"bins", (PyCFunction)(void (*)(void))imflow_bins, METH_FASTCALL,
     "bins(end, lo, hi, now, base, method, has_host, violations, host, service, exporters, bytes, packets, in_if, "
     "out_if, seed) -> (clamped, host groups, k, interface groups, j), or None (see _aggregate.c)"},
    {"totals", (PyCFunction)(void (*)(void))imflow_totals, METH_FASTCALL,
     "totals(exporter, service, flag, bytes, packets, flows, exporter_totals, method_totals) -> None: a batch's "
     "host groups added into the running totals (see _aggregate.c)"},
    {"learned", (PyCFunction)(void (*)(void))learned, METH_FASTCALL,
     "learned(src, dst, src_skip, dst_skip, keys, entries, filter, now, seed, mix, spread, shift, fshift, rounds, "
     "out_src, out_dst, hits) -> hit rows (see the module source)"},
    {"headers", (PyCFunction)(void (*)(void))headers, METH_FASTCALL,
     "headers(buf, off, lens, src, version, count, export, seq, uptime, rate5, end, key, ok) -> None (see the module "
     "source)"},
    {"walk", (PyCFunction)(void (*)(void))walk, METH_FASTCALL,
     "walk(buf, starts, ends, max_sets, d, pos, sid, size, more) -> sets (see the module source)"},
    {"lookup4", (PyCFunction)(void (*)(void))lookup4, METH_FASTCALL,
     "lookup4(addr, level1, level2, starts, values, s1, s2, out, other) -> rows not IPv4 (see the module source)"},
    {"audit_spans", (PyCFunction)(void (*)(void))imflow_audit_spans, METH_FASTCALL,
     "audit_spans(cols) -> 20 (least, greatest, count) of the stored columns (see _audit.c)"},
    {"audit_pack", (PyCFunction)(void (*)(void))imflow_audit_pack, METH_FASTCALL,
     "audit_pack(cols, bases, widths, counts, head) -> the encoded chunk (see _audit.c)"},
    {"audit_select", (PyCFunction)(void (*)(void))imflow_audit_select, METH_FASTCALL,
     "audit_select(watch, service, out) -> rows kept (see _audit.c)"},
    {"audit_fill", (PyCFunction)(void (*)(void))audit_fill, METH_FASTCALL,
     "audit_fill(idx, now, max_age, max_skew, exporter, cols, outs) -> None (see the module source)"},
    {"fields", (PyCFunction)(void (*)(void))fields, METH_FASTCALL,
     "fields(buf, starts, counts, record_len, per_run, specs) -> None (see the module source)"},
    {"group_sums", (PyCFunction)(void (*)(void))group_sums, METH_FASTCALL,
     "group_sums(keys, values, first, sums, counts, seed) -> groups, or -1 (see the module source)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "collector._kernels",
                                    "Compiled kernels of the hot path (optional; NumPy does the same without them).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
