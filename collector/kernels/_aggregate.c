/* The aggregator's reduction of a batch in one pass (collector/aggregate.py, Aggregator.add):
 * each flow's minute, flag byte and host, and its sums added into one hash table keyed by
 * (minute, exporter, service, flag, host, in_if, out_if); its groups (a few thousand for a
 * batch of 60,000 flows) are then added into the two the caller wants, one keyed by (minute,
 * exporter, service, flag, host), one by (minute, exporter, service, in_if, out_if). A flow
 * costs one lookup, not one in each (10.6 against 11.9 ns a flow). The NumPy way
 * (Aggregator._bin_columns, host_codes, then group_sums twice) makes the same groups in some
 * twenty passes over the batch and its temporaries; here each flow's columns are read once,
 * some 50 octets, and nothing is written per flow.
 *
 * bins(end, lo, hi, now, base, method, has_host, violations, host, service, exporters, bytes,
 *      packets, in_if, out_if, seed) -> (clamped, hosts, k, interfaces, j), or None
 *
 *   end          n float64: the flows' end times (UNIX seconds)
 *   lo, hi, now  floats: an end time outside [lo, hi] (or NaN) is replaced by `now`
 *   base         the minute number (floor(seconds) // 60, a floor division) of min(lo, now):
 *                every flow's minute lies from it to below base + 2^24 (the caller checks
 *                that max(hi, now) does; ValueError otherwise)
 *   method       None or n uint8: classifier.METHODS of each flow
 *   has_host     n uint8 (0 or 1); violations None or n uint8 (0 or 1)
 *   host         n addresses as collector.netflow.batch.ADDR holds them (16-octet items)
 *   service      n uint16
 *   exporters    n uint32, or an integer for every flow: the flows' exporter codes, each
 *                below 2^16 (ValueError otherwise)
 *   bytes, packets  n uint64, summed modulo 2^64 (as NumPy's uint64 additions)
 *   in_if, out_if   n uint32 each, or both None (no interface groups)
 *   seed         an integer mixed into the hashes (the caller picks it at random once)
 *
 * A flow's flag is has_host | violation << 1 | method << 2 (modulo 2^8), its host the address
 * when it has one, else the low 32 bits of the address's low half (aggregate.host_codes' code:
 * classify leaves hostless rows 0). Groups are numbered in the order of their first flows.
 *
 * `hosts` is a bytearray of k groups as columns, back to back: minute (int64 seconds, the
 * bin's first), host hi, host lo (uint64: the first flow's address), bytes, packets, flows
 * (uint64), exporter (uint32), service (uint16), flag (uint8). `interfaces` (None without
 * in_if) holds j groups: minute, bytes, packets, flows, in_if, out_if, exporter, service;
 * flows with both interfaces 0 are left out (they count on neither). `clamped` is how many end
 * times were replaced. None: a probe sequence grew past MAX_PROBE (keys made to collide);
 * nothing was kept and the caller groups the batch the NumPy way. lo, hi and now must lie
 * within 10^11 seconds of 1970 and n below 2^31 (ValueError otherwise).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"

#define BIN 60
#define N_BUFS 12
#define TILE 256 /* rows keyed and their slots fetched before any is added: misses overlap */
#define MAX_PROBE 64
#define MINUTE_BITS 24
/* a group's record: its key's words, flows, bytes, packets, (a host group's first row,) the hash */
#define FINE_WORDS 9 /* key (a, hi, lo, ifs), flows, bytes, packets, first row, hash */
#define HOST_WORDS 8 /* key (a, hi, lo), flows, bytes, packets, first row, hash */
#define IF_WORDS 6   /* key (a, ifs), flows, bytes, packets, hash */

/* A key's hash: each of its words, the seed mixed in, times one of these odd constants, the
 * products xored; a table's slot is the hash's top bits (multiplicative hashing: one multiply
 * a word, where a full mix of each took 2 ns a flow more) */
