/* The flow audit log's chunk encoding (collector/store/audit.py, AuditBatch.encode, format 2)
 * in two passes over the held rows: their spans, then their offsets written at the widths the
 * caller picked from them; and the selection of the watched flows (audit_select, at the end).
 * The NumPy way of the encoding takes some forty passes and their temporaries (a minimum and a
 * maximum per stored column, each address side's IPv4 test, the subtractions): 12.6-13.9 ns a
 * row of a chunk in the caches against 7.9 here, and about 20 in the daemon (2026-12-06).
 *
 * The stored columns, in order (AuditBatch.encode names them): start_ms, duration (end_ms -
 * start_ms, modulo 2^64, as int64), exporter, host_port, peer_port, proto, service, bytes,
 * packets, in_if, out_if, direction, then per side (host, peer): <side>4 (the low 32 bits of
 * an IPv4 address, ::ffff:a.b.c.d; 0 for the others), <side>_x (the row numbers of the others),
 * <side>_xhi and <side>_xlo (their halves).
 *
 * audit_spans(cols) -> 20 (least, greatest, count) triples, one per stored column
 *
 *   cols    the 16 columns of collector.store.audit.COLUMNS in its order, C-contiguous, of its
 *           item sizes, n items each
 *
 * least and greatest are signed for start_ms and duration, unsigned for the rest; a column of
 * no values gives (0, 0, 0).
 *
 * audit_pack(cols, bases, widths, counts, head) -> bytearray
 *
 *   bases   20 integers: each stored column's base (taken modulo 2^64)
 *   widths  20 octet widths, each 0, 1, 2, 4 or 8: the value minus the base, modulo 2^(8 *
 *           width), little-endian (0: nothing stored)
 *   counts  20 counts, as audit_spans gave them (ValueError when the rows say otherwise)
 *   head    bytes to begin with (the chunk's magic, length and JSON header)
 *
 * The result is head, then each stored column's offsets back to back: what the NumPy way
 * writes, octet for octet (tests/kernels/test_audit_kernels.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_kernels.h"

#define IN 16
#define STORED 20
#define SIGN 0x8000000000000000ULL

enum { START, END, EXPORTER, HOST_HI, HOST_LO, PEER_HI, PEER_LO, HOST_PORT, PEER_PORT, PROTO, SERVICE, BYTES,
       PACKETS, IN_IF, OUT_IF, DIRECTION };
static const int in_size[IN] = {8, 8, 4, 8, 8, 8, 8, 2, 2, 1, 2, 8, 8, 4, 4, 1};
/* the stored columns 2-11 and the input each is (the rest are derived) */
static const int plain[10] = {EXPORTER, HOST_PORT, PEER_PORT, PROTO, SERVICE, BYTES, PACKETS, IN_IF, OUT_IF,
                              DIRECTION};

/* The 16 input columns into `in` (held in h); n, or -1 with an exception set. */
static Py_ssize_t columns(Held *h, PyObject *cols, const void **in)
{
    if (!PyTuple_Check(cols) || PyTuple_GET_SIZE(cols) != IN) {
        PyErr_SetString(PyExc_TypeError, "cols: a tuple of the 16 audit columns expected");
        return -1;
    }
    Py_ssize_t n = buffer_items(PyTuple_GET_ITEM(cols, 0), 8);
    if (n < 0)
        return -1;
    for (int j = 0; j < IN; j++)
        if (!(in[j] = held_buffer(h, PyTuple_GET_ITEM(cols, j), 0, in_size[j], n, "column")))
            return -1;
    return n;
}

typedef struct {
    uint64_t least, most; /* signed columns biased by SIGN: compared as unsigned */
    Py_ssize_t count;
} Span;

static inline void see(Span *s, uint64_t v)
{
    s->least = v < s->least ? v : s->least;
    s->most = v > s->most ? v : s->most;
}

static PyObject *spans_tuple(const Span *s)
{
    PyObject *out = PyTuple_New(STORED);
    if (!out)
        return NULL;
    for (int c = 0; c < STORED; c++) {
        PyObject *t;
        if (!s[c].count)
            t = Py_BuildValue("iin", 0, 0, (Py_ssize_t)0);
        else if (c < 2) /* start_ms, duration: signed */
            t = Py_BuildValue("LLn", (long long)(s[c].least ^ SIGN), (long long)(s[c].most ^ SIGN), s[c].count);
        else
            t = Py_BuildValue("KKn", (unsigned long long)s[c].least, (unsigned long long)s[c].most, s[c].count);
        if (!t) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, c, t);
    }
    return out;
}

