/* The classifier's common case in one pass (collector/classify/classifier.py, docs/design.md
 * §4): each address in at most a single-service prefix, not both in one. The NumPy way takes
 * some thirty passes over the batch and their temporaries for the same rows; here each row is
 * read once and its answer written once. Rows outside the common case are only listed, and
 * the caller classifies them in NumPy, so this file holds no tie rule but the owned-port one.
 *
 * classify(src, dst, sport, dport, proto, table4, table6, proto_offset, owned, n_services,
 *          service, method, src_int, dst_int, service_is_src, side_known, host, has_host,
 *          host_is_src, rare) -> k
 *
 *   src, dst     n addresses as collector.netflow.batch.ADDR holds them (16-octet items: two
 *                native 64-bit halves, IPv4 mapped into ::ffff:0:0/96)
 *   sport, dport n uint16 ports; proto n uint8 protocols
 *   table4       the IPv4 range table (collector.classify.ranges.RangeTable) as
 *                (level1, level2, starts, values, s1, s2), as lookup4 in _kernels.c takes it
 *   table6       the IPv6 one as (level1, level2, starts_hi, starts_lo, values, s1, s2): levels
 *                indexed by the top s1, then s2 bits of `hi`; split cells by the last 128-bit
 *                start at or below the address (uint64 halves)
 *   proto_offset 256 int64: the start of each protocol's row in the flat owned-port table
 *                (row * 65536, each <= 3 * 65536)
 *   owned        (top, blocks): the service owning each (protocol row, port), else 0, in two
 *                levels (classifier._port_blocks): top, 4 * 256 uint16, the block of each
 *                (row, port >> 8); blocks, k * 256 uint16, the blocks' ports. A flat 512 KiB
 *                table missed the caches on most flows' ephemeral ports; these are some 20 KiB
 *   n_services   range-table groups at or above it are not one service (identical prefixes
 *                of several, ASN groups)
 *   service      out, n uint16; method out, n uint8 (classifier.METHODS: 0, 1 port, 2 prefix)
 *   src_int .. side_known  out, n uint8 each (0 or 1): the state the later steps (learned
 *                addresses, application ids) patch, and the host is derived from
 *   host         out, n 16-octet items; has_host, host_is_src out, n uint8 each
 *   rare         out, n int32: the first k items are the rows left to the caller (a group of
 *                several services or an ASN on a side, a prefix on both sides), in row order;
 *                their other outputs are unspecified
 *
 * Every output is the one Classifier.classify gives before learned addresses and application
 * ids are applied (and, as no later step ran, after: method is 0 exactly where service is).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_kernels.h"

#define C_POINTER RANGE_POINTER
#define INTERNAL_BIT 0x4000
#define GROUP_MASK (INTERNAL_BIT - 1)
#define EPHEMERAL_MIN 32768
#define PORTS 65536
#define M_PORT 1
#define M_PREFIX 2
#define N_BUFS 27 /* the buffers of a call: 5 columns, 4 + 5 table arrays, 3 port tables, 10 outputs */

static inline uint16_t range6(const Table *t, uint64_t ahi, uint64_t alo, int *bad)
{
    uint16_t v = cell(t, ahi, bad);
    if (!(v & C_POINTER))
        return v;
    Py_ssize_t lo = 0, hi = t->ns; /* the last 128-bit start <= (ahi, alo) */
    while (hi - lo > 1) {
        Py_ssize_t mid = (lo + hi) / 2;
        uint64_t sh = t->starts_hi[mid];
        if (sh < ahi || (sh == ahi && t->starts_lo[mid] <= alo))
            lo = mid;
        else
            hi = mid;
    }
    return t->values[lo];
}

static __attribute__((noinline)) uint16_t range_slow(const Table *t4, const Table *t6, uint64_t hi, uint64_t lo,
                                                     int *bad)
{
    if (is_v4(hi, lo))
        return range4(t4, (uint32_t)lo, bad);
    return range6(t6, hi, lo, bad);
}

/* an IPv4 address in a whole level-1 cell (the usual case) inline; the rest by a call */
static inline __attribute__((always_inline)) uint16_t range(const Table *t4, const Table *t6, uint64_t hi,
                                                            uint64_t lo, int *bad)
{
    if (is_v4(hi, lo)) {
        uint16_t v = t4->level1[(uint32_t)lo >> t4->shift1];
        if (!(v & RANGE_POINTER))
            return v;
    }
    return range_slow(t4, t6, hi, lo, bad);
}