#define K1 0x9e3779b97f4a7c15ULL
#define K2 0xc2b2ae3d27d4eb4fULL
#define K3 0x165667b19e3779f9ULL
#define K4 0x27d4eb2f165667c5ULL

static inline uint64_t host_hash(uint64_t a, uint64_t hi, uint64_t lo, uint64_t seed, uint64_t seed2)
{
    return (a ^ seed) * K1 ^ (lo + seed2) * K2 ^ (hi + seed) * K3;
}

/* A hash table of groups: slots (record numbers, -1 empty), at most a quarter full, and the
 * records back to back, `words` 64-bit words each, the key's first. */
typedef struct {
    int32_t *slot;
    size_t mask;
    int shift; /* 64 - log2(slots): a hash's slot is its top bits */
    uint64_t *rec;
    size_t k, room, words;
} Groups;

/* An empty table with room for `room` records (at least 1,024; a power of two) before it grows. */
static int groups_init(Groups *g, size_t words, size_t room)
{
    g->room = 1024;
    g->shift = 52;
    while (g->room < room && g->shift > 20) {
        g->room *= 2;
        g->shift -= 1;
    }
    g->mask = 4 * g->room - 1;
    g->k = 0;
    g->words = words;
    g->slot = malloc((g->mask + 1) * sizeof *g->slot);
    g->rec = malloc(g->room * words * sizeof *g->rec);
    if (!g->slot || !g->rec)
        return -1;
    memset(g->slot, 0xff, (g->mask + 1) * sizeof *g->slot);
    return 0;
}

static void groups_free(Groups *g)
{
    free(g->slot);
    free(g->rec);
}

/* Room for one more record, the table grown fourfold when a quarter full (each record's slot
 * found again from its stored hash, the record's last word): 0, or -1 when out of memory. */
static int groups_grow(Groups *g)
{
    size_t hashed = g->words - 1;
    if (g->k == g->room) {
        uint64_t *r = realloc(g->rec, 2 * g->room * g->words * sizeof *r);
        if (!r)
            return -1;
        g->rec = r;
        g->room *= 2;
    }
    if ((g->k + 1) * 4 <= g->mask + 1)
        return 0;
    size_t cap = (g->mask + 1) * 4;
    int32_t *s = malloc(cap * sizeof *s);
    if (!s)
        return -1;
    memset(s, 0xff, cap * sizeof *s);
    for (size_t j = 0; j < g->k; j++) {
        size_t h = (size_t)(g->rec[j * g->words + hashed] >> (g->shift - 2));
        while (s[h] >= 0)
            h = (h + 1) & (cap - 1);
        s[h] = (int32_t)j;
    }
    free(g->slot);
    g->slot = s;
    g->mask = cap - 1;
    g->shift -= 2;
    return 0;
}

enum { FAIL_NONE, FAIL_MEMORY, FAIL_PROBE, FAIL_MINUTE, FAIL_EXPORTER };

/* The record of the group keyed by the `nk` words at `key` (hash `h`): the one met before, or a
 * new one at the end (the key copied, the rest 0, the hash in its last word; *fresh set).
 * NULL with *fail set after MAX_PROBE probes (keys made to collide) or without memory. */
static inline uint64_t *group_of(Groups *g, uint64_t h, const uint64_t *key, int nk, int *fresh, int *fail)
{
    size_t at = (size_t)(h >> g->shift);
    for (int probes = 0; g->slot[at] >= 0; probes++) {
        uint64_t *r = g->rec + (size_t)g->slot[at] * g->words;
        int w = 0;
        while (w < nk && r[w] == key[w])
            w++;
        if (w == nk)
            return r;
        if (probes >= MAX_PROBE) {
            *fail = FAIL_PROBE;
            return NULL;
        }
        at = (at + 1) & g->mask;
    }
    if (groups_grow(g) < 0) {
        *fail = FAIL_MEMORY;
        return NULL;
    }
    at = (size_t)(h >> g->shift); /* the table may have grown */
    while (g->slot[at] >= 0)
        at = (at + 1) & g->mask;
    g->slot[at] = (int32_t)g->k;
    uint64_t *r = g->rec + g->k++ * g->words;
    memset(r, 0, g->words * sizeof *r);
    memcpy(r, key, (size_t)nk * sizeof *r);
    r[g->words - 1] = h;
    *fresh = 1;
    return r;
}