/* The least and greatest of a column: plain loops the compiler vectorises, cloned for the
 * vector units this CPU may have (picked once at load) where the compiler can do that */
#if defined(__GNUC__) && __GNUC__ >= 11 && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) /* ifunc */
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif

#define SPAN_OF(NAME, T)                                                                       \
    CLONES static void NAME(const T *p, Py_ssize_t n, uint64_t *least, uint64_t *most)         \
    {                                                                                          \
        T lo = (T)~(T)0, hi = 0;                                                               \
        for (Py_ssize_t i = 0; i < n; i++) {                                                   \
            lo = p[i] < lo ? p[i] : lo;                                                        \
            hi = p[i] > hi ? p[i] : hi;                                                        \
        }                                                                                      \
        *least = lo, *most = hi;                                                               \
    }
SPAN_OF(span8, uint8_t)
SPAN_OF(span16, uint16_t)
SPAN_OF(span32, uint32_t)
SPAN_OF(span64, uint64_t)

CLONES static Py_ssize_t span_v4(const uint64_t *ahi, const uint64_t *alo, Py_ssize_t n, uint64_t *least,
                                 uint64_t *most)
{ /* <side>4's least and greatest; -> the rows not IPv4 */
    uint64_t lo = UINT64_MAX, hi = 0, other = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t v4 = (uint64_t)is_v4(ahi[i], alo[i]), v = v4 ? alo[i] & 0xFFFFFFFFULL : 0;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        other += v4 ^ 1;
    }
    *least = lo, *most = hi;
    return (Py_ssize_t)other;
}

CLONES static void span_signed(const int64_t *p, const int64_t *q, Py_ssize_t n, int64_t *out)
{ /* p's and, with q, (q - p)'s (modulo 2^64) least and greatest */
    int64_t a = INT64_MAX, b = INT64_MIN, c = INT64_MAX, d = INT64_MIN;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t v = p[i], w = (int64_t)((uint64_t)q[i] - (uint64_t)p[i]);
        a = v < a ? v : a;
        b = v > b ? v : b;
        c = w < c ? w : c;
        d = w > d ? w : d;
    }
    out[0] = a, out[1] = b, out[2] = c, out[3] = d;
}

PyObject *imflow_audit_spans(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 1) {
        PyErr_SetString(PyExc_TypeError, "audit_spans(cols)");
        return NULL;
    }
    Py_buffer bufs[IN];
    Held h = {bufs, 0, IN, "audit_spans"};
    const void *in[IN];
    PyObject *result = NULL;
    Py_ssize_t n = columns(&h, args[0], in);
    if (n < 0)
        goto done;
    Span s[STORED];
    for (int c = 0; c < STORED; c++)
        s[c] = (Span){UINT64_MAX, 0, 0};
    Py_BEGIN_ALLOW_THREADS
    if (n) {
        int64_t t[4];
        span_signed(in[START], in[END], n, t);
        for (int c = 0; c < 2; c++)
            s[c].least = (uint64_t)t[2 * c] ^ SIGN, s[c].most = (uint64_t)t[2 * c + 1] ^ SIGN;
        for (int c = 0; c < 10; c++) {
            const void *p = in[plain[c]];
            Span *sc = &s[2 + c];
            switch (in_size[plain[c]]) {
            case 1: span8(p, n, &sc->least, &sc->most); break;
            case 2: span16(p, n, &sc->least, &sc->most); break;
            case 4: span32(p, n, &sc->least, &sc->most); break;
            default: span64(p, n, &sc->least, &sc->most); break;
            }
        }
    }
    for (int side = 0; side < 2 && n; side++) {
        const uint64_t *ahi = in[side ? PEER_HI : HOST_HI], *alo = in[side ? PEER_LO : HOST_LO];
        Span *v4 = &s[12 + 4 * side], *x = v4 + 1, *xhi = v4 + 2, *xlo = v4 + 3;
        if (!span_v4(ahi, alo, n, &v4->least, &v4->most))
            continue; /* every address IPv4: no rows apart */
        for (Py_ssize_t i = 0; i < n; i++) {
            uint64_t hi = ahi[i], lo = alo[i];
            if (is_v4(hi, lo))
                continue;
            see(x, (uint64_t)i);
            see(xhi, hi);
            see(xlo, lo);
            x->count++;
        }
        xhi->count = xlo->count = x->count;
    }
    for (int c = 0; c < STORED; c++)
        if (c < 13 || c == 16)
            s[c].count = n;
    Py_END_ALLOW_THREADS
    result = spans_tuple(s);
