"""Abuse scenarios for imflow (bench/README.md): what a hostile or broken exporter population
costs in memory and CPU, and whether a legitimate exporter keeps every record meanwhile.

`python bench/ingest/abuse.py` runs one scenario per load row of issue 16's table (rows 1, 2,
3, 4, 5, 6, 9; `--rows` picks some) and the template flood, and prints one table line each:
RSS, CPU seconds, CPU with no traffic, attacker flows counted, decode errors by reason,
evictions, what the legitimate exporter lost, and what is particular to the row (stop time,
template state size, restart RSS, tracebacks, series). Rows 7, 8, 10, 11 and 12 are not load
scenarios (output escaping, config and the state file): their regression tests are in tests/.

`--abuse templates` (run.py): a template flood from `--sessions` source sessions (one UDP socket
bound to 127.0.0.2 each, so each is its own (address, port) transport session), every session
announcing `--templates-per-session` distinct templates (v9 and IPFIX alternately), templates
only, no data. Meanwhile a legitimate v9 exporter (sender.c, its own socket, 127.0.0.1) sends the
normal benchmark traffic at a low rate; every one of its records must still be stored.

`--abuse hosts` (run.py): NetFlow v9 data for `--hosts` distinct internal hosts (10.0.0.0/8), one
record each, at a rate imflow sustains; RSS over time, what the store and the metrics hold.

Every send loop is bounded in count and time, and the only destination is 127.0.0.1 (sources
127.0.0.1-3, so the store and the metrics tell the exporters apart).
"""

from __future__ import annotations

import os
import random
import resource
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
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
                s.bind((ATTACKER, 0))
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
        cpu = P.cpu_seconds(run.pid)
        coll.stop(run)
        counted = _stored(run, LEGIT)
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
    return Result("template flood", f"{n:,} sessions x {per} templates, {sent:,} datagrams at "
                  f"{args.flood_rate:,.0f}/s", base_rss, hwm, rss_after, cpu, flows=0,
                  errors=_reasons(m), evictions=_evictions(m), legit_sent=legit_records,
                  legit_stored=counted, notes=[f"kernel drops {sock[1] if sock else '?'}"])


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


# --- the table (issue 16), one scenario per row ---------------------------------------
#
# Each row: imflow started with a config of its own, a legitimate v9 exporter (sender.c, from
# 127.0.0.1) sending the benchmark traffic at LEGIT_RATE for the whole scenario, and the
# attacker's datagrams sent from 127.0.0.2 (another loopback address, so the store and the
# metrics tell the two apart), paced and bounded in count and time. Only 127.0.0.1 is ever a
# destination. Rows 7, 8 (output escaping), 10, 11 (config), 12 (the state file on disk) are
# not load scenarios: their regression tests are in tests/.

LEGIT, ATTACKER, OTHER_EXPORTER = "127.0.0.1", "127.0.0.2", "127.0.0.3"
LEGIT_RATE = 500  # datagrams/s of the legitimate exporter
MAX_SEND_SECONDS = 60.0  # every attack loop stops after this long, whatever is left
QUIET_SECONDS = 10.0  # CPU is measured this long after everything went quiet


@dataclass
class Result:
    row: str
    sent: str  # what the attacker sent
    rss_start: int
    rss_peak: int
    rss_after: int
    cpu: float  # CPU seconds of imflow from its start until idle after the attack
    flows: int  # flows imflow counted from the attacker (imflow_flows_total)
    errors: dict = field(default_factory=dict)  # decode errors by reason
    evictions: dict = field(default_factory=dict)
    legit_sent: int = 0
    legit_stored: int = 0
    quiet_cpu: float | None = None  # CPU seconds in QUIET_SECONDS with no traffic
    notes: list = field(default_factory=list)

    def line(self) -> str:
        lost = self.legit_sent - self.legit_stored
        errs = ", ".join(f"{r} {v:,.0f}" for r, v in sorted(self.errors.items())) or "none"
        ev = ", ".join(f"{r} {v:,.0f}" for r, v in sorted(self.evictions.items())) or "none"
        quiet = f"{self.quiet_cpu:.1f} s / {QUIET_SECONDS:.0f} s" if self.quiet_cpu is not None else "-"
        return (f"| {self.row} | {self.sent} | {self.rss_start / 2**20:.0f} -> {self.rss_peak / 2**20:.0f} "
                f"({self.rss_after / 2**20:.0f} after) MiB | {self.cpu:.1f} | {quiet} | {self.flows:,} | {errs} | {ev} | "
                f"{lost:,} of {self.legit_sent:,} | {'; '.join(self.notes)} |")