/* The outputs' layout: columns of k items, each `sizes[c]` octets, back to back. */
static PyObject *columns_of(size_t k, const int *sizes, int nc, char **at)
{
    size_t total = 0;
    for (int c = 0; c < nc; c++)
        total += k * (size_t)sizes[c];
    PyObject *out = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (!out)
        return NULL;
    char *p = PyByteArray_AS_STRING(out);
    for (int c = 0; c < nc; c++) {
        at[c] = p;
        p += k * (size_t)sizes[c];
    }
    return out;
}

PyObject *imflow_bins(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 16) {
        PyErr_SetString(PyExc_TypeError, "bins takes 16 arguments (see collector/kernels/_aggregate.c)");
        return NULL;
    }
    double lo = PyFloat_AsDouble(args[1]), hi = PyFloat_AsDouble(args[2]), now = PyFloat_AsDouble(args[3]);
    long long base = PyLong_AsLongLong(args[4]);
    uint64_t seed = PyLong_AsUnsignedLongLongMask(args[15]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer bufs[N_BUFS];
    Held h = {bufs, 0, N_BUFS, "bins"};
    PyObject *result = NULL, *hosts = NULL, *ifs = NULL;
    Groups gf, gh, gi;
    memset(&gf, 0, sizeof gf);
    memset(&gh, 0, sizeof gh);
    memset(&gi, 0, sizeof gi);
    Py_ssize_t n = buffer_items(args[0], 8);
    if (n < 0)
        return NULL;
    if (n > INT32_MAX || !(fabs(lo) < 1e11 && fabs(hi) < 1e11 && fabs(now) < 1e11) || llabs(base) > 1LL << 32) {
        PyErr_SetString(PyExc_ValueError, "bins: at most 2^31 - 1 rows, lo, hi, now within 1e11 s of 1970 and base "
                                          "within 2^32 minutes");
        return NULL;
    }
    uint64_t one = 0;
    int many = !PyLong_Check(args[10]);
    if (!many) {
        one = PyLong_AsUnsignedLongLongMask(args[10]);
        if (PyErr_Occurred())
            return NULL;
    }
    int by_if = args[13] != Py_None || args[14] != Py_None;
    /* each argument: (index, item size, name); method, violations (and in_if, out_if
     * together) may be None, exporters an integer */
    static const struct { int arg, size; const char *name; } spec[N_BUFS] = {
        {0, 8, "end"}, {5, 1, "method"}, {6, 1, "has_host"}, {7, 1, "violations"}, {8, 16, "host"},
        {9, 2, "service"}, {10, 4, "exporters"}, {11, 8, "bytes"}, {12, 8, "packets"}, {13, 4, "in_if"},
        {14, 4, "out_if"}};
    const void *p[N_BUFS] = {NULL};
    for (int j = 0; j < 11; j++) {
        int a = spec[j].arg;
        if ((a == 5 || a == 7) && args[a] == Py_None)
            continue;
        if ((a == 10 && !many) || ((a == 13 || a == 14) && !by_if))
            continue;
        if (!(p[j] = held_buffer(&h, args[a], 0, spec[j].size, n, spec[j].name)))
            goto done;
    }
    const double *end = p[0];
    const uint8_t *method = p[1], *has_host = p[2], *violations = p[3];
    const uint64_t *host = p[4], *bytes = p[7], *packets = p[8];
    const uint16_t *service = p[5];
    const uint32_t *exporters = p[6], *in_if = p[9], *out_if = p[10];
    int fail = FAIL_NONE;
    Py_ssize_t clamped = 0;
    Py_BEGIN_ALLOW_THREADS
    /* room for a fine group every 16 flows and a host group every 32 before the tables grow
     * (the benchmark's batches: one every 22 and 43) */
    if (groups_init(&gf, FINE_WORDS, (size_t)n / 16) < 0 || groups_init(&gh, HOST_WORDS, (size_t)n / 32) < 0
        || groups_init(&gi, IF_WORDS, 0) < 0)
        fail = FAIL_MEMORY;
    /* a tile at a time: each row's key and hash, its slot fetched; then the records of the
     * groups met before; then the adds */
    uint64_t ka[TILE], khi[TILE], klo[TILE], kif[TILE], kh[TILE];
    uint64_t seed2 = (seed ^ K3) * K1;
    int64_t first = (int64_t)base * BIN; /* the base minute's first second */
    uint64_t big = 0; /* exporters or'ed: one at 2^16 or above fails the call */
    for (Py_ssize_t t0 = 0; t0 < n && fail == FAIL_NONE; t0 += TILE) {
        int m = n - t0 < TILE ? (int)(n - t0) : TILE;
        uint64_t late = 0;
        for (int j = 0; j < m; j++) {
            Py_ssize_t i = t0 + j;
            double e = end[i];
            int bad = !(e >= lo && e <= hi); /* NaN fails both */
            clamped += bad;
            e = bad ? now : e;
            /* NumPy: np.floor(end).astype(np.int64) // 60, a floor division: the seconds
             * truncated, one less below a negative fraction; from the base's first second
             * they are not negative (else `late` fails the call), so the division truncates */
            int64_t s = (int64_t)e;
            s -= e < (double)s;
            uint64_t rel = (uint64_t)(s - first) / BIN;
            late |= rel;
            uint64_t x = many ? exporters[i] : one;
            big |= x;
            uint64_t a = rel << 40 | x << 24 | (uint64_t)service[i] << 8;
            uint64_t has = has_host[i], f = has;
            if (violations)
                f |= (uint64_t)violations[i] << 1;
            if (method)
                f |= (uint64_t)method[i] << 2;
            f &= 0xFF;
            uint64_t ahi = host[2 * i] & (0 - has), alo = host[2 * i + 1] & (has ? ~0ULL : 0xFFFFFFFFULL);
            uint64_t ifs = by_if ? (uint64_t)in_if[i] << 32 | out_if[i] : 0;
            ka[j] = a | f;
            khi[j] = ahi;
            klo[j] = alo;
            kif[j] = ifs;
            kh[j] = host_hash(a | f, ahi, alo, seed, seed2) ^ (ifs + seed2) * K4;
            __builtin_prefetch(&gf.slot[kh[j] >> gf.shift]);
        }
        if (late >> MINUTE_BITS || big >> 16) {
            fail = late >> MINUTE_BITS ? FAIL_MINUTE : FAIL_EXPORTER;
            break;
        }
        for (int j = 0; j < m; j++) { /* the records of the groups met before, fetched */
            int32_t g = gf.slot[kh[j] >> gf.shift];
            if (g >= 0)
                __builtin_prefetch(gf.rec + (size_t)g * gf.words);
        }
        for (int j = 0; j < m; j++) {
            int fresh = 0;
            const uint64_t key[4] = {ka[j], khi[j], klo[j], kif[j]};
            uint64_t *r = group_of(&gf, kh[j], key, 4, &fresh, &fail);
            if (!r)
                break;
            if (fresh)
                r[7] = (uint64_t)(t0 + j);
            r[4] += 1;
            r[5] += bytes[t0 + j];
            r[6] += packets[t0 + j];
        }
    }
    /* the host and the interface groups from the fine ones, in the fine ones' order (each
     * group's first fine group holds its first flow, so both keep first-flow order) */
    for (size_t g = 0; g < gf.k && fail == FAIL_NONE; g++) {
        const uint64_t *fr = gf.rec + g * gf.words;
        int fresh = 0;
        uint64_t *r = group_of(&gh, host_hash(fr[0], fr[1], fr[2], seed, seed2), fr, 3, &fresh, &fail);
        if (!r)
            break;
        if (fresh)
            r[6] = fr[7];
        r[3] += fr[4];
        r[4] += fr[5];
        r[5] += fr[6];
        if (!fr[3]) /* neither interface given: counted on neither */
            continue;
        const uint64_t ikey[2] = {fr[0] & ~(uint64_t)0xFF, fr[3]};
        if (!(r = group_of(&gi, (ikey[0] ^ seed) * K1 ^ (ikey[1] + seed2) * K2, ikey, 2, &fresh, &fail)))
            break;
        r[2] += fr[4];
        r[3] += fr[5];
        r[4] += fr[6];
    }
    Py_END_ALLOW_THREADS
    if (fail == FAIL_MEMORY) {
        PyErr_NoMemory();
        goto done;
    }
    if (fail == FAIL_MINUTE || fail == FAIL_EXPORTER) {
        PyErr_SetString(PyExc_ValueError, fail == FAIL_MINUTE ? "bins: a minute outside base .. base + 2^24"
                                                              : "bins: an exporter code at 2^16 or above");
        goto done;
    }
    if (fail == FAIL_PROBE) {
        Py_INCREF(Py_None);
        result = Py_None;
        goto done;
    }
    static const int host_sizes[9] = {8, 8, 8, 8, 8, 8, 4, 2, 1}, if_sizes[8] = {8, 8, 8, 8, 4, 4, 4, 2};
    char *c[9];
    if (!(hosts = columns_of(gh.k, host_sizes, 9, c)))
        goto done;
    for (size_t g = 0; g < gh.k; g++) {
        const uint64_t *r = gh.rec + g * gh.words;
        uint64_t a = r[0], row = r[6];
        ((int64_t *)c[0])[g] = ((int64_t)(a >> 40) + base) * BIN;
        ((uint64_t *)c[1])[g] = host[2 * row];
        ((uint64_t *)c[2])[g] = host[2 * row + 1];
        ((uint64_t *)c[3])[g] = r[4];
        ((uint64_t *)c[4])[g] = r[5];
        ((uint64_t *)c[5])[g] = r[3];
        ((uint32_t *)c[6])[g] = (uint32_t)(a >> 24 & 0xFFFF);
        ((uint16_t *)c[7])[g] = (uint16_t)(a >> 8);
        ((uint8_t *)c[8])[g] = (uint8_t)a;
    }
    if (by_if) {
        if (!(ifs = columns_of(gi.k, if_sizes, 8, c)))
            goto done;
        for (size_t g = 0; g < gi.k; g++) {
            const uint64_t *r = gi.rec + g * gi.words;
            uint64_t a = r[0];
            ((int64_t *)c[0])[g] = ((int64_t)(a >> 40) + base) * BIN;
            ((uint64_t *)c[1])[g] = r[3];
            ((uint64_t *)c[2])[g] = r[4];
            ((uint64_t *)c[3])[g] = r[2];
            ((uint32_t *)c[4])[g] = (uint32_t)(r[1] >> 32);
            ((uint32_t *)c[5])[g] = (uint32_t)r[1];
            ((uint32_t *)c[6])[g] = (uint32_t)(a >> 24 & 0xFFFF);
            ((uint16_t *)c[7])[g] = (uint16_t)(a >> 8);
        }
    } else {
        Py_INCREF(Py_None);
        ifs = Py_None;
    }
    result = Py_BuildValue("nOnOn", clamped, hosts, (Py_ssize_t)gh.k, ifs, (Py_ssize_t)(by_if ? gi.k : 0));
done:
    Py_XDECREF(hosts);
    Py_XDECREF(ifs);
    groups_free(&gf);
    groups_free(&gh);
    groups_free(&gi);
    held_release(&h);
    return result;
}