done:
    held_release(&h);
    return result;
}

/* v - base at `w` octets, little-endian, at o[j * w] */
static inline void put(unsigned char *o, Py_ssize_t j, int w, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v) >> (64 - 8 * w);
#endif
    switch (w) {
    case 1: o[j] = (uint8_t)v; break;
    case 2: { uint16_t t = (uint16_t)v; memcpy(o + 2 * j, &t, 2); break; }
    case 4: { uint32_t t = (uint32_t)v; memcpy(o + 4 * j, &t, 4); break; }
    default: memcpy(o + 8 * j, &v, 8); break;
    }
}

/* Each width in a loop of its own, EXPR the value of row i */
#define WRITE(EXPR)                                                                                 \
    switch (w) {                                                                                    \
    case 1: for (Py_ssize_t i = 0; i < n; i++) put(o, i, 1, (EXPR) - base); break;                  \
    case 2: for (Py_ssize_t i = 0; i < n; i++) put(o, i, 2, (EXPR) - base); break;                  \
    case 4: for (Py_ssize_t i = 0; i < n; i++) put(o, i, 4, (EXPR) - base); break;                  \
    default: for (Py_ssize_t i = 0; i < n; i++) put(o, i, 8, (EXPR) - base); break;                 \
    }

/* One stored column's offsets (kind: 0 a plain column of `size`-octet items at p, 1 the
 * duration (q - p), 2 an address side's IPv4 part (p its hi, q its lo)) */
CLONES static void pack_column(int kind, const void *p, const void *q, int size, Py_ssize_t n, uint64_t base, int w,
                               unsigned char *o)
{
    if (kind == 1) {
        const uint64_t *a = p, *b = q;
        WRITE(b[i] - a[i])
    } else if (kind == 2) {
        const uint64_t *hi = p, *lo = q;
        WRITE(is_v4(hi[i], lo[i]) ? lo[i] & 0xFFFFFFFFULL : 0)
    } else {
        switch (size) {
        case 1: WRITE((uint64_t)((const uint8_t *)p)[i]) break;
        case 2: WRITE((uint64_t)((const uint16_t *)p)[i]) break;
        case 4: WRITE((uint64_t)((const uint32_t *)p)[i]) break;
        default: WRITE(((const uint64_t *)p)[i]) break;
        }
    }
}