/* A range table from its tuple (see the top of the file): 0, or -1 with an exception set. */
static int table(Table *t, Held *h, PyObject *spec, int width)
{
    Py_ssize_t want = width == 32 ? 6 : 7;
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != want) {
        PyErr_Format(PyExc_TypeError, "table%d: a tuple of %zd items expected", width == 32 ? 4 : 6, want);
        return -1;
    }
    int s1 = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, want - 2));
    int s2 = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, want - 1));
    if (PyErr_Occurred())
        return -1;
    int top = width == 32 ? 32 : 64; /* IPv6 levels index `hi` */
    if (s1 < 1 || s2 < 0 || s1 + s2 > top || s2 > 30) {
        PyErr_SetString(PyExc_ValueError, "strides must satisfy 1 <= s1, 0 <= s2, s1 + s2 <= the key width");
        return -1;
    }
    memset(t, 0, sizeof *t);
    if (!(t->level1 = held_buffer(h, PyTuple_GET_ITEM(spec, 0), 0, 2, (Py_ssize_t)1 << s1, "level1"))
        || !(t->level2 = held_buffer(h, PyTuple_GET_ITEM(spec, 1), 0, 2, -1, "level2")))
        return -1;
    t->rows2 = (h->b[h->taken - 1].len / 2) >> s2;
    if (width == 32) {
        if (!(t->starts4 = held_buffer(h, PyTuple_GET_ITEM(spec, 2), 0, 4, -1, "starts")))
            return -1;
        t->ns = h->b[h->taken - 1].len / 4;
    } else {
        if (!(t->starts_hi = held_buffer(h, PyTuple_GET_ITEM(spec, 2), 0, 8, -1, "starts_hi")))
            return -1;
        t->ns = h->b[h->taken - 1].len / 8;
        if (!(t->starts_lo = held_buffer(h, PyTuple_GET_ITEM(spec, 3), 0, 8, t->ns, "starts_lo")))
            return -1;
    }
    if (!(t->values = held_buffer(h, PyTuple_GET_ITEM(spec, want - 3), 0, 2, t->ns, "values")))
        return -1;
    if (t->ns < 1) {
        PyErr_SetString(PyExc_ValueError, "starts: at least one interval expected");
        return -1;
    }
    t->s2 = s2;
    t->shift1 = top - s1;
    t->shift2 = top - s1 - s2;
    t->mask2 = ((uint64_t)1 << s2) - 1;
    return 0;
}

/* The owned-port table's two levels from (top, blocks): 0, or -1 with an exception set. */
static int port_blocks(Held *h, PyObject *spec, const uint16_t **top, const uint16_t **blocks, Py_ssize_t *n)
{
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2) {
        PyErr_SetString(PyExc_TypeError, "owned: a tuple (top, blocks) expected");
        return -1;
    }
    if (!(*top = held_buffer(h, PyTuple_GET_ITEM(spec, 0), 0, 2, 4 * 256, "owned top"))
        || !(*blocks = held_buffer(h, PyTuple_GET_ITEM(spec, 1), 0, 2, -1, "owned blocks")))
        return -1;
    *n = h->b[h->taken - 1].len / 2 / 256;
    if (*n * 256 * 2 != h->b[h->taken - 1].len || *n < 1) {
        PyErr_SetString(PyExc_ValueError, "owned blocks: a whole number of 256-port blocks, at least one");
        return -1;
    }
    for (int i = 0; i < 4 * 256; i++)
        if ((*top)[i] >= *n) {
            PyErr_SetString(PyExc_ValueError, "owned top: a block past the blocks");
            return -1;
        }
    return 0;
}