/* totals(exporter, service, flag, bytes, packets, flows, exporter_totals, method_totals) -> None
 *
 * The aggregator's running totals (Aggregator.add: exporter_totals[e, s] and method_totals[s, m]
 * += each group's bytes, packets, flows), from a batch's k host groups: exporter k uint32 (our
 * index), service k uint16, flag k uint8 (the method is flag >> 2), the sums k uint64 each;
 * exporter_totals E x S x 3 and method_totals S' x M x 3 uint64, C-contiguous, added to
 * modulo 2^64. The NumPy way groups the groups by (exporter, service, method) first and then
 * adds with np.add.at, seven calls for a few thousand rows. A row outside either table is an
 * IndexError and nothing is added (every row is checked before the first add). */
PyObject *imflow_totals(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "totals takes 8 arguments (see collector/kernels/_aggregate.c)");
        return NULL;
    }
    Py_buffer bufs[8];
    Held h = {bufs, 0, 8, "totals"};
    PyObject *result = NULL;
    Py_ssize_t k = buffer_items(args[0], 4);
    if (k < 0)
        return NULL;
    const uint32_t *exporter;
    const uint16_t *service;
    const uint8_t *flag;
    const uint64_t *bytes, *packets, *flows;
    uint64_t *et, *mt;
    Py_ssize_t dims[2][2];
    for (int t = 0; t < 2; t++) { /* the tables' shapes: (rows, columns, 3) */
        Py_buffer probe;
        if (PyObject_GetBuffer(args[6 + t], &probe, PyBUF_C_CONTIGUOUS | PyBUF_ND) < 0)
            return NULL;
        int ok = probe.ndim == 3 && probe.shape[2] == 3 && probe.itemsize == 8;
        if (ok) {
            dims[t][0] = probe.shape[0];
            dims[t][1] = probe.shape[1];
        }
        PyBuffer_Release(&probe);
        if (!ok) {
            PyErr_SetString(PyExc_ValueError, "totals: the tables are (rows, columns, 3) of 8-octet items");
            return NULL;
        }
    }
    if (!(exporter = held_buffer(&h, args[0], 0, 4, k, "exporter"))
        || !(service = held_buffer(&h, args[1], 0, 2, k, "service"))
        || !(flag = held_buffer(&h, args[2], 0, 1, k, "flag"))
        || !(bytes = held_buffer(&h, args[3], 0, 8, k, "bytes"))
        || !(packets = held_buffer(&h, args[4], 0, 8, k, "packets"))
        || !(flows = held_buffer(&h, args[5], 0, 8, k, "flows"))
        || !(et = held_buffer(&h, args[6], 1, 8, dims[0][0] * dims[0][1] * 3, "exporter_totals"))
        || !(mt = held_buffer(&h, args[7], 1, 8, dims[1][0] * dims[1][1] * 3, "method_totals")))
        goto done;
    for (Py_ssize_t i = 0; i < k; i++)
        if (exporter[i] >= dims[0][0] || service[i] >= dims[0][1] || service[i] >= dims[1][0]
            || (flag[i] >> 2) >= dims[1][1]) {
            PyErr_Format(PyExc_IndexError, "totals: group %zd (exporter %u, service %u, method %u) outside the "
                         "tables", i, exporter[i], service[i], flag[i] >> 2);
            goto done;
        }
    for (Py_ssize_t i = 0; i < k; i++) {
        uint64_t *e = et + ((size_t)exporter[i] * dims[0][1] + service[i]) * 3;
        uint64_t *m = mt + ((size_t)service[i] * dims[1][1] + (flag[i] >> 2)) * 3;
        e[0] += bytes[i];
        e[1] += packets[i];
        e[2] += flows[i];
        m[0] += bytes[i];
        m[1] += packets[i];
        m[2] += flows[i];
    }
    result = Py_None;
    Py_INCREF(result);
done:
    held_release(&h);
    return result;
}
