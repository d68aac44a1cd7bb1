"""Located data records -> the columns of one `FlowBatch` (the canonical columns of
`batch.COLUMNS`), one decode group at a time: addresses, ports and interfaces as read;
counters times the sampling rate (the session's, a sampler's from options data, or the
record's own); times as UNIX seconds from whichever representation the template carries
(RFC 7011 §6-7 and IANA IEs 21/22, 150-159; v5 and v9 sysUpTime against the header's
uptime; IPFIX sysUpTime against IE 160); RFC 5103 biflow records as two flows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from collector.kernels.grouping import sole
from collector.netflow import fields as F
from collector.netflow import v5
from collector.netflow.batch import COLUMNS, FlowBatch, repeated
from collector.netflow.chunks import V5, Block, gather, spread
from collector.netflow.errors import Faults
from collector.netflow.reads import Reads
from collector.netflow.session import Session
from collector.netflow.sessions import SessionTable
from collector.netflow.stats import DecodeStats
from collector.netflow.templates import SECTION_WIDTH
from collector.sflow import headers as H

_U8 = np.uint64
ALWAYS = frozenset(("session", "src_addr", "dst_addr", "bytes", "packets", "end"))  # filled whatever is asked


class Columns:
    """Converts a decode call's groups into one batch, filling the columns in `keep` (with
    `ALWAYS`); the others are zeros (the daemon needs neither seq nor start, ...). Columns of
    one value are read-only views of it: the others' zeros, `app_id` when no template carries
    one, the session when one exporter session sent every record."""

    def __init__(self, columns: Iterable[str] | None, table: SessionTable, stats: DecodeStats, faults: Faults):
        self.keep = frozenset(COLUMNS if columns is None else columns) | ALWAYS
        unknown = self.keep - set(COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns: {', '.join(sorted(unknown))}")
        self.table = table  # sessions by id, the configured sampling overrides
        self.stats = stats
        self.faults = faults  # logs a fault once a minute

    def batch(self, groups: dict[object, list]) -> FlowBatch:
        """Every group's records -> one batch. The columns are allocated once for the whole
        batch and each group converts its fields straight into its rows (no per-group
        batches to concatenate); columns the caller did not ask for stay zero views."""
        if not groups:
            return FlowBatch.empty()
        gathered = []  # (template, chunks, gathered chunks, records)
        for t, chunks in groups.items():
            try:
                g = gather(chunks, v5.RECORD_LEN if t is V5 else t.compiled().dtype.itemsize)
            except Exception as exc:  # a decoder bug: this group's records are lost, counted
                self._fault(chunks, exc)
                continue
            gathered.append((t, chunks, g, int(g[1].sum())))
        total = sum(n for *_, n in gathered)
        keep = self.keep
        if "app_id" in keep and not any(t is not V5 and F.applicationId in t.compiled().name for t, *_ in gathered):
            keep = keep - {"app_id"}  # no template of the batch carries one: a zero view, no column of zeros
        sids = np.concatenate([g[2] for _, _, g, _ in gathered]) if gathered else np.zeros(0, np.uint32)
        one = sole(sids)  # one session (the usual batch, from one exporter): its id as a view
        if one:
            keep = keep - {"session"}
        cols = {c: np.empty(total, d) if c in keep else repeated(np.zeros(1, d), total) for c, d in COLUMNS.items()}
        if one:
            cols["session"] = repeated(sids[:1].astype(COLUMNS["session"]), total)
        extra: list[FlowBatch] = []
        cut: list[tuple[int, np.ndarray]] = []  # (first row, rows of the group to drop)
        pos = 0
        for t, chunks, g, n in gathered:
            dst = {c: v[pos:pos + n] for c, v in cols.items()}
            try:
                more, drop = self._group(t, g, n, dst, keep)
                extra.extend(more)
                if drop is not None:
                    cut.append((pos, drop))
            except Exception as exc:  # never lose the other templates' records to one bad group
                cut.append((pos, np.ones(n, bool)))
                self._fault(chunks, exc)
            pos += n
        batch = FlowBatch(**cols)
        if cut:
            kept = np.ones(total, bool)
            for at, drop in cut:
                kept[at:at + len(drop)] &= ~drop
            batch = batch.take(kept)
        return FlowBatch.concat([batch] + extra) if extra else batch

    def _fault(self, chunks: list, exc: Exception) -> None:
        """A group lost to a decoder bug: each of its chunks counted as an internal error of its
        exporter, one log line a minute."""
        label = "other"
        for c in chunks:
            for sid in (c.sids.tolist() if type(c) is Block else (c[2],)):
                sess = self.table.by_sid.get(sid)
                label = sess.stat_label if sess else "other"
                self.stats.errors[label, "internal"] += 1
        self.faults.note("internal", label, exc, internal=True)

    def _group(self, t, g: tuple, n: int, dst: dict, keep: frozenset) -> tuple[list[FlowBatch], np.ndarray | None]:
        """One group's records into `dst` (its rows of every column; those in `keep` are
        written). -> (extra batches: the reverse halves of biflow records, rows of the group to
        drop)."""
        raw, counts, sids, rates, exports, uptimes, dgrams, bases = g

        def put(col: str, value) -> None:  # convert and copy in one pass
            if col in keep:
                np.copyto(dst[col], value, casting="unsafe")

        c = None if t is V5 else t.compiled()
        rd = Reads(raw, counts, v5.RECORD_LEN if c is None else c.dtype.itemsize, c)
        # what comes from the chunks and the fields that need nothing else, in one pass (`Reads`)
        if "session" in keep:
            rd.repeat(sids, dst["session"])
        if "seq" in keep:  # datagram << 20 | record index in it
            put("seq", spread(((dgrams << _U8(20)) | bases).astype(np.int64), counts))
        ctx = _Chunks(counts, sids.tolist(), uptimes, self.table.by_sid)

        if c is None:  # NetFlow v5: the layout is fixed, the rate is the chunk's
            for col, (offset, width) in v5.READS.items():
                if col in ("bytes", "packets"):
                    rd.scaled(offset, width, dst[col], rates)
                elif col in keep:
                    rd.read(offset, width, dst[col])
            if "start" in keep:
                rd.since_uptime(*v5.FIRST, dst["start"], exports, uptimes)
            rd.since_uptime(*v5.LAST, dst["end"], exports, uptimes)
            if "sampling_rate" in keep:
                rd.repeat(rates, dst["sampling_rate"])
            rd.run()
            put("version", 5)
            put("app_id", 0)
            return [], None

        put("version", ctx.first_session().version)
        rd.addr(F.sourceIPv4Address, F.sourceIPv6Address, dst["src_addr"])
        rd.addr(F.destinationIPv4Address, F.destinationIPv6Address, dst["dst_addr"])
        for col, k in (("src_port", F.sourceTransportPort), ("dst_port", F.destinationTransportPort),
                       ("proto", F.protocolIdentifier), ("in_if", F.ingressInterface),
                       ("out_if", F.egressInterface)):
            if col in keep and not rd.into(k, dst[col]):
                v = c.raw(rd.arr, k) if k in c.name else None
                put(col, v if v is not None else 0)
        # the chunk's rate, unless the records carry their own (interval or sampler fields):
        # then the counters are scaled after the rates are known
        chunk_rate = c.interval_field is None and c.sampler_field is None
        scale = rates if chunk_rate else None
        octets = rd.first_into((F.octetDeltaCount, F.postOctetDeltaCount, F.initiatorOctets), dst["bytes"], scale)
        packets = rd.first_into((F.packetDeltaCount, F.postPacketDeltaCount, F.initiatorPackets), dst["packets"],
                                scale)
        if chunk_rate and "sampling_rate" in keep:
            rd.repeat(rates, dst["sampling_rate"])
        want_start = "start" in keep
        times = self._read_times(c, rd, dst, exports, uptimes, ctx, want_start)
        rd.run()  # everything below reads the columns it filled
        app = c.app_ids(rd.arr) if F.applicationId in c.name else None
        put("app_id", app if app is not None else 0)
        export = None if times is None else np.repeat(exports, counts)

        drop = None
        if c.section is not None:
            octets, packets, drop = self._section(c, rd.arr, dst, octets, packets, ctx)
        if scale is None:
            rate = self._rates(c, rd, ctx, np.repeat(rates, counts))
            put("sampling_rate", rate)
        else:  # the chunks' rates, repeated only where a counter still needs them
            rate = (rates, counts)
        _counters(dst, octets, packets, rate, scale is not None)
        if times is not None:
            start, end = self._times(c, times.get, ctx, export, want_start)
            put("start", start)
            put("end", end)
        if not c.has_reverse:
            return [], drop

        # RFC 5103 biflow (or initiator/responder counters): the reverse direction is a flow
        # of its own, where the record says it carried anything.
        r64 = (np.repeat(*rate) if type(rate) is tuple else rate).astype(_U8)
        rb = c.first(rd.arr, (F.reverse(F.octetDeltaCount), F.responderOctets))
        rp = c.first(rd.arr, (F.reverse(F.packetDeltaCount), F.responderPackets))
        rb = rb if rb is not None else np.zeros(n, _U8)
        rp = rp if rp is not None else np.zeros(n, _U8)
        some = (rb > 0) | (rp > 0)
        if not some.any():
            return [], None
        forward = FlowBatch(**dst)
        rev = forward.take(some)
        rev.src_addr, rev.dst_addr = rev.dst_addr, rev.src_addr
        rev.src_port, rev.dst_port = rev.dst_port, rev.src_port
        rev.in_if, rev.out_if = rev.out_if, rev.in_if
        rev.bytes = rb[some] * r64[some]
        rev.packets = rp[some] * r64[some]
        rev.seq = rev.seq | _U8(1 << 19)  # after its forward record in capture order
        keep_fwd = (forward.bytes > 0) | (forward.packets > 0) | ~some
        # flows were counted per record: add the reverse halves, remove the empty forward ones
        delta = Counter(rev.session.tolist())
        delta.subtract(forward.session[~keep_fwd].tolist())
        for sid, k in delta.items():
            sess = self.table.by_sid.get(sid)
            if sess is not None and k:
                self.stats.flows[sess.stat_label, sess.version] += k
        return [rev], (None if keep_fwd.all() else ~keep_fwd)

    def _section(self, c, arr: np.ndarray, dst: dict, octets, packets, ctx: _Chunks) -> tuple:
        """A sampled packet's section (IE 315 dataLinkFrameSection or 313 ipHeaderPacketSection,
        RFC 7133 §5) parsed with the sFlow header parser: addresses, ports and protocol where
        the template has none of its own; bytes from dataLinkFrameSize (312), else ipTotalLength
        (224), else the parsed header's IP length; one packet a record without a packet counter.
        -> (octets, packets, rows to drop: sections that hold no IP packet, when the template
        has no addresses either; counted as notices)."""
        k, var = c.section
        col = arr[c.name[k]]
        n = len(col)
        if var:  # normalised: two octets of length, then the section's first octets
            lengths = (col[:, 0].astype(np.int64) << 8) | col[:, 1]
            mat = col[:, 2:]
        else:
            mat = col if col.ndim == 2 else np.zeros((n, 0), np.uint8)
            lengths = np.full(n, mat.shape[1], np.int64)
            exported = c.uint(arr, F.sectionExportedOctets)
            if exported is not None:
                lengths = np.minimum(lengths, exported.astype(np.int64))
        mat = np.concatenate([mat[:, :SECTION_WIDTH], np.zeros((n, 64), np.uint8)], axis=1)
        lengths = np.minimum(lengths, SECTION_WIDTH)
        proto = H.ETHERNET if k == F.dataLinkFrameSection else H.IP_ANY
        p = H.parse(mat, lengths, np.full(n, proto, np.int64))
        ok = p.status == H.OK
        own = F.sourceIPv4Address in c.name or F.sourceIPv6Address in c.name
        if not own:
            dst["src_addr"][...] = p.src_addr
            dst["dst_addr"][...] = p.dst_addr
            for name, field, value in (("src_port", F.sourceTransportPort, p.src_port),
                                       ("dst_port", F.destinationTransportPort, p.dst_port),
                                       ("proto", F.protocolIdentifier, p.proto)):
                if name in self.keep and field not in c.name:
                    np.copyto(dst[name], value, casting="unsafe")
        if octets is None:
            size = c.uint(arr, F.dataLinkFrameSize) if k == F.dataLinkFrameSection else None
            if size is None:
                size = c.uint(arr, F.ipTotalLength)
            octets = size if size is not None else p.ip_length.astype(_U8)
        if packets is None:
            packets = np.ones(n, _U8)
        if own or ok.all():
            return octets, packets, None
        bad = Counter(np.repeat(np.array(ctx.sids, np.int64), ctx.counts)[~ok].tolist())
        for sid, count in bad.items():
            sess = ctx.session(sid)
            self.stats.notices[sess.stat_label if sess else "other", "section-not-ip"] += count
        return octets, packets, ~ok

    def _read_times(self, c, rd: Reads, dst: dict, exports, uptimes, ctx: _Chunks, want_start: bool) -> dict | None:
        """The template's time fields: straight into the start and end columns where the kernel
        converts them (milliseconds, seconds, a v9 header's sysUpTime) -> None; else {field: its
        values once `rd` has run}, for `_times`."""
        present = [k for k in c.time_fields if k in c.name]  # (start, end), either may be missing
        if not want_start and len(present) == 2:
            present = present[1:]
        kind = c.time_kind
        direct = kind in ("ms", "s") or (kind == "uptime" and ctx.first_session().version == 9)
        if not (direct and present and all(rd.offset(k) is not None for k in present)):
            return {k: rd.native(k) for k in present}
        first_f, last_f = (k if k in c.name else None for k in c.time_fields)
        first_f, last_f = first_f or last_f, last_f or first_f
        for col, k in (("start", first_f), ("end", last_f))[0 if want_start else 1:]:
            offset, width = rd.offset(k), c.width[k]
            if kind == "uptime":
                rd.since_uptime(offset, width, dst[col], exports, uptimes)
            else:
                rd.divided(offset, width, dst[col], 1e3 if kind == "ms" else 1.0)
        return None

    def _rates(self, c, rd: Reads, ctx: _Chunks, base_rate: np.ndarray) -> np.ndarray:
        """Sampling rate per record: a per-record interval, else the record's sampler id in
        the session's sampler table, else the session's rate; a configured override wins."""
        rate = base_rate
        if c.interval_field is not None or c.sampler_field is not None:
            arr = rd.arr
        if c.interval_field is not None:
            interval = c.uint(arr, c.interval_field)
            space = c.uint(arr, c.space_field) if c.space_field else None
            if space is not None:
                rec = np.where(interval > 0, (interval + space) // np.maximum(interval, _U8(1)), 0)
            else:
                rec = interval
            # 0 (unsampled) or past the 32-bit column: the session's rate
            rate = np.where((rec > 0) & (rec <= _U8(0xFFFF_FFFF)), rec, rate).astype(np.uint32)
        elif c.sampler_field is not None:
            ids = c.uint(arr, c.sampler_field)
            sid = np.repeat(np.array(ctx.sids, _U8), ctx.counts)
            pairs, inverse = np.unique(np.stack([sid, ids]), axis=1, return_inverse=True)
            table = np.array([ctx.session(int(s)).samplers.get(int(i), 0) if ctx.session(int(s)) else 0
                              for s, i in pairs.T], np.uint32)
            found = table[inverse.ravel()]
            rate = np.where(found > 0, found, rate).astype(np.uint32)
        if self.table.sampling_override and rate is not base_rate:
            over = np.fromiter((bool(ctx.session(s) and ctx.session(s).override) for s in ctx.sids),
                               bool, len(ctx.sids))
            if over.any():
                rate = np.where(np.repeat(over, ctx.counts), base_rate, rate).astype(np.uint32)
        return rate

    def _times(self, c, read, ctx: _Chunks, export: np.ndarray, want_start: bool = True) -> tuple:
        """(start, end) in UNIX seconds; start is None unless wanted. `read(k)`: the values of
        time field k (unsigned integers, either byte order)."""
        kind = c.time_kind
        if kind == "export":
            return (export if want_start else None), export
        first_f, last_f = (k if k in c.name else None for k in c.time_fields)
        first_f, last_f = first_f or last_f, last_f or first_f
        if kind == "ms":
            conv = lambda v: v / 1e3  # noqa: E731
        elif kind == "s":
            conv = lambda v: v.astype(np.float64)  # noqa: E731
        elif kind == "ntp":
            conv = _ntp
        elif kind == "delta":
            conv = lambda v: export - v / 1e6  # noqa: E731
        elif ctx.first_session().version == 9:  # sysUpTime-relative, uptime from the v9 header
            uptime = ctx.uptime()
            conv = lambda v: export + _uptime_delta(v, uptime)  # noqa: E731
        else:  # sysUpTime-relative IPFIX needs IE 160 from options data
            inits = []
            for s, count in zip(ctx.sids, ctx.counts.tolist()):
                sess = ctx.session(s)
                if sess and sess.system_init_ms is not None:
                    inits.append(sess.system_init_ms)
                else:
                    inits.append(-1)
                    self.stats.notices[sess.stat_label if sess else "other", "no-system-init-time"] += count
            init = np.repeat(np.array(inits, np.float64), ctx.counts)
            missing = init < 0
            conv = lambda v: np.where(missing, export, (init + v) / 1e3)  # noqa: E731
        end = conv(read(last_f))  # each conversion reads the column once
        return (conv(read(first_f)) if want_start else None), end


class _Chunks:
    """What `Columns._group` needs to know about the chunks of one decode group."""

    __slots__ = ("counts", "sids", "uptimes", "by_sid")

    def __init__(self, counts, sids, uptimes, by_sid):
        self.counts, self.sids, self.uptimes, self.by_sid = counts, sids, uptimes, by_sid

    def session(self, sid: int) -> Session | None:
        return self.by_sid.get(sid)

    def first_session(self) -> Session:
        return self.by_sid[self.sids[0]]

    def uptime(self) -> np.ndarray:
        return np.repeat(np.asarray(self.uptimes).astype(np.uint32), self.counts)


def _counters(dst: dict, octets, packets, rate: np.ndarray | tuple, scaled: bool) -> None:
    """Bytes and packets (either may be missing: 0) times the sampling rate (per record, or
    (per chunk, records per chunk)), into `dst`. A counter may already be in its column (the
    kernel read it there): scaled in place, unless `scaled` says the read scaled it already."""
    todo = []
    for col, v in (("bytes", octets), ("packets", packets)):
        if v is None:
            dst[col][...] = 0
        elif not (scaled and v is dst[col]):
            todo.append((col, v))
    if not todo:
        return
    if type(rate) is tuple:
        rate = np.repeat(*rate)
    ones = bool((rate == 1).all())
    r64 = None if ones else rate.astype(_U8)
    for col, v in todo:
        if ones:
            if v is not dst[col]:
                np.copyto(dst[col], v, casting="unsafe")
        else:
            np.multiply(v, r64, out=dst[col], casting="unsafe")


def _uptime_delta(t: np.ndarray, uptime: np.ndarray) -> np.ndarray:
    """Seconds from the header's sysUpTime to `t`, both 32-bit milliseconds (wrap-safe)."""
    d = (t.astype(np.uint32) - uptime.astype(np.uint32)).view(np.int32)  # wraps mod 2^32, signed
    return d / 1e3


def _ntp(v: np.ndarray) -> np.ndarray:
    return (v >> _U8(32)).astype(np.float64) - F.NTP_EPOCH_OFFSET + (v & _U8(0xFFFFFFFF)) / 2.0**32