TABLE_HEAD = ("| row | attacker sent | RSS start -> peak (after) | CPU s | CPU with no traffic | "
              "attacker flows counted | decode errors by reason | evictions | legit exporter lost | other |\n"
              "|---|---|---|---|---|---|---|---|---|---|")


def _label_value(labels: str, key: str) -> str:
    return labels.split(f'{key}="', 1)[1].split('"', 1)[0] if f'{key}="' in labels else "?"


def _reasons(m: dict) -> dict:
    out: dict[str, float] = defaultdict(float)
    for labels, v in m.get("imflow_decode_errors_total", []):
        out[_label_value(labels, "reason")] += v
    return dict(out)


def _evictions(m: dict) -> dict:
    out: dict[str, float] = defaultdict(float)
    for labels, v in m.get("imflow_evictions_total", []):
        if v:
            out[_label_value(labels, "table")] += v
    return dict(out)


def _flows_of(m: dict, exporter: str) -> int:
    return int(sum(v for labels, v in m.get("imflow_flows_total", []) if f'"{exporter}"' in labels))


def _stored(run: P.Running, exporter: str, where: str = "") -> int:
    con = sqlite3.connect(f"file:{run.workdir / 'imflow.db'}?mode=ro", uri=True)
    try:
        return int(con.execute(f"SELECT coalesce(sum(flows), 0) FROM rollup_1m WHERE exporter = ? {where}",
                               (exporter,)).fetchone()[0])
    finally:
        con.close()


def _send(plan: list[tuple[bytes, int]], port: int, rate: float, source: str = ATTACKER) -> tuple[int, int, float]:
    """Send `plan` [(payload, socket number)] to 127.0.0.1:port at `rate` datagrams/s, each
    socket bound to `source` (its own source port): (sent, send errors, seconds). Stops after
    MAX_SEND_SECONDS whatever is left."""
    socks: dict[int, socket.socket] = {}
    sent = errors = 0
    t0 = time.monotonic()
    try:
        for k, (data, i) in enumerate(plan):
            s = socks.get(i)
            if s is None:
                s = socks[i] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                s.bind((source, 0))
            due, now = t0 + k / rate, time.monotonic()
            if now - t0 > MAX_SEND_SECONDS:
                break
            if due > now:
                time.sleep(due - now)
            try:
                s.sendto(data, ("127.0.0.1", port))
                sent += 1
            except OSError:
                errors += 1
    finally:
        for s in socks.values():
            s.close()
    return sent, errors, time.monotonic() - t0


def _ipfix(sets: list[bytes], seq: int = 0, domain: int = 0) -> bytes:
    return E.ipfix_message(sets, export_time=int(time.time()), sequence=seq, domain=domain)


def _varlen_set(tid: int, records: list[list[bytes]]) -> bytes:
    """An IPFIX data set whose records are lists of already encoded field values."""
    body = b"".join(b"".join(r) for r in records)
    return struct.pack(">HH", tid, len(body) + 4) + body


def _name(n: int, octets: int) -> bytes:
    raw = (f"if{n}-".encode() * (octets // 4 + 1))[:octets]
    return E.value_bytes(raw, F.VARLEN)


# row 1: 300 IPFIX datagrams, each one template of 16,370 one-octet fields
def _row1(count: int = 300) -> list[tuple[bytes, int]]:
    out = []
    for i in range(count):
        flds = [(1000 + j % 20000, 1) for j in range(16_370)]
        out.append((_ipfix([E.template_set([(256 + i % 60000, flds)], True)], seq=0), 0))
    return out


# row 2: 1,500 interface names of 65 KB in options data (one per datagram)
def _row2(count: int = 1500) -> list[tuple[bytes, int]]:
    opt = E.options_template_set(300, [(F.ingressInterface, 4)], [(F.interfaceName, F.VARLEN)], True)
    out = []
    for i in range(count):
        rec = [struct.pack(">I", i + 1), _name(i, 65_000)]
        out.append((_ipfix([opt, _varlen_set(300, [rec])], seq=0), 0))
    return out


# row 3: 300 datagrams of application names (about 2,000 names each, one session each)
def _row3(count: int = 300) -> list[tuple[bytes, int]]:
    opt = E.options_template_set(301, [(F.applicationId, 4)], [(F.applicationName, F.VARLEN)], True)
    out, rng = [], random.Random(3)
    for i in range(count):
        recs = []
        for _ in range(2_000):
            app = 13 << 24 | rng.randrange(1 << 24)
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(12, 28)))
            recs.append([struct.pack(">I", app), E.value_bytes(name.encode(), F.VARLEN)])
        out.append((_ipfix([opt, _varlen_set(301, recs)]), i))
    return out


