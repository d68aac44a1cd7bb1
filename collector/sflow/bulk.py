"""The bulk path for sFlow v5: the usual datagrams of a batch, walked and read all at once.

The per-datagram path (`datagram.parse`, `decode.SflowDecoder.datagram`) costs a few
microseconds of Python per flow sample. Here the batch's sFlow datagrams are joined into one
buffer and walked as NumPy columns: one step per sample position for every datagram at once,
then one step per record position for every flow sample at once; the raw headers are gathered
straight from the joined buffer into the header matrix. Python remains per datagram (session,
sequence number, counter samples) and per (agent, data source), not per sample.

A datagram takes this path only when that cannot change what the per-datagram path would do:
an IPv4 agent address, at most `MAX_SAMPLES` samples of at most `MAX_RECORDS` records, every
length consistent, every flow sample with one valid raw packet header record and no sampled
IPv4/IPv6 record. From a session's first datagram that is not so, its later datagrams of the
batch go the other way too, in order (after the bulk path's, which came before them), so
sequence numbers and data source state see the same order either way. Everything else keeps
its original checks, errors and counters there.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from collector.netflow.batch import FlowBatch
from collector.netflow.errors import DecodeError
from collector.sflow import headers as H
from collector.sflow.datagram import MAX_FRAME, UNKNOWN_IF, Datagram, _counter_sample
from collector.sflow.decode import VERSION, VERSION_COLUMN, Agent, Source

MAX_SAMPLES = 32  # sample positions walked per datagram
MAX_RECORDS = 8  # record positions walked per flow sample
MIN_BATCH = 8  # fewer sFlow datagrams than this: the per-datagram path
_WRAP = 1 << 32
_HALF = 1 << 31


def bulk(sf, items, idx: list[int], base: int, touched: set) -> list[int]:
    """`sf`: the SflowDecoder. Decode the datagrams `items[i]` for i in `idx` that can take the
    bulk path; returns the indices left for the per-datagram path, in order."""
    n = len(idx)
    if n < MIN_BATCH:
        return idx
    datas = [items[i][0] for i in idx]
    lens = np.fromiter(map(len, datas), np.int64, n)
    joined = b"".join(datas) + bytes(H.MAX_HEADER + 64)  # reads past the end find zeros
    u8 = np.frombuffer(joined, np.uint8)
    top = len(u8) - 4
    off = np.zeros(n, np.int64)
    np.cumsum(lens[:-1], out=off[1:])
    end = off + lens

    def w(pos):
        p = np.minimum(pos, top)
        return ((u8[p].astype(np.int64) << 24) | (u8[p + 1].astype(np.int64) << 16)
                | (u8[p + 2].astype(np.int64) << 8) | u8[p + 3])

    ok = (lens >= 28) & (w(off + 4) == 1)
    agent, sub, seq, nsamp = w(off + 8), w(off + 12), w(off + 16), w(off + 24)
    ok &= nsamp <= MAX_SAMPLES
    ok &= nsamp * 8 <= lens - 28

    # the samples: one step per position, all datagrams at once
    pos = off + 28
    d_l, body_l, fmt_l, stop_l, step_l = [], [], [], [], []
    for step in range(MAX_SAMPLES):
        a = np.flatnonzero(ok & (step < nsamp))
        if not len(a):
            break
        p = pos[a]
        fmt, length = w(p), w(p + 4)
        good = (p + 8 + length <= end[a]) & (length % 4 == 0)
        ok[a[~good]] = False
        a, p, fmt, length = a[good], p[good], fmt[good], length[good]
        d_l.append(a)
        body_l.append(p + 8)
        fmt_l.append(fmt)
        stop_l.append(p + 8 + length)
        step_l.append(np.full(len(a), step, np.int64))
        pos[a] = p + 8 + length
    if not d_l:
        return idx
    d, body, fmt, stop, step = (np.concatenate(x) for x in (d_l, body_l, fmt_l, stop_l, step_l))
    order = np.lexsort((step, d))
    d, body, fmt, stop = d[order], body[order], fmt[order], stop[order]

    # flow samples (compact and expanded): their fixed fields, then their records
    fl = (fmt == 1) | (fmt == 3)
    fd, fb, fe, ex = d[fl], body[fl], stop[fl], fmt[fl] == 3
    need = np.where(ex, 44, 32)
    okf = fb + need <= fe
    f_seq = w(fb)
    f_source = np.where(ex, ((w(fb + 4) & 0xFF) << 24) | (w(fb + 8) & 0xFFFFFF), w(fb + 4))
    f_rate = np.where(ex, w(fb + 12), w(fb + 8))
    f_pool = np.where(ex, w(fb + 16), w(fb + 12))
    f_drops = np.where(ex, w(fb + 20), w(fb + 16))
    cin, cout = w(fb + 20), w(fb + 24)
    cin = np.where(((cin >> 30) == 0) & ((cin & 0x3FFFFFFF) != UNKNOWN_IF), cin & 0x3FFFFFFF, 0)
    cout = np.where(((cout >> 30) == 0) & ((cout & 0x3FFFFFFF) != UNKNOWN_IF), cout & 0x3FFFFFFF, 0)
    ein, eout = w(fb + 28), w(fb + 36)
    ein = np.where((w(fb + 24) == 0) & (ein != UNKNOWN_IF), ein, 0)
    eout = np.where((w(fb + 32) == 0) & (eout != UNKNOWN_IF), eout, 0)
    f_in, f_out = np.where(ex, ein, cin), np.where(ex, eout, cout)
    nrec = np.where(ex, w(fb + 40), w(fb + 28))
    rp = fb + need
    okf &= (nrec <= MAX_RECORDS) & (nrec * 8 <= fe - rp)
    nf = len(fd)
    h_at = np.zeros(nf, np.int64)
    h_len = np.zeros(nf, np.int64)
    h_proto = np.zeros(nf, np.int64)
    h_frame = np.zeros(nf, np.int64)
    skipped = np.zeros(nf, np.int64)
    for r in range(MAX_RECORDS):
        act = okf & (r < nrec)
        if not act.any():
            break
        rf, rl = w(rp), w(rp + 4)
        good = (rp + 8 + rl <= fe) & (rl % 4 == 0)
        okf &= ~act | good
        act &= good
        hdr = act & (rf == 1)
        hl, fr = w(rp + 20), w(rp + 12)
        valid = (rl >= 16) & (hl <= rl - 16) & (hl > 0) & (fr <= MAX_FRAME)
        okf &= ~hdr | valid
        h_at = np.where(hdr, rp + 24, h_at)
        h_len = np.where(hdr, hl, h_len)
        h_proto = np.where(hdr, w(rp + 8), h_proto)
        h_frame = np.where(hdr, fr, h_frame)
        okf &= ~(act & ((rf == 3) | (rf == 4)))  # sampled IPv4/IPv6: the per-datagram path
        known = (rf == 1) | ((rf == 1001) & (rl >= 16)) | ((rf == 1002) & (rl >= 12))
        skipped += act & ~known
        rp = np.where(act, rp + 8 + rl, rp)
    okf &= h_len > 0
    ok[fd[~okf]] = False
    # counter samples (a few): read in Python now, so that a malformed one sends its datagram
    # the other way before anything is applied
    counters: dict[int, Datagram] = {}
    csel = ok[d] & ((fmt == 2) | (fmt == 4))
    for j, b, s, f in zip(d[csel].tolist(), body[csel].tolist(), stop[csel].tolist(), fmt[csel].tolist()):
        dg = counters.get(j)
        if dg is None:
            dg = counters[j] = Datagram(b"", 0, 0, 0)
        try:
            _counter_sample(datas[j], b - int(off[j]), s - int(off[j]), f == 4, dg)
        except DecodeError:
            ok[j] = False

    # sessions, per datagram; from a session's first datagram left out, the rest of its go too
    sources = [items[i][1] for i in idx]
    keys: list = [None] * n
    agents = sf._agents
    agent_l, sub_l = agent.tolist(), sub.tolist()
    shape_ok = ((lens >= 28) & (w(off + 4) == 1)).tolist()
    slow_keys = set()
    go: list[int] = []
    ok_l = ok.tolist()
    for j in range(n):
        if not shape_ok[j]:
            continue
        a = agent_l[j]
        text = agents.get(a)
        if text is None:
            text = f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"
            if len(agents) >= 4096:
                agents.clear()
            agents[a] = text
        key = (sources[j][0], sources[j][1], text, sub_l[j])
        keys[j] = key
        if not ok_l[j]:
            slow_keys.add(key)
        elif key not in slow_keys:
            go.append(j)
    if not go:
        return idx
    take = np.zeros(n, bool)
    take[go] = True
    rest = [idx[j] for j in range(n) if not take[j]]

    # the datagrams taken: sessions, sequence numbers, counter samples, tallies
    fsel = take[fd]
    fd, f_seq, f_source, f_rate, f_pool, f_drops = (x[fsel] for x in (fd, f_seq, f_source, f_rate, f_pool, f_drops))
    f_in, f_out, h_at, h_len, h_proto, h_frame, skipped = (x[fsel] for x in (f_in, f_out, h_at, h_len, h_proto,
                                                                             h_frame, skipped))
    flows_per = np.bincount(fd, minlength=n)
    skipped_per = np.bincount(fd, weights=skipped, minlength=n).astype(np.int64)
    other = take[d] & ~((fmt == 1) | (fmt == 2) | (fmt == 3) | (fmt == 4))
    skipped_per += np.bincount(d[other], minlength=n)
    table, stats, limits = sf.table, sf.stats, sf.limits
    sid_of = np.zeros(n, np.int64)
    override_of = np.zeros(n, np.int64)
    seq_l, fl_l, sk_l = seq.tolist(), flows_per.tolist(), skipped_per.tolist()
    for j in go:
        i = idx[j]
        received = items[i][2]
        key = keys[j]
        sess = table.open((key[0], key[1], VERSION, (key[2], key[3])), received)
        state = sess.sflow
        if state is None:
            state = sess.sflow = Agent(key[2], key[3])
        touched.add(sess)
        sess.n_datagrams += 1
        nfl = fl_l[j]
        sess.track_sequence(seq_l[j], nfl, True)
        sess.n_flows += nfl
        state.samples += nfl
        if nfl:
            sess.established = True
        dg = counters.get(j)
        if dg is not None:
            for c in dg.counters:
                if c.if_index in state.interfaces or len(state.interfaces) < limits.max_names_per_session:
                    state.interfaces[c.if_index] = c
                else:
                    stats.evicted["sflow-interfaces"] += 1
            sk_l[j] += dg.skipped
        if sk_l[j]:
            stats.notices[sess.stat_label, "sflow-skipped-records"] += sk_l[j]
        sid_of[j] = sess.sid
        override_of[j] = sess.override or 0
    if not len(fd):
        return rest
    f_sid = sid_of[fd]
    _sources(sf, f_sid, f_source, f_seq, f_pool, f_drops)

    # the rows
    m = len(fd)
    rate = np.where(override_of[fd] > 0, override_of[fd], f_rate)
    zero = rate == 0
    if zero.any():
        for sid, k in Counter(f_sid[zero].tolist()).items():
            stats.notices[table.by_sid[sid].stat_label, "sflow-rate-zero"] += k
        rate = np.where(zero, 1, rate)
    first = np.searchsorted(fd, fd, side="left")  # each sample's rank among its datagram's flow samples
    rank = np.arange(m) - first
    dnum = np.array(idx, np.int64)[fd] + base + 1
    received = np.array([items[i][2] for i in idx], np.float64)[fd]
    out = FlowBatch.empty(m)
    out.session[:] = f_sid
    out.version[:] = VERSION_COLUMN
    out.sampling_rate[:] = rate
    out.packets[:] = rate
    out.in_if[:] = f_in
    out.out_if[:] = f_out
    out.start[:] = received
    out.end[:] = received
    out.seq[:] = (dnum << 20) | rank
    width = int(min(h_len.max(), H.MAX_HEADER))
    lengths = np.minimum(h_len, width)
    mat = np.zeros((m, width + 64), np.uint8)
    windows = np.lib.stride_tricks.sliding_window_view(u8, width)  # a view: row k = octets k..k+width
    mat[:, :width] = windows[np.minimum(h_at, len(windows) - 1)]
    p = H.parse(mat, lengths, h_proto)
    good = p.status == H.OK
    out.src_addr[:] = p.src_addr
    out.dst_addr[:] = p.dst_addr
    out.src_port[:] = p.src_port
    out.dst_port[:] = p.dst_port
    out.proto[:] = p.proto
    out.bytes[:] = h_frame.astype(np.uint64) * rate.astype(np.uint64)
    if not good.all():
        bad = ~good
        for (sid, status), k in Counter(zip(f_sid[bad].tolist(), p.status[bad].tolist())).items():
            reason = "sflow-not-ip" if status == H.NOT_IP else "sflow-truncated-header"
            stats.notices[table.by_sid[sid].stat_label, reason] += k
        out = out.take(good)
    sf._bulk.append(out)
    return rest


def _sources(sf, sid, source, seq, pool, drops) -> None:
    """Per (session, data source), in arrival order: what `SflowDecoder._source` does sample
    by sample, as differences over each group's run of samples."""
    m = len(sid)
    order = np.lexsort((np.arange(m), source, sid))
    s_sid, s_src = sid[order], source[order]
    starts = np.flatnonzero(np.r_[True, (s_sid[1:] != s_sid[:-1]) | (s_src[1:] != s_src[:-1])])
    ends = np.r_[starts[1:], m]
    sq, pl, dr = seq[order], pool[order], drops[order]
    gap = (sq[1:] - sq[:-1] - 1) % _WRAP
    dpool = (pl[1:] - pl[:-1]) % _WRAP
    ddrop = (dr[1:] - dr[:-1]) % _WRAP
    within = np.ones(max(m - 1, 0), bool)
    within[ends[:-1] - 1] = False  # the step from one group to the next is no step
    valid = within & (gap < _HALF)
    # per group: sums of the valid steps inside it
    cum = lambda v: np.r_[0, np.cumsum(np.where(valid, v, 0))]  # noqa: E731
    cg, cp, cd = cum(gap), cum(dpool), cum(ddrop)
    # groups in order of their first sample, as the per-sample path meets them
    first_at = order[starts]
    by_sid = sf.table.by_sid
    limits, stats = sf.limits, sf.stats
    for g in np.argsort(first_at, kind="stable").tolist():
        a, b = int(starts[g]), int(ends[g])
        sess = by_sid[int(s_sid[a])]
        state = sess.sflow
        src = int(s_src[a])
        old = state.sources.get(src)
        if old is None:
            if len(state.sources) >= limits.max_samplers_per_session:
                stats.evicted["sflow-sources"] += b - a
                continue
            old = state.sources[src] = Source(int(sq[a]), int(pl[a]), int(dr[a]))
        else:
            g0 = (int(sq[a]) - old.seq - 1) % _WRAP
            if g0 < _HALF:
                state.lost += g0
                state.pool += (int(pl[a]) - old.pool) % _WRAP
                state.drops += (int(dr[a]) - old.drops) % _WRAP
        state.lost += int(cg[b - 1] - cg[a])
        state.pool += int(cp[b - 1] - cp[a])
        state.drops += int(cd[b - 1] - cd[a])
        old.seq, old.pool, old.drops = int(sq[b - 1]), int(pl[b - 1]), int(dr[b - 1])

