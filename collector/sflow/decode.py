"""sFlow v5 into the decoder's sessions and its columnar `FlowBatch` (docs/sflow.md).

The NetFlow decoder (`collector.netflow.decoder`) hands every datagram that starts with the
sFlow v5 version word to `SflowDecoder.datagram`, which checks it whole (`datagram.parse`)
and only then applies it: the session of (exporter address, source port, agent address,
sub-agent id), its datagram sequence numbers (loss estimated as NetFlow v9's: a gap of N
datagrams is N times the mean flow samples per datagram so far), the sample pool and drops
per data source, the latest interface counters per ifIndex. Flow samples wait as rows until
the end of the decode call, when `take` turns all of them into one batch at once: the raw
packet headers are parsed as columns (`headers.parse`), bytes are the frame length times the
sampling rate and packets the sampling rate (sampled_ipv4/ipv6: the IP length times the rate).

Per-agent state never crosses sessions; every table keyed by what the agent sends has a
ceiling (`Limits.max_samplers_per_session` data sources, `Limits.max_names_per_session`
interfaces).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import numpy as np

from collector.netflow.batch import V4_MAPPED, FlowBatch
from collector.sflow import headers as H
from collector.sflow.datagram import Counters, parse

VERSION = "sflow5"  # the session's version: the `version` label of the datagram and flow counters
VERSION_COLUMN = 0xF5  # the `version` column of sFlow rows (NetFlow's are 5, 9, 10)
_WRAP = 1 << 32


@dataclass(slots=True)
class Source:
    """One data source of an agent (a port or VLAN sampling packets)."""

    seq: int
    pool: int
    drops: int


@dataclass(slots=True)
class Agent:
    """What an sFlow session keeps beyond `Session`'s common fields."""

    agent: str  # the agent address the datagrams carry
    sub_agent: int
    sources: dict[int, Source] = field(default_factory=dict)
    interfaces: dict[int, Counters] = field(default_factory=dict)  # ifIndex -> latest if_counters
    samples: int = 0  # flow samples received
    pool: int = 0  # packets the sources saw between the samples received (sum of pool deltas)
    drops: int = 0  # samples the agent dropped for lack of resources (sum of drop deltas)
    lost: int = 0  # flow samples lost on the way, from sample sequence numbers
    told: tuple = (0, 0, 0, 0)  # (samples, pool, drops, lost) as last added to DecodeStats.sampling

    def tell(self, sampling, label: str) -> None:
        """Add what changed since the last call to `DecodeStats.sampling` (once per decode call)."""
        now = (self.samples, self.pool, self.drops, self.lost)
        for what, new, old in zip(("samples", "pool", "drops", "lost"), now, self.told):
            if new != old:
                sampling[label, what] += new - old
        self.told = now


