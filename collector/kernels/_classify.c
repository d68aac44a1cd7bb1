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
 *   proto_offset 256 int64: the start of each protocol's row in `owned` (each <= 3 * 65536)
 *   owned        4 * 65536 uint16: the service owning each (protocol row, port), else 0
 *   n_services   range-table groups at or above it are not one service (identical prefixes
 *                of several, ASN groups)
 *   service      out, n uint16; method out, n uint8 (classifier.METHODS: 0, 1 port, 2 prefix)
 *   src_int .. side_known  out, n uint8 each (0 or 1): the state the later steps (learned
 *                addresses, application ids) patch, and the host is derived from
 *   host         out, n 16-octet items; has_host, host_is_src out, n uint8 each
 *   rare         out, n int64: the first k items are the rows left to the caller (a group of
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

#define C_POINTER 0x8000
#define INTERNAL_BIT 0x4000
#define GROUP_MASK (INTERNAL_BIT - 1)
#define EPHEMERAL_MIN 32768
#define PORTS 65536
#define M_PORT 1
#define M_PREFIX 2
#define N_BUFS 26 /* the buffers of a call: 5 columns, 4 + 5 table arrays, 2 port tables, 10 outputs */

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
 * C_POINTER for a cell split by a boundary; `bad` set when a level-1 pointer leaves level2
 * (the tables are built in Python: checked where used, not by a pass over level1 per call). */
static inline uint16_t cell(const Table *t, uint64_t key, int *bad)
{
    uint16_t v = t->level1[key >> t->shift1];
    if (!(v & C_POINTER))
        return v;
    Py_ssize_t row = v & (C_POINTER - 1);
    if (row >= t->rows2) {
        *bad = 1;
        return 0;
    }
    return t->level2[((size_t)row << t->s2) + ((key >> t->shift2) & t->mask2)];
}

static inline uint16_t range4(const Table *t, uint32_t a, int *bad)
{
    uint16_t v = cell(t, a, bad);
    if (!(v & C_POINTER))
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

static inline uint16_t range(const Table *t4, const Table *t6, uint64_t hi, uint64_t lo, int *bad)
{
    if (hi == 0 && (lo >> 32) == 0xFFFF)
        return range4(t4, (uint32_t)lo, bad);
    return range6(t6, hi, lo, bad);
}

/* A C-contiguous buffer of `n` items of `size` octets (n < 0: any count), kept in bufs[*k]. */
static void *need(Py_buffer *bufs, int *k, PyObject *obj, int writable, Py_ssize_t size, Py_ssize_t n,
                  const char *name)
{
    if (*k >= N_BUFS) {
        PyErr_SetString(PyExc_SystemError, "classify: more buffers than N_BUFS");
        return NULL;
    }
    Py_buffer *b = &bufs[*k];
    if (PyObject_GetBuffer(obj, b, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return NULL;
    (*k)++;
    if (b->itemsize != size || b->len % size || (n >= 0 && b->len / size != n)) {
        PyErr_Format(PyExc_ValueError, "%s: %zd items of %zd octets expected, got %zd octets in items of %zd",
                     name, n, size, b->len, b->itemsize);
        return NULL;
    }
    return b->buf;
}

/* A range table from its tuple (see the top of the file): 0, or -1 with an exception set. */
static int table(Table *t, Py_buffer *bufs, int *k, PyObject *spec, int width)
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
    if (!(t->level1 = need(bufs, k, PyTuple_GET_ITEM(spec, 0), 0, 2, (Py_ssize_t)1 << s1, "level1"))
        || !(t->level2 = need(bufs, k, PyTuple_GET_ITEM(spec, 1), 0, 2, -1, "level2")))
        return -1;
    t->rows2 = (bufs[*k - 1].len / 2) >> s2;
    if (width == 32) {
        if (!(t->starts4 = need(bufs, k, PyTuple_GET_ITEM(spec, 2), 0, 4, -1, "starts")))
            return -1;
        t->ns = bufs[*k - 1].len / 4;
    } else {
        if (!(t->starts_hi = need(bufs, k, PyTuple_GET_ITEM(spec, 2), 0, 8, -1, "starts_hi")))
            return -1;
        t->ns = bufs[*k - 1].len / 8;
        if (!(t->starts_lo = need(bufs, k, PyTuple_GET_ITEM(spec, 3), 0, 8, t->ns, "starts_lo")))
            return -1;
    }
    if (!(t->values = need(bufs, k, PyTuple_GET_ITEM(spec, want - 3), 0, 2, t->ns, "values")))
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
    int k = 0;
    PyObject *result = NULL;
    Py_buffer probe;
    if (PyObject_GetBuffer(args[0], &probe, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    Py_ssize_t n = probe.len / 16;
    PyBuffer_Release(&probe);
    Table t4, t6;
    const uint64_t *src = need(bufs, &k, args[0], 0, 16, n, "src"), *dst;
    const uint16_t *sport, *dport, *owned;
    const uint8_t *proto;
    const int64_t *offset;
    uint16_t *service;
    uint8_t *method, *src_int, *dst_int, *is_src, *known, *has_host, *host_is_src;
    uint64_t *host;
    int64_t *rare;
    if (!src || !(dst = need(bufs, &k, args[1], 0, 16, n, "dst")) || !(sport = need(bufs, &k, args[2], 0, 2, n, "sport"))
        || !(dport = need(bufs, &k, args[3], 0, 2, n, "dport")) || !(proto = need(bufs, &k, args[4], 0, 1, n, "proto"))
        || table(&t4, bufs, &k, args[5], 32) < 0 || table(&t6, bufs, &k, args[6], 128) < 0
        || !(offset = need(bufs, &k, args[7], 0, 8, 256, "proto_offset"))
        || !(owned = need(bufs, &k, args[8], 0, 2, 4 * PORTS, "owned"))
        || !(service = need(bufs, &k, args[10], 1, 2, n, "service"))
        || !(method = need(bufs, &k, args[11], 1, 1, n, "method"))
        || !(src_int = need(bufs, &k, args[12], 1, 1, n, "src_int"))
        || !(dst_int = need(bufs, &k, args[13], 1, 1, n, "dst_int"))
        || !(is_src = need(bufs, &k, args[14], 1, 1, n, "service_is_src"))
        || !(known = need(bufs, &k, args[15], 1, 1, n, "side_known"))
        || !(host = need(bufs, &k, args[16], 1, 16, n, "host"))
        || !(has_host = need(bufs, &k, args[17], 1, 1, n, "has_host"))
        || !(host_is_src = need(bufs, &k, args[18], 1, 1, n, "host_is_src"))
        || !(rare = need(bufs, &k, args[19], 1, 8, n, "rare")))
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
            rare[m++] = i; /* several services or an ASN on a side, or a prefix on both */
            continue;
        }
        int si = (sv >> 14) & 1, di = (dv >> 14) & 1;
        unsigned sp = sport[i], dp = dport[i];
        const uint16_t *row = owned + offset[proto[i]];
        unsigned so = row[sp], d_o = row[dp];
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
    for (int j = 0; j < k; j++)
        PyBuffer_Release(&bufs[j]);
    return result;
}