PyObject *imflow_classify(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 20) {
        PyErr_SetString(PyExc_TypeError, "classify takes 20 arguments (see collector/kernels/_classify.c)");
        return NULL;
    }
    long long n_services = PyLong_AsLongLong(args[9]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer bufs[N_BUFS];
    Held h = {bufs, 0, N_BUFS, "classify"};
    PyObject *result = NULL;
    Py_ssize_t n = buffer_items(args[0], 16);
    if (n < 0)
        return NULL;
    if (n > INT32_MAX) { /* rows are listed as int32 */
        PyErr_SetString(PyExc_ValueError, "classify: at most 2^31 - 1 rows a call");
        return NULL;
    }
    Table t4, t6;
    const uint64_t *src = held_buffer(&h, args[0], 0, 16, n, "src"), *dst;
    const uint16_t *sport, *dport, *top, *blocks;
    Py_ssize_t n_blocks = 0;
    const uint8_t *proto;
    const int64_t *offset;
    uint16_t *service;
    uint8_t *method, *src_int, *dst_int, *is_src, *known, *has_host, *host_is_src;
    uint64_t *host;
    int32_t *rare;
    if (!src || !(dst = held_buffer(&h, args[1], 0, 16, n, "dst")) || !(sport = held_buffer(&h, args[2], 0, 2, n, "sport"))
        || !(dport = held_buffer(&h, args[3], 0, 2, n, "dport")) || !(proto = held_buffer(&h, args[4], 0, 1, n, "proto"))
        || table(&t4, &h, args[5], 32) < 0 || table(&t6, &h, args[6], 128) < 0
        || !(offset = held_buffer(&h, args[7], 0, 8, 256, "proto_offset"))
        || port_blocks(&h, args[8], &top, &blocks, &n_blocks) < 0
        || !(service = held_buffer(&h, args[10], 1, 2, n, "service"))
        || !(method = held_buffer(&h, args[11], 1, 1, n, "method"))
        || !(src_int = held_buffer(&h, args[12], 1, 1, n, "src_int"))
        || !(dst_int = held_buffer(&h, args[13], 1, 1, n, "dst_int"))
        || !(is_src = held_buffer(&h, args[14], 1, 1, n, "service_is_src"))
        || !(known = held_buffer(&h, args[15], 1, 1, n, "side_known"))
        || !(host = held_buffer(&h, args[16], 1, 16, n, "host"))
        || !(has_host = held_buffer(&h, args[17], 1, 1, n, "has_host"))
        || !(host_is_src = held_buffer(&h, args[18], 1, 1, n, "host_is_src"))
        || !(rare = held_buffer(&h, args[19], 1, 4, n, "rare")))
        goto done;
    for (int p = 0; p < 256; p++)
        if (offset[p] < 0 || offset[p] > 3 * PORTS) {
            PyErr_SetString(PyExc_ValueError, "proto_offset: every offset within 0 .. 3 * 65536");
            goto done;
        }
    Py_ssize_t m = 0;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS
    uint64_t ns_groups = n_services < 0 ? 0 : (uint64_t)n_services;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t shi = src[2 * i], slo = src[2 * i + 1], dhi = dst[2 * i], dlo = dst[2 * i + 1];
        uint16_t sv = range(&t4, &t6, shi, slo, &bad), dv = range(&t4, &t6, dhi, dlo, &bad);
        unsigned sg = sv & GROUP_MASK, dg = dv & GROUP_MASK;
        /* one branch, taken for a few rows at most; the choices below are made without
         * branches (a row's sides are data the CPU cannot predict) */
        if ((sg >= ns_groups) | (dg >= ns_groups) | ((sg != 0) & (dg != 0))) {
            rare[m++] = (int32_t)i; /* several services or an ASN on a side, or a prefix on both */
            continue;
        }
        int si = (sv >> 14) & 1, di = (dv >> 14) & 1;
        unsigned sp = sport[i], dp = dport[i];
        const uint16_t *row = top + (offset[proto[i]] >> 8);
        unsigned so = blocks[((size_t)row[sp >> 8] << 8) | (sp & 255)];
        unsigned d_o = blocks[((size_t)row[dp >> 8] << 8) | (dp & 255)];
        /* both owned: the non-ephemeral side, then the external, then the lower port, else dst */
        int se = sp < EPHEMERAL_MIN, de = dp < EPHEMERAL_MIN;
        int tie = (se ^ de) ? se : (si ^ di) ? !si : sp < dp;
        int own_src = ((so != 0) & (d_o != 0)) ? tie : so != 0;
        int pfx = (sg | dg) != 0; /* a prefix decides whatever the ports */
        int on_src = pfx ? sg != 0 : own_src;
        unsigned svc = pfx ? sg | dg : own_src ? so : d_o;
        int side = pfx | (so != 0) | (d_o != 0);
        service[i] = (uint16_t)svc;
        method[i] = (uint8_t)((svc != 0) * (pfx ? M_PREFIX : side ? M_PORT : 0));
        src_int[i] = (uint8_t)si;
        dst_int[i] = (uint8_t)di;
        is_src[i] = (uint8_t)on_src;
        known[i] = (uint8_t)side;
        /* the host: the internal side; both internal, the client (not the service side; no
         * side known, the higher port, src on equal ports) */
        int client_src = side ? !on_src : sp >= dp;
        int h_src = si & ((di ^ 1) | client_src), has = si | di;
        uint64_t keep = 0 - (uint64_t)has;
        has_host[i] = (uint8_t)has;
        host_is_src[i] = (uint8_t)h_src;
        host[2 * i] = (h_src ? shi : dhi) & keep;
        host[2 * i + 1] = (h_src ? slo : dlo) & keep;
    }
    Py_END_ALLOW_THREADS
    if (bad)
        PyErr_SetString(PyExc_ValueError, "level1 points past level2");
    else
        result = PyLong_FromSsize_t(m);
done:
    held_release(&h);
    return result;
}