class SflowDecoder:
    """Holds the flow samples of the current decode call; sessions live in the decoder's table."""

    def __init__(self, table, stats, limits):
        self.table = table
        self.stats = stats
        self.limits = limits
        self._rows: list[tuple] = []  # (sid, rate, in, out, received, seq key, Flow)
        self._agents: dict = {}  # agent address (octets, or an int on the bulk path) -> text (a bounded cache)
        self._bulk: list[FlowBatch] = []  # what the bulk path (`bulk.bulk`) decoded this call

    def datagram(self, data, exporter: str, port: int, received: float, dgram: int, touched: set) -> None:
        """One datagram; raises DecodeError (nothing applied) when malformed."""
        dg = parse(data)
        agent = self._agents.get(dg.agent)
        if agent is None:
            agent = str(ipaddress.ip_address(dg.agent))
            if len(self._agents) >= 4096:
                self._agents.clear()
            self._agents[dg.agent] = agent
        sess = self.table.open((exporter, port, VERSION, (agent, dg.sub_agent)), received)
        state = sess.sflow
        if state is None:
            state = sess.sflow = Agent(agent, dg.sub_agent)
        touched.add(sess)
        sess.n_datagrams += 1
        sess.track_sequence(dg.seq, len(dg.flows), True)
        label = sess.stat_label
        notices = self.stats.notices
        rows = self._rows
        sources = state.sources
        sid, override, key = sess.sid, sess.override, dgram << 20
        for i, f in enumerate(dg.flows):
            old = sources.get(f.source)
            if old is not None and (f.seq - old.seq - 1) % _WRAP == 0:  # the usual: the next sample
                state.pool += (f.pool - old.pool) % _WRAP
                state.drops += (f.drops - old.drops) % _WRAP
                old.seq, old.pool, old.drops = f.seq, f.pool, f.drops
            else:
                self._source(state, f.source, f.seq, f.pool, f.drops)
            rate = override or f.rate
            if not rate:
                notices[label, "sflow-rate-zero"] += 1
                rate = 1
            rows.append((sid, rate, f.in_if, f.out_if, received, key | i, f))
        sess.n_flows += len(dg.flows)
        state.samples += len(dg.flows)
        for c in dg.counters:
            if c.if_index in state.interfaces or len(state.interfaces) < self.limits.max_names_per_session:
                state.interfaces[c.if_index] = c
            else:
                self.stats.evicted["sflow-interfaces"] += 1
        if dg.skipped:
            notices[label, "sflow-skipped-records"] += dg.skipped
        if dg.flows:
            sess.established = True

    def _source(self, state: Agent, source: int, seq: int, pool: int, drops: int) -> None:
        old = state.sources.get(source)
        if old is None:
            if len(state.sources) >= self.limits.max_samplers_per_session:
                self.stats.evicted["sflow-sources"] += 1
                return
            state.sources[source] = Source(seq, pool, drops)
            return
        gap = (seq - old.seq - 1) % _WRAP
        if gap < _WRAP // 2:  # otherwise a restart or reordering: re-synchronise
            state.lost += gap
            state.pool += (pool - old.pool) % _WRAP
            state.drops += (drops - old.drops) % _WRAP
        old.seq, old.pool, old.drops = seq, pool, drops

    def pending(self) -> int:
        return len(self._rows) + len(self._bulk)

    def take(self) -> FlowBatch:
        """The flow samples of this call as one batch (rows in arrival order), cleared."""
        done, self._bulk = self._bulk, []
        if done:
            return FlowBatch.concat(done + [self._take()])
        return self._take()

    def _take(self) -> FlowBatch:
        rows, self._rows = self._rows, []
        if not rows:
            return FlowBatch.empty()
        n = len(rows)
        out = FlowBatch.empty(n)
        sid, rate, in_if, out_if, received, seq, flows = zip(*rows)
        out.session[:] = sid
        out.version[:] = VERSION_COLUMN
        rates = np.array(rate, np.uint64)
        out.sampling_rate[:] = rates
        out.in_if[:] = in_if
        out.out_if[:] = out_if
        out.start[:] = received
        out.end[:] = received
        out.seq[:] = seq
        out.packets[:] = rates
        keep = np.zeros(n, bool)
        headers = [f.header for f in flows]
        protocols = [f.header_protocol for f in flows]
        frames = [f.frame_length for f in flows]
        with_header = np.flatnonzero(np.fromiter(map(bool, headers), bool, n))  # a raw header record came
        ok_rows = with_header
        if len(with_header):
            idx = with_header
            all_rows = len(idx) == n
            mat, lengths = H.matrix(headers if all_rows else [headers[i] for i in idx.tolist()])
            p = H.parse(mat, lengths, np.array(protocols, np.int64) if all_rows else np.array(protocols, np.int64)[idx])
            ok = p.status == H.OK
            good = idx[ok]
            out.src_addr[good] = p.src_addr[ok]
            out.dst_addr[good] = p.dst_addr[ok]
            out.src_port[good] = p.src_port[ok]
            out.dst_port[good] = p.dst_port[ok]
            out.proto[good] = p.proto[ok]
            frame = np.array(frames, np.uint64)
            out.bytes[good] = frame[good] * rates[good]
            keep[good] = True
            ok_rows = good
            if not ok.all():
                self._count_bad(idx[~ok], p.status[~ok], out.session, flows)
        if len(ok_rows) < n:  # no usable header: the sampled_ipv4/6 record, if any
            done = set(ok_rows.tolist())
            for i, f in enumerate(flows):
                if i in done:
                    continue
                if f.ip is None:
                    if not f.header:  # neither a raw header nor a sampled IPv4/IPv6 record
                        sess = self.table.by_sid.get(int(out.session[i]))
                        self.stats.notices[sess.stat_label if sess else "other", "sflow-no-header"] += 1
                    continue
                length, proto, src, dst, sport, dport = f.ip
                out.src_addr[i] = _addr(src)
                out.dst_addr[i] = _addr(dst)
                out.proto[i], out.src_port[i], out.dst_port[i] = proto, sport, dport
                out.bytes[i] = length * int(rates[i])
                keep[i] = True
        return out if keep.all() else out.take(keep)

    def _count_bad(self, idx: np.ndarray, status: np.ndarray, sids: np.ndarray, flows) -> None:
        """Samples whose header gave no IP flow (and no sampled_ipv4/6 record stands in)."""
        for i, s in zip(idx.tolist(), status.tolist()):
            if flows[i].ip is not None:
                continue
            sess = self.table.by_sid.get(int(sids[i]))
            label = sess.stat_label if sess is not None else "other"
            self.stats.notices[label, "sflow-not-ip" if s == H.NOT_IP else "sflow-truncated-header"] += 1


FIGURES = {"samples": ("imflow_sflow_samples", "sFlow flow samples received"),
           "pool": ("imflow_sflow_sample_pool_packets", "Packets the agents' data sources saw between the samples "
                    "received (sample pool growth): pool / samples is the effective sampling rate"),
           "drops": ("imflow_sflow_agent_drops", "Samples the agents dropped for lack of resources (their drops "
                     "counters)"),
           "lost": ("imflow_sflow_samples_lost", "Flow samples lost between agent and imflow (gaps in the sample "
                    "sequence numbers per data source)")}


def figures(stats) -> dict:
    """The sampling figures of `DecodeStats.sampling` as metric families (Snapshot.figures)."""
    out: dict = {}
    for (exporter, what), n in stats.sampling.items():
        name, doc = FIGURES[what]
        out.setdefault(name, ("counter", doc, ["exporter"], {}))[3][(exporter,)] = n
    return out


def _addr(octets: bytes) -> tuple[int, int]:
    if len(octets) == 4:
        return 0, int(V4_MAPPED) | int.from_bytes(octets, "big")
    v = int.from_bytes(octets, "big")
    return v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF

