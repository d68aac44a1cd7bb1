"""Abuse scenarios for imflow (bench/README.md): what a hostile or broken exporter population
costs in memory, and whether the ceilings hold while a legitimate exporter keeps sending.

`--abuse templates`: a template flood from `--sessions` source sessions (one UDP socket bound
to 127.0.0.1 each, so each is its own (address, port) transport session), every session
announcing `--templates-per-session` distinct templates (v9 and IPFIX alternately), templates
only, no data. Meanwhile a legitimate v9 exporter (sender.c, its own socket) sends the normal
benchmark traffic at a low rate; every one of its records must still be stored.

`--abuse hosts`: NetFlow v9 data for `--hosts` distinct internal hosts (10.0.0.0/8), one
record each, at a rate imflow sustains; RSS over time, what the store and the metrics hold.

Both print imflow's RSS and what its /metrics endpoint shows about sessions, templates and
errors; ceilings the decoder enforces but no metric shows are said so.
"""

from __future__ import annotations

import random
import resource
import socket
import sqlite3
import struct
import subprocess
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import datagrams as D
import procs as P

from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.tools.simulate import V4_FIELDS

# (element, length) pool the flood draws its template fields from
_POOL = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.sourceTransportPort, 2),
         (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 4),
         (F.octetDeltaCount, 8), (F.packetDeltaCount, 4), (F.packetDeltaCount, 8),
         (F.ingressInterface, 2), (F.ingressInterface, 4), (F.egressInterface, 2), (F.egressInterface, 4),
         (5, 1), (6, 1), (F.sourceIPv6Address, 16), (F.destinationIPv6Address, 16), (F.flowStartSysUpTime, 4),
         (F.flowEndSysUpTime, 4), (F.applicationId, 4), (60, 1), (16, 4), (17, 4), (9, 1), (13, 1)]
TEMPLATES_PER_DATAGRAM = 16


def scrape(port: int) -> dict[str, list[tuple[str, float]]]:
    """metric name -> [(labels text, value)] from imflow's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, labels = head.partition("{")
        try:
            out[name].append(("{" + labels if labels else "", float(value)))
        except ValueError:
            continue
    return out


def summarize(m: dict) -> list[str]:
    def total(name):
        return sum(v for _, v in m.get(name, []))

    lines = [f"  imflow_exporters (sessions with state)       {total('imflow_exporters'):,.0f}",
             f"  imflow_datagrams_total                       {total('imflow_datagrams_total'):,.0f}",
             f"  imflow_flows_total                           {total('imflow_flows_total'):,.0f}",
             f"  imflow_template_held_total                   {total('imflow_template_held_total'):,.0f}",
             f"  imflow_template_expired_total                {total('imflow_template_expired_total'):,.0f}",
             f"  imflow_socket_drops_total                    {total('imflow_socket_drops_total'):,.0f}",
             f"  imflow_host_bytes series (bounded)           {len(m.get('imflow_host_bytes_total', [])):,}",
             f"  process_resident_memory_bytes                {total('process_resident_memory_bytes') / 2**20:,.1f} MiB"]
    n, secs = total("imflow_flush_duration_seconds_count"), total("imflow_flush_duration_seconds_sum")
    lines.append(f"  imflow_flush_duration_seconds                {n:,.0f} flushes, {secs:,.1f} s in all"
                 + (f", {secs / n:.2f} s mean" if n else ""))
    reasons: dict[str, float] = defaultdict(float)
    for labels, v in m.get("imflow_decode_errors_total", []):
        reason = labels.split('reason="', 1)[1].split('"', 1)[0] if 'reason="' in labels else "?"
        reasons[reason] += v
    lines.append("  imflow_decode_errors_total by reason         " +
                 (", ".join(f"{r} {v:,.0f}" for r, v in sorted(reasons.items())) or "none"))
    evict = [n for n in m if "evict" in n or "ceiling" in n or "dropped_bins" in n]
    lines.append("  eviction / ceiling metrics                   " +
                 (", ".join(f"{n} {total(n):,.0f}" for n in evict) if evict else
                  "NONE exported (session/template evictions and the open-bin ceiling are not visible)"))
    return lines


def _start(workdir: Path) -> tuple[P.Imflow, P.Running, int]:
    coll = P.Imflow()
    mport = P.free_port(socket.SOCK_STREAM)
    run = coll.start(workdir / "imflow", P.free_port(), ["--metrics", f"127.0.0.1:{mport}"])
    deadline = time.monotonic() + 20
    while True:
        try:
            scrape(mport)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise P.CollectorError("imflow metrics endpoint did not answer")
            time.sleep(0.1)
    return coll, run, mport


def _idle(run: P.Running, limit: float = 120.0) -> float:
    """Seconds until imflow's queue is empty and its CPU below 10 % for 0.3 s (bounded)."""
    t0 = time.monotonic()
    last_t, last_c = t0, P.cpu_seconds(run.pid)
    while time.monotonic() - t0 < limit:
        time.sleep(0.3)
        now, c = time.monotonic(), P.cpu_seconds(run.pid)
        sock = P.udp_socket(run.port)
        if sock is not None and sock[0] == 0 and (c - last_c) / (now - last_t) < 0.1:
            return last_t - t0
        last_t, last_c = now, c
    return float("inf")