PyObject *imflow_audit_pack(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 5 || !PyTuple_Check(args[1]) || PyTuple_GET_SIZE(args[1]) != STORED || !PyTuple_Check(args[2])
        || PyTuple_GET_SIZE(args[2]) != STORED || !PyTuple_Check(args[3]) || PyTuple_GET_SIZE(args[3]) != STORED
        || !PyBytes_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "audit_pack(cols, bases: 20, widths: 20, counts: 20, head: bytes)");
        return NULL;
    }
    uint64_t bases[STORED];
    int widths[STORED];
    Py_ssize_t counts[STORED], total = PyBytes_GET_SIZE(args[4]);
    for (int c = 0; c < STORED; c++) {
        bases[c] = PyLong_AsUnsignedLongLongMask(PyTuple_GET_ITEM(args[1], c));
        long w = PyLong_AsLong(PyTuple_GET_ITEM(args[2], c));
        counts[c] = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[3], c));
        if (PyErr_Occurred())
            return NULL;
        if (!(w == 0 || w == 1 || w == 2 || w == 4 || w == 8) || counts[c] < 0 || counts[c] > PY_SSIZE_T_MAX / 16) {
            PyErr_Format(PyExc_ValueError, "audit_pack: stored column %d of width %ld, %zd values", c, w, counts[c]);
            return NULL;
        }
        widths[c] = (int)w;
        total += w * counts[c];
    }
    Py_buffer bufs[IN];
    Held h = {bufs, 0, IN, "audit_pack"};
    const void *in[IN];
    PyObject *out = NULL;
    Py_ssize_t n = columns(&h, args[0], in);
    if (n < 0)
        goto done;
    for (int c = 0; c < STORED; c++)
        if ((c < 13 || c == 16) && counts[c] != n) {
            PyErr_Format(PyExc_ValueError, "audit_pack: stored column %d of %zd values for %zd rows", c, counts[c], n);
            goto done;
        }
    for (int c = 13; c < STORED; c += 4)
        if (counts[c + 1] != counts[c] || counts[c + 2] != counts[c]) {
            PyErr_Format(PyExc_ValueError, "audit_pack: stored columns %d-%d of unequal counts", c, c + 2);
            goto done;
        }
    if (!(out = PyByteArray_FromStringAndSize(NULL, total)))
        goto done;
    unsigned char *o = (unsigned char *)PyByteArray_AS_STRING(out);
    memcpy(o, PyBytes_AS_STRING(args[4]), (size_t)PyBytes_GET_SIZE(args[4]));
    o += PyBytes_GET_SIZE(args[4]);
    Py_ssize_t found[2] = {0, 0};
    Py_BEGIN_ALLOW_THREADS
    const int64_t *start = in[START], *end = in[END];
    for (int c = 0; c < STORED; c++) {
        int w = widths[c];
        uint64_t base = bases[c];
        if (c == 13 || c == 17) { /* the rows not IPv4: their numbers and halves, in one pass */
            int side = c == 17, wh = widths[c + 1], wl = widths[c + 2];
            const uint64_t *ahi = in[side ? PEER_HI : HOST_HI], *alo = in[side ? PEER_LO : HOST_LO];
            Py_ssize_t cnt = counts[c], j = 0;
            unsigned char *oh = o + (size_t)w * cnt, *ol = oh + (size_t)wh * cnt;
            if (w || wh || wl)
                for (Py_ssize_t i = 0; i < n; i++) {
                    if (is_v4(ahi[i], alo[i]))
                        continue;
                    if (j < cnt) {
                        if (w)
                            put(o, j, w, (uint64_t)i - base);
                        if (wh)
                            put(oh, j, wh, ahi[i] - bases[c + 1]);
                        if (wl)
                            put(ol, j, wl, alo[i] - bases[c + 2]);
                    }
                    j++;
                }
            found[side] = j;
            o = ol + (size_t)wl * cnt;
            c += 2;
            continue;
        }
        if (!w)
            continue;
        if (c == 0)
            pack_column(0, start, NULL, 8, n, base, w, o);
        else if (c == 1)
            pack_column(1, start, end, 8, n, base, w, o);
        else if (c < 12)
            pack_column(0, in[plain[c - 2]], NULL, in_size[plain[c - 2]], n, base, w, o);
        else /* an address side's IPv4 part */
            pack_column(2, in[c == 16 ? PEER_HI : HOST_HI], in[c == 16 ? PEER_LO : HOST_LO], 8, n, base, w, o);
        o += (size_t)w * counts[c];
    }
    Py_END_ALLOW_THREADS
    for (int side = 0; side < 2; side++) {
        int c = 13 + 4 * side;
        if ((widths[c] || widths[c + 1] || widths[c + 2]) && found[side] != counts[c]) {
            PyErr_SetString(PyExc_ValueError, "audit_pack: the rows not IPv4 are not as counted");
            Py_CLEAR(out);
            goto done;
        }
    }
done:
    held_release(&h);
    return out;
}

/* audit_select(watch, service, out) -> k
 *
 *   watch    uint8 per service index: 1 where its flows are kept
 *   service  n uint16: each flow's service index (IndexError at or past len(watch))
 *   out      n int64, written: the first k items are the kept flows' rows, in order
 *
 * AuditBuffer.select's np.take(watch, service).nonzero() in one pass, without the service
 * column widened to machine integers first nor a mask in between.
 */
PyObject *imflow_audit_select(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "audit_select(watch, service, out)");
        return NULL;
    }
    Py_buffer bufs[3];
    Held h = {bufs, 0, 3, "audit_select"};
    PyObject *result = NULL;
    Py_ssize_t n = buffer_items(args[1], 2), k = 0, bad = -1;
    const uint8_t *watch;
    const uint16_t *service;
    int64_t *out;
    if (n < 0 || !(watch = held_buffer(&h, args[0], 0, 1, -1, "watch"))
        || !(service = held_buffer(&h, args[1], 0, 2, n, "service")) || !(out = held_buffer(&h, args[2], 1, 8, n, "out")))
        goto done;
    Py_ssize_t services = h.b[0].len;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned s = service[i];
        if (s >= (size_t)services) {
            bad = i;
            break;
        }
        out[k] = i;
        k += watch[s] != 0;
    }
    Py_END_ALLOW_THREADS
    if (bad >= 0)
        PyErr_Format(PyExc_IndexError, "audit_select: flow %zd of service %u, past the %zd watched", bad,
                     (unsigned)service[bad], services);
    else
        result = PyLong_FromSsize_t(k);
done:
    held_release(&h);
    return result;
}