_APP_FLOW = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.sourceTransportPort, 2),
             (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 8),
             (F.packetDeltaCount, 8), (F.applicationId, 4)]


# row 4: exporter A (the attacker) names 13:4242 "bittorrent"; exporter B (127.0.0.3) sends
# HTTPS flows of an internal host with application id 13:4242
def _row4_names() -> list[tuple[bytes, int]]:
    opt = E.options_template_set(301, [(F.applicationId, 4)], [(F.applicationName, F.VARLEN)], True)
    rec = [struct.pack(">I", 13 << 24 | 4242), E.value_bytes(b"bittorrent", F.VARLEN)]
    return [(_ipfix([opt, _varlen_set(301, [rec])], seq=i), 0) for i in range(20)]


def _row4_flows(count: int = 50) -> tuple[list[tuple[bytes, int]], int]:
    tset = E.template_set([(256, _APP_FLOW)], True)
    out, rows = [], 20
    for i in range(count):
        recs = [{F.sourceIPv4Address: f"10.4.0.{1 + r}", F.destinationIPv4Address: "192.0.2.80",
                 F.sourceTransportPort: 40000 + r, F.destinationTransportPort: 443, F.protocolIdentifier: 6,
                 F.octetDeltaCount: 10_000, F.packetDeltaCount: 10, F.applicationId: 13 << 24 | 4242}
                for r in range(rows)]
        out.append((_ipfix([tset, E.data_set(256, _APP_FLOW, recs)], seq=i * rows), 0))
    return out, count * rows


_IF_FLOW = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.sourceTransportPort, 2),
            (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 4),
            (F.packetDeltaCount, 4), (F.ingressInterface, 4), (F.egressInterface, 4)]


# row 5: 82 v9 datagrams of flows with random ifIndexes, from an exporter that is an SNMP target
def _row5(count: int = 82) -> list[tuple[bytes, int]]:
    rng = random.Random(5)
    tset = E.template_set([(256, _IF_FLOW)], False)
    out = []
    for i in range(count):
        recs = [{F.sourceIPv4Address: f"10.5.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                 F.destinationIPv4Address: "192.0.2.1", F.sourceTransportPort: rng.randrange(1024, 65536),
                 F.destinationTransportPort: 443, F.protocolIdentifier: 6, F.octetDeltaCount: 1500,
                 F.packetDeltaCount: 1, F.ingressInterface: rng.randrange(1, 2**31),
                 F.egressInterface: rng.randrange(1, 2**31)} for _ in range(40)]
        out.append((E.v9_message([tset, E.data_set(256, _IF_FLOW, recs)], uptime_ms=100_000,
                                 unix_secs=int(time.time()), sequence=i), 0))
    return out


# row 6: templates with a zero-length applicationId, and data for them (10 datagrams)
def _row6(count: int = 10, per: int = 36) -> list[tuple[bytes, int]]:
    flds = _APP_FLOW[:-1] + [(F.applicationId, 0)]
    out = []
    for i in range(count):
        tids = [256 + j for j in range(per)]
        sets = [E.template_set([(t, flds) for t in tids], True)]
        rec = {F.sourceIPv4Address: "10.6.0.1", F.destinationIPv4Address: "192.0.2.6", F.destinationTransportPort: 443,
               F.protocolIdentifier: 6, F.octetDeltaCount: 100, F.packetDeltaCount: 1}
        sets += [E.data_set(t, flds, [rec] * 4) for t in tids]
        out.append((_ipfix(sets, seq=i * per * 4), 0))
    return out


# row 9: a template whose only field is variable-length, and 64 KB data sets of zeros for it
def _row9(count: int = 200) -> list[tuple[bytes, int]]:
    tset = E.template_set([(256, [(F.interfaceName, F.VARLEN)])], True)
    body = b"\0" * 65_000
    data = struct.pack(">HH", 256, len(body) + 4) + body
    return [(_ipfix([tset, data] if i == 0 else [data], seq=0), 0) for i in range(count)]


ROW_CONFIG = """\
[collector]
listen = ["127.0.0.1:{port}"]
[store]
path = "{db}"
[metrics]
listen = "127.0.0.1:{mport}"
[policy]
services = {{ bittorrent = "block" }}
{extra}"""

SNMP_TARGET = """\
[[snmp.targets]]
exporter = "{attacker}"
address = "127.0.0.1:{dead}"
community = "public"
"""


@dataclass
class Row:
    name: str
    plan: object  # () -> [(payload, socket number)]
    rate: float  # attacker datagrams/s
    what: str
    snmp: bool = False
    restart: bool = False