def _flood_datagram(rng: random.Random, ipfix: bool, tids: range, seq: int) -> bytes:
    templates = []
    for tid in tids:
        flds = rng.sample(_POOL, rng.randint(8, 16))
        templates.append((tid, flds))
    tset = E.template_set(templates, ipfix=ipfix)
    now = int(time.time())
    if ipfix:
        return E.ipfix_message([tset], export_time=now, sequence=0)
    return E.v9_message([tset], uptime_ms=100_000, unix_secs=now, sequence=seq, count=len(templates))


def abuse_templates(args, workdir: Path, sender: Path) -> int:
    n, per = args.sessions, args.templates_per_session
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 256
    if soft < want:
        if hard < want:
            print(f"# RLIMIT_NOFILE hard limit {hard}: {hard - 256} sessions instead of {n}")
            n = max(1, hard - 256)
            want = hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    rng = random.Random(11)
    legit_file = workdir / "v9.bin"
    D.write(str(legit_file), D.build("v9", 30_000))
    coll, run, mport = _start(workdir)
    try:
        base_rss = P.rss(run.pid)
        print(f"# imflow started: RSS {base_rss / 2**20:.1f} MiB; flood: {n:,} sessions x {per} templates "
              f"({n * per:,} templates; v9 and IPFIX alternately) at {args.flood_rate:,.0f} datagrams/s, "
              "legit exporter at 1,000 datagrams/s")
        socks = []
        try:
            for _ in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", 0))
            # build first so that the flood is paced by the send loop only
            plan = []
            for i in range(n):
                for k, lo in enumerate(range(0, per, TEMPLATES_PER_DATAGRAM)):
                    tids = range(256 + lo, 256 + min(per, lo + TEMPLATES_PER_DATAGRAM))
                    plan.append((i, _flood_datagram(rng, i % 2 == 1, tids, k)))
            flood_rate = float(args.flood_rate)  # datagrams/s
            flood_seconds = len(plan) / flood_rate
            legit = subprocess.Popen([str(sender), str(legit_file), str(run.port), "1000",
                                      str(int(1000 * (flood_seconds + 4))), f"{flood_seconds + 4:.1f}"],
                                     stdout=subprocess.PIPE, text=True)
            time.sleep(1.0)
            sent = errors = 0
            t0 = time.monotonic()
            deadline = t0 + 120
            for k, (i, data) in enumerate(plan):
                due = t0 + k / flood_rate
                now = time.monotonic()
                if now > deadline:
                    break
                if due > now:
                    time.sleep(due - now)
                try:
                    socks[i].sendto(data, ("127.0.0.1", run.port))
                    sent += 1
                except OSError:
                    errors += 1
            flood_time = time.monotonic() - t0
        finally:
            for s in socks:
                s.close()
        out, _ = legit.communicate(timeout=flood_seconds + 60)
        legit_stats = dict(kv.split("=") for kv in out.split())
        drain = _idle(run)
        time.sleep(1.5)  # a flush refreshes the metrics snapshot
        m = scrape(mport)
        sock = P.udp_socket(run.port)
        rss_after, hwm = P.rss(run.pid), P.peak_rss(run.pid)
        coll.stop(run)
        counted = coll.count(run)
    finally:
        coll.kill(run)
    print(f"\nflood: {sent:,} datagrams ({errors} send errors) in {flood_time:.1f} s; "
          f"kernel drops {sock[1] if sock else '?'}; imflow idle {drain:.1f} s after the flood")
    print(f"imflow RSS: {base_rss / 2**20:.1f} MiB at start, {rss_after / 2**20:.1f} MiB after, "
          f"peak {hwm / 2**20:.1f} MiB")
    print("metrics after the flood:")
    print("\n".join(summarize(m)))
    legit_records = int(legit_stats["records"])
    verdict = "all stored" if counted == legit_records else f"LOST {legit_records - counted:,}"
    print(f"legit exporter: sent {legit_records:,} records ({legit_stats['errors']} send errors), "
          f"imflow stored {counted:,} -> {verdict}")
    return 0


