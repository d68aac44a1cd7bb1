"""`imflow decode`: a capture of export traffic (NetFlow v5/v9, IPFIX, sFlow v5) -> flow
records as JSON lines or a table. Names the exporter sent (interfaces, applications) are
written through `collector.text`. An sFlow record says "sflow5" as its version and names its
agent and sub-agent instead of an observation domain; the summary adds each agent's sampling
figures (samples, sample pool, agent drops, samples lost in transit).

The capture is fed through the same `Decoder` as the daemon, in batches and in capture order,
so what this prints is what the daemon would have counted.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import IO, Iterable

import numpy as np

from collector.tools.capture import CaptureError, read_capture
from collector.netflow.batch import FlowBatch, addr_to_str
from collector.netflow.decoder import Decoder
from collector.netflow.templates import app_id_text
from collector.sflow.decode import VERSION as SFLOW, VERSION_COLUMN as SFLOW_COLUMN
from collector.text import json_text, printable

BATCH = 4096
PROTO = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "ipv6-icmp", 132: "sctp"}


def flow_dicts(batch: FlowBatch, dec: Decoder) -> Iterable[dict]:
    """One dict per flow, in capture order (the `imflow decode` JSON shape)."""
    order = np.argsort(batch.seq, kind="stable")
    cols = {name: getattr(batch, name)[order].tolist() for name in (
        "session", "version", "src_port", "dst_port", "proto", "bytes", "packets",
        "sampling_rate", "start", "end", "in_if", "out_if", "app_id")}
    src, dst = batch.src_addr[order], batch.dst_addr[order]
    for i in range(len(order)):
        sess = dec.by_sid.get(cols["session"][i])
        sflow = sess.sflow if sess else None
        rec = {
            "exporter": sess.label if sess else "?",
            "version": SFLOW if cols["version"][i] == SFLOW_COLUMN else cols["version"][i],
            "domain": sess.domain if sess and sflow is None else None,
            "src_addr": addr_to_str(src[i]["hi"], src[i]["lo"]),
            "dst_addr": addr_to_str(dst[i]["hi"], dst[i]["lo"]),
            "src_port": cols["src_port"][i],
            "dst_port": cols["dst_port"][i],
            "proto": cols["proto"][i],
            "bytes": cols["bytes"][i],
            "packets": cols["packets"][i],
            "sampling_rate": cols["sampling_rate"][i],
            "start": round(cols["start"][i], 3),
            "end": round(cols["end"][i], 3),
            "in_if": cols["in_if"][i],
            "out_if": cols["out_if"][i],
        }
        if sflow is not None:  # the agent address came from the datagram: printable
            rec["agent"] = printable(sflow.agent)
            rec["sub_agent"] = sflow.sub_agent
        app = cols["app_id"][i]
        if app:
            rec["app_id"] = app_id_text(app)
            name = sess.app_names.get(app) if sess else None
            if name:
                rec["app_name"] = name
        if sess and sess.if_names:
            for side in ("in_if", "out_if"):
                name = sess.if_names.get(rec[side])
                if name:
                    rec[f"{side}_name"] = name
        yield rec


TABLE = "{start:<23} {exporter:<21} {version:>6} {proto:<5} {src:>41} -> {dst:<41} {bytes:>12} {packets:>9} {rate:>5} {ifs:>9}"


def _table_line(r: dict) -> str:
    def ep(a, p):
        return f"[{a}]:{p}" if ":" in a else f"{a}:{p}"
    ts = datetime.fromtimestamp(r["start"], timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:23]
    return TABLE.format(start=ts, exporter=printable(r["exporter"]), version=r["version"],
                        proto=PROTO.get(r["proto"], str(r["proto"])),
                        src=ep(r["src_addr"], r["src_port"]), dst=ep(r["dst_addr"], r["dst_port"]),
                        bytes=r["bytes"], packets=r["packets"], rate=r["sampling_rate"],
                        ifs=f"{r['in_if']}/{r['out_if']}")


def decode_capture(path: str, out: IO[str], fmt: str = "jsonl", ports: list[int] | None = None,
                   templates_in: str | None = None, templates_out: str | None = None) -> str:
    datagrams, cap_stats = read_capture(path)
    dec = Decoder()
    if templates_in:
        dec.load_state(templates_in)
    wanted = set(ports or ())
    if fmt == "table":
        out.write(TABLE.format(start="start (UTC)", exporter="exporter", version="v", proto="proto",
                               src="source", dst="destination", bytes="bytes", packets="packets",
                               rate="rate", ifs="in/out") + "\n")
    pending: list = []
    last_time = 0.0
    flows = 0

    def flush() -> int:
        batch = dec.decode(pending)
        pending.clear()
        for rec in flow_dicts(batch, dec):
            out.write(json_text(rec) + "\n" if fmt == "jsonl" else _table_line(rec) + "\n")
        return len(batch)

    for d in datagrams:
        if wanted and d.dport not in wanted:
            continue
        pending.append((d.payload, (d.src, d.sport), d.time))
        last_time = d.time
        if len(pending) >= BATCH:
            flows += flush()
    flows += flush()
    still_held = dec.pending_count()
    dec.expire(last_time)
    if templates_out:
        dec.save_state(templates_out)
    if not dec.stats.datagrams:
        raise CaptureError(not_export(path, cap_stats, dec, bool(wanted)))
    return summary(dec, cap_stats, flows, still_held)


def not_export(path: str, cap_stats, dec: Decoder, port_filter: bool) -> str:
    """Why a capture with no NetFlow v5/v9, IPFIX or sFlow datagram at all is not what `decode` reads:
    most often a capture of the traffic itself rather than of the router's export."""
    skipped = ", ".join(f"{k} {v}" for k, v in sorted(cap_stats.skipped.items()))
    errors = ", ".join(f"{k} {v}" for k, v in sorted(dec.stats.by_second("errors").items()))
    seen = (f"{cap_stats.frames} frames, {cap_stats.datagrams} UDP datagrams"
            + (f" ({'none to the --port ports is' if port_filter else 'none is'} NetFlow v5/v9, IPFIX or sFlow"
               + (f"; {errors}" if errors else "") + ")" if cap_stats.datagrams else "")
            + (f", skipped {skipped}" if skipped else ""))
    return (f"{path}: not a capture of NetFlow/IPFIX/sFlow export: {seen}. Capture the router's export "
            "datagrams where imflow receives them, e.g. tcpdump -i any -w export.pcap udp port 2055")


