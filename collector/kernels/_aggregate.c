/* The aggregator's per-flow columns in one pass (collector/aggregate.py, Aggregator.add): the
 * minute of each flow's end time, its flag byte and its host's code, which the NumPy way makes
 * in some fifteen passes (a clamp, a floor, a division, shifts and ors, the IPv4 test of every
 * host) over the batch.
 *
 * bin_columns(end, lo, hi, now, method, has_host, violations, host, mrel, flag, code, other)
 *     -> (clamped, first minute, minutes, k)
 *
 *   end          n float64: the flows' end times (UNIX seconds)
 *   lo, hi, now  floats: an end time outside [lo, hi] (or NaN) is replaced by `now`
 *   method       None or n uint8: classifier.METHODS of each flow
 *   has_host     n uint8 (0 or 1); violations None or n uint8 (0 or 1)
 *   host         n addresses as collector.netflow.batch.ADDR holds them (16-octet items)
 *   mrel         out, n int32: floor(end) // 60 (floor division, as NumPy's) minus the least
 *   flag         out, n uint8: has_host | violation << 1 | method << 2 (modulo 2^8)
 *   code         out, n uint64: the low 32 bits of the host (aggregate.host_codes' code for a
 *                host IPv4 or none)
 *   other        out, n int32: the first k items are the rows whose host is neither IPv4 nor
 *                none, in row order (the caller codes those above 2^32, as host_codes does)
 *
 * `clamped` is how many end times were replaced; `minutes` is the largest mrel + 1. Each
 * output equals what Aggregator.add computes in NumPy. lo, hi and now must lie within 10^11
 * seconds of 1970 (minutes as int32), and n below 2^31 (rows as int32): ValueError otherwise.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

#include "_kernels.h"

#define BIN 60
#define N_BUFS 10

PyObject *imflow_bin_columns(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "bin_columns takes 12 arguments (see collector/kernels/_aggregate.c)");
        return NULL;
    }
    double lo = PyFloat_AsDouble(args[1]), hi = PyFloat_AsDouble(args[2]), now = PyFloat_AsDouble(args[3]);
    if (PyErr_Occurred())
        return NULL;
    Py_buffer bufs[N_BUFS];
    Held h = {bufs, 0, N_BUFS, "bin_columns"};
    PyObject *result = NULL;
    Py_ssize_t n = buffer_items(args[0], 8);
    if (n < 0)
        return NULL;
    if (n > INT32_MAX || !(fabs(lo) < 1e11 && fabs(hi) < 1e11 && fabs(now) < 1e11)) {
        PyErr_SetString(PyExc_ValueError, "bin_columns: at most 2^31 - 1 rows, and lo, hi, now within 1e11 s of 1970");
        return NULL;
    }
    /* each argument: (index, writable, item size, name); method and violations may be None */
    static const struct { int arg, writable, size; const char *name; } spec[9] = {
        {0, 0, 8, "end"}, {4, 0, 1, "method"}, {5, 0, 1, "has_host"}, {6, 0, 1, "violations"}, {7, 0, 16, "host"},
        {8, 1, 4, "mrel"}, {9, 1, 1, "flag"}, {10, 1, 8, "code"}, {11, 1, 4, "other"}};
    void *p[9];
    for (int j = 0; j < 9; j++) {
        PyObject *o = args[spec[j].arg];
        p[j] = NULL;
        if ((spec[j].arg == 4 || spec[j].arg == 6) && o == Py_None)
            continue;
        if (!(p[j] = held_buffer(&h, o, spec[j].writable, spec[j].size, n, spec[j].name)))
            goto done;
    }
    const double *end = p[0];
    const uint8_t *method = p[1], *has_host = p[2], *violations = p[3];
    const uint64_t *host = p[4];
    int32_t *mrel = p[5];
    uint8_t *flag = p[6];
    uint64_t *code = p[7];
    int32_t *other = p[8];
    Py_ssize_t clamped = 0;
    int64_t least = INT64_MAX, most = INT64_MIN;
    Py_ssize_t others = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        double e = end[i];
        int bad = !(e >= lo && e <= hi); /* NaN fails both */
        clamped += bad;
        e = bad ? now : e;
        /* NumPy: np.floor(end).astype(np.int64) // 60, a floor division */
        int64_t s = (int64_t)floor(e), m = s / BIN;
        m -= (s % BIN != 0) & (s < 0);
        mrel[i] = (int32_t)m; /* |m| < 2^31: every end time lies within lo .. hi or is now */
        least = m < least ? m : least;
        most = m > most ? m : most;
        uint8_t has = has_host[i];
        uint8_t f = has;
        if (violations)
            f |= (uint8_t)(violations[i] << 1);
        if (method)
            f |= (uint8_t)(method[i] << 2);
        flag[i] = f;
        uint64_t ahi = host[2 * i], alo = host[2 * i + 1];
        if ((ahi != 0 || (alo >> 32) != 0xFFFF) && has)
            other[others++] = (int32_t)i;
        code[i] = alo & 0xFFFFFFFFu;
    }
    if (n) /* minutes from the first one: a narrower grouping key */
        for (Py_ssize_t i = 0; i < n; i++)
            mrel[i] -= (int32_t)least;
    Py_END_ALLOW_THREADS
    if (!n)
        least = most = 0;
    result = Py_BuildValue("nLLn", clamped, (long long)least, (long long)(most - least + 1), others);
done:
    held_release(&h);
    return result;
}