def _hosts_file(path: Path, hosts: int) -> tuple[int, int]:
    """v9 datagrams: one record per internal host 10.x.y.z (x.y.z = host number + 1)."""
    st = struct.Struct(">" + "".join(f"{n}s" if k in (F.sourceIPv4Address, F.destinationIPv4Address) else
                                     {1: "B", 2: "H", 4: "I"}[n] for k, n in V4_FIELDS))
    head = E.template_set([(256, V4_FIELDS)], ipfix=False)
    now = int(time.time())
    uptime = 10 * 86_400_000
    rng = random.Random(5)
    out, recs = [], []
    for i in range(0, hosts, D.MAX_RECORDS):
        rows = []
        for h in range(i, min(hosts, i + D.MAX_RECORDS)):
            a = h + 1
            rows.append(st.pack(bytes((10, a >> 16 & 255, a >> 8 & 255, a & 255)),
                                bytes((198, 51, 100, 1 + h % 250)), rng.randrange(32768, 61000), 443, 6, 0x1B, 0,
                                1, 2, rng.randrange(500, 50_000), rng.randrange(3, 60), uptime - 5000, uptime - 100))
        body = b"".join(rows)
        body += b"\0" * (-len(body) % 4)
        sets = ([head] if len(out) % D.REFRESH == 0 else []) + [struct.pack(">HH", 256, len(body) + 4) + body]
        out.append(E.v9_message(sets, uptime_ms=uptime, unix_secs=now, sequence=0,
                                count=len(rows) + (1 if len(sets) == 2 else 0)))
        recs.append(len(rows))
    D.write(str(path), D.Built("v9", out, recs))
    return len(out), sum(recs)


def abuse_hosts(args, workdir: Path, sender: Path) -> int:
    path = workdir / "hosts.bin"
    ndg, nrec = _hosts_file(path, args.hosts)
    rate = args.rate or 2000.0
    seconds = ndg / rate
    if seconds > 120:
        raise SystemExit(f"--abuse hosts: {ndg} datagrams at {rate:g}/s take {seconds:.0f} s (> 120 s); raise --rate")
    coll, run, mport = _start(workdir)
    try:
        base_rss = P.rss(run.pid)
        print(f"# {args.hosts:,} internal hosts: {ndg:,} v9 datagrams, {nrec:,} records, at {rate:,.0f} "
              f"datagrams/s ({seconds:.0f} s); imflow RSS at start {base_rss / 2**20:.1f} MiB")
        proc = subprocess.Popen([str(sender), str(path), str(run.port), f"{rate:.0f}", str(ndg), f"{seconds + 5:.1f}"],
                                stdout=subprocess.PIPE, text=True)
        samples = []
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < seconds + 30:
            time.sleep(1.0)
            samples.append((time.monotonic() - t0, P.rss(run.pid)))
        out, _ = proc.communicate(timeout=30)
        stats = dict(kv.split("=") for kv in out.split())
        drain = _idle(run)
        time.sleep(1.5)
        m = scrape(mport)
        sock = P.udp_socket(run.port)
        rss_after, hwm = P.rss(run.pid), P.peak_rss(run.pid)
        cpu = P.cpu_seconds(run.pid)
        t1 = time.monotonic()
        coll.stop(run)
        stop_s = time.monotonic() - t1
        con = sqlite3.connect(f"file:{run.workdir / 'imflow.db'}?mode=ro", uri=True)
        flows, distinct = con.execute("SELECT coalesce(sum(flows), 0), count(DISTINCT host) FROM rollup_1m").fetchone()
        con.close()
    finally:
        coll.kill(run)
    print("RSS while sending (s: MiB): " + ", ".join(f"{t:.0f}: {r / 2**20:.0f}" for t, r in samples))
    print(f"sent {int(stats['sent']):,} datagrams, {int(stats['records']):,} records in {float(stats['seconds']):.1f} s; "
          f"kernel drops {sock[1] if sock else '?'}; imflow idle {drain:.1f} s after, CPU {cpu:.1f} s in all, "
          f"SIGTERM to exit {stop_s:.1f} s")
    print(f"imflow RSS: {base_rss / 2**20:.1f} MiB at start, {rss_after / 2**20:.1f} MiB after, peak "
          f"{hwm / 2**20:.1f} MiB")
    print(f"store: {flows:,} flows, {distinct:,} distinct hosts in rollup_1m "
          f"({'all' if flows == int(stats['records']) else 'NOT all'} records sent)")
    print("metrics:")
    print("\n".join(summarize(m)))
    return 0


def main(args, workdir: Path, sender: Path, rmem_note: str) -> int:
    print(f"# imflow abuse scenario '{args.abuse}'; {rmem_note}", flush=True)
    if args.abuse == "templates":
        return abuse_templates(args, workdir, sender)
    return abuse_hosts(args, workdir, sender)