ROWS = {
    "1": Row("1 wide templates", _row1, 30, "300 IPFIX datagrams, one template of 16,370 one-octet fields each",
             restart=True),
    "2": Row("2 long interface names", _row2, 150, "1,500 options records, a 65,000-octet interface name each"),
    "3": Row("3 application names", _row3, 30, "300 sessions x 2,000 application names"),
    "4": Row("4 application id of another exporter", _row4_names, 10,
             "A names 13:4242 'bittorrent'; B sends 1,000 HTTPS flows with 13:4242"),
    "5": Row("5 random ifIndexes (SNMP target)", _row5, 10, "82 v9 datagrams, 40 flows each, random in/out ifIndex",
             snmp=True),
    "6": Row("6 zero-length applicationId", _row6, 5, "10 IPFIX datagrams, 36 templates with a 0-octet IE 95, 4 records each"),
    "9": Row("9 variable-length-only template", _row9, 20, "200 IPFIX datagrams, a 65,000-octet data set each"),
}


def _start_row(workdir: Path, row: Row) -> tuple[P.Imflow, P.Running, int, Path]:
    coll = P.Imflow()
    coll.stop_timeout = 300.0  # a stop that writes a huge template state is one of the figures
    port, mport = P.free_port(), P.free_port(socket.SOCK_STREAM)
    workdir.mkdir(parents=True, exist_ok=True)
    extra = SNMP_TARGET.format(attacker=ATTACKER, dead=P.free_port()) if row.snmp else ""
    conf = workdir / "imflow.toml"
    conf.write_text(ROW_CONFIG.format(port=port, db=workdir / "imflow.db", mport=mport, extra=extra))
    run = coll.start(workdir, port, ["--config", str(conf), "--metrics", f"127.0.0.1:{mport}"])
    deadline = time.monotonic() + 20
    while True:
        try:
            scrape(mport)
            return coll, run, mport, conf
        except OSError:
            if time.monotonic() > deadline:
                coll.kill(run)
                raise P.CollectorError("imflow metrics endpoint did not answer")
            time.sleep(0.1)


def _restart_peak(coll: P.Imflow, workdir: Path, conf: Path, limit: float = 60.0) -> str:
    """Start imflow again on the same state; its peak RSS once listening (bounded)."""
    port = P.free_port()
    text = conf.read_text().split("\n")
    text[1] = f'listen = ["127.0.0.1:{port}"]'
    conf.write_text("\n".join(text))
    t0 = time.monotonic()
    try:
        run = coll.start(workdir, port, ["--config", str(conf)])
    except P.CollectorError as exc:
        return f"restart failed: {str(exc)[:120]}"
    try:
        took = time.monotonic() - t0
        return f"restart from that state: listening after {took:.1f} s, peak RSS {P.peak_rss(run.pid) / 2**20:,.0f} MiB"
    finally:
        try:
            coll.stop(run)
        finally:
            coll.kill(run)