def summary(dec: Decoder, cap_stats, flows: int, still_held: int) -> str:
    s = dec.stats
    by_version: dict[int, list[int]] = {}
    for (_, v), n in s.datagrams.items():
        by_version.setdefault(v, [0, 0])[0] += n
    for (_, v), n in s.flows.items():
        by_version.setdefault(v, [0, 0])[1] += n
    names = {5: "v5", 9: "v9", 10: "ipfix", SFLOW: "sflow5"}
    lines = [f"capture: {cap_stats.frames} frames, {cap_stats.datagrams} UDP datagrams"
             + (", skipped " + ", ".join(f"{k} {v}" for k, v in sorted(cap_stats.skipped.items()))
                if cap_stats.skipped else "")]
    parts = [f"{names.get(v, v)} {d} datagrams {f} flows" for v, (d, f) in sorted(by_version.items(), key=str)]
    lines.append(f"decoded: {flows} flows" + (" (" + "; ".join(parts) + ")" if parts else ""))
    lines.append(f"templates: {s.total('templates')} received, data sets held for a missing template "
                 f"{s.total('held')}, decoded later {s.total('replayed')}, expired {s.total('expired')}"
                 + (f" (never matched: {still_held})" if still_held else ""))
    errors = s.by_second("errors")
    lines.append("errors: " + (", ".join(f"{k} {v}" for k, v in sorted(errors.items())) if errors else "none"))
    lost = s.total("seq_lost")
    if lost:
        lines.append(f"sequence: {lost} flow records estimated lost")
    agents = [sess for sess in dec.sessions.values() if sess.sflow is not None]
    if agents:
        samples = sum(a.sflow.samples for a in agents)
        pool = sum(a.sflow.pool for a in agents)
        lines.append(f"sflow: {len(agents)} agent sessions, {samples} flow samples, sample pools +{pool} packets after each source's first sample, "
                     f"agent drops {sum(a.sflow.drops for a in agents)}, samples lost in transit "
                     f"{sum(a.sflow.lost for a in agents)}, counter samples of "
                     f"{sum(len(a.sflow.interfaces) for a in agents)} interfaces")
    notices = s.by_second("notices")
    if notices:
        lines.append("notices: " + ", ".join(f"{k} {v}" for k, v in sorted(notices.items())))
    if s.evicted:
        lines.append("ceilings: " + ", ".join(f"{k} {v}" for k, v in sorted(s.evicted.items())))
    return "\n".join(lines)