def abuse_row(key: str, workdir: Path, sender: Path) -> Result:
    row = ROWS[key]
    plan = row.plan()
    extra_plan, other_flows = [], 0
    if key == "4":
        extra_plan, other_flows = _row4_flows()
    legit_file = workdir / "v9.bin"
    if not legit_file.exists():
        D.write(str(legit_file), D.build("v9", 30_000))
    wd = workdir / f"row{key}"
    coll, run, mport, conf = _start_row(wd, row)
    notes: list[str] = []
    try:
        base_rss = P.rss(run.pid)
        seconds = min(MAX_SEND_SECONDS, len(plan) / row.rate) + (len(extra_plan) / 10 if extra_plan else 0)
        legit = subprocess.Popen([str(sender), str(legit_file), str(run.port), str(LEGIT_RATE),
                                  str(int(LEGIT_RATE * (seconds + 3))), f"{seconds + 3:.1f}"],
                                 stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)
        sent, errors, took = _send(plan, run.port, row.rate)
        if extra_plan:
            _send(extra_plan, run.port, 10, source=OTHER_EXPORTER)
        out, _ = legit.communicate(timeout=seconds + 60)
        legit_stats = dict(kv.split("=") for kv in out.split())
        drain = _idle(run, limit=30.0)
        c0 = P.cpu_seconds(run.pid)
        time.sleep(QUIET_SECONDS)
        quiet = P.cpu_seconds(run.pid) - c0
        m = scrape(mport)
        rss_after, hwm, cpu = P.rss(run.pid), P.peak_rss(run.pid), P.cpu_seconds(run.pid) - quiet
        log_text = run.log.read_text(errors="replace")
        t1 = time.monotonic()
        coll.stop(run)
        stop_s = time.monotonic() - t1
        legit_stored = _stored(run, LEGIT)
        attacker_stored = _stored(run, ATTACKER)
        state = wd / "imflow.db.templates.json"
        notes.append(f"{sent:,} sent in {took:.1f} s ({errors} send errors); idle "
                     + (f"{drain:.1f} s after" if drain != float("inf") else "NOT within 30 s"))
        notes.append(f"SIGTERM to exit {stop_s:.1f} s; template state {state.stat().st_size / 1e6 if state.exists() else 0:,.2f} MB")
        n, secs = (sum(v for _, v in m.get(f"imflow_flush_duration_seconds_{x}", [])) for x in ("count", "sum"))
        if n:
            notes.append(f"{n:,.0f} flushes, {secs / n:.2f} s mean")
        tracebacks = log_text.count("Traceback")
        if tracebacks:
            notes.append(f"{tracebacks:,} tracebacks in the log")
        if attacker_stored:
            notes.append(f"{attacker_stored:,} attacker flows stored")
        if key == "4":
            con = sqlite3.connect(f"file:{wd / 'imflow.db'}?mode=ro", uri=True)
            got = con.execute("SELECT service, sum(flows), sum(violation > 0) FROM rollup_1m WHERE exporter = ? "
                              "GROUP BY service", (OTHER_EXPORTER,)).fetchall()
            con.close()
            notes.append(f"B's {other_flows:,} flows stored as " + ", ".join(
                f"{svc} {f:,}" + (" (violation)" if v else "") for svc, f, v in got))
        if key == "5":
            series = sum(len(v) for k, v in m.items() if k.startswith("imflow_interface"))
            notes.append(f"{series:,} imflow_interface* series")
        if row.restart:
            notes.append(_restart_peak(coll, wd, conf))
    finally:
        coll.kill(run)
    return Result(row.name, row.what, base_rss, hwm, rss_after, cpu, _flows_of(m, ATTACKER), _reasons(m),
                  _evictions(m), int(legit_stats["records"]), legit_stored, quiet, notes)


def main(args, workdir: Path, sender: Path, rmem_note: str) -> int:
    print(f"# imflow abuse scenario '{args.abuse}'; {rmem_note}", flush=True)
    if args.abuse == "templates":
        abuse_templates(args, workdir, sender)
        return 0
    return abuse_hosts(args, workdir, sender)


def table_main(argv=None) -> int:
    """`python bench/ingest/abuse.py`: every scenario of the issue's table, one row each."""
    import argparse
    import shutil
    import tempfile

    import run as R
    p = argparse.ArgumentParser(description="imflow abuse scenarios, one per row of issue 16's table")
    p.add_argument("--rows", default="1,2,3,4,5,6,9,flood", help="comma list of 1 2 3 4 5 6 9 flood")
    p.add_argument("--sessions", type=int, default=10_000, help="flood: source sessions")
    p.add_argument("--templates-per-session", type=int, default=64)
    p.add_argument("--flood-rate", type=float, default=20_000.0)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    rmem = P.RmemMax(P.RCVBUF)
    rmem.raise_()
    workdir = Path(tempfile.mkdtemp(prefix="imflow-abuse-"))
    commit = subprocess.run(["git", "-C", str(P.REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip() or f"{P.REPO} (not a git checkout)"
    dirty = subprocess.run(["git", "-C", str(P.REPO), "status", "--porcelain", "collector"], capture_output=True,
                           text=True, check=False).stdout.strip()
    print(f"# imflow abuse table on {commit}{' + uncommitted changes in collector/' if dirty else ''}; "
          f"{rmem.note}; load average {os.getloadavg()[0]:.2f}", flush=True)
    results = []
    try:
        sender = R.build_sender(workdir)
        for key in [k.strip() for k in args.rows.split(",") if k.strip()]:
            t0 = time.monotonic()
            try:
                if key == "flood":
                    (workdir / "flood").mkdir(exist_ok=True)
                    r = abuse_templates(args, workdir / "flood", sender)
                else:
                    r = abuse_row(key, workdir, sender)
            except Exception as exc:  # noqa: BLE001 - one scenario's failure is its result, not the run's end
                print(f"# row {key}: {type(exc).__name__}: {exc}", flush=True)
                continue
            results.append(r)
            print(f"# row {key} done in {time.monotonic() - t0:.0f} s: {r.line()}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(TABLE_HEAD)
    for r in results:
        print(r.line())
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(table_main())
