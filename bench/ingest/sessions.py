"""Template sessions kept alive beside a benchmark trial (run.py --template-sessions N).

    python bench/ingest/sessions.py PORT VERSION SESSIONS REFRESH_SECONDS MAX_SECONDS [ANNOUNCE_RATE [SOCKETS]]

Session i is observation domain 65536 + i (v9 source ID / IPFIX observation domain ID, apart
from the measured senders' 0..255) sent from socket i % SOCKETS of SOCKETS UDP sockets bound to
127.0.0.1 (default 100): a session is (address, port, version, domain) to imflow and (address,
domain) to nfcapd and nfacctd, so each counts SESSIONS sessions. Not a socket per session: every
UDP socket on the machine is a line of /proc/net/udp, which collectors and this harness read
(10,000 of them made reading it the largest cost of an idle imflow and of the harness's own
idle test). Each session announces the benchmark's two
flow templates (the same IPv4 and IPv6 templates as the measured traffic, a fleet of alike
exporters) once, paced at ANNOUNCE_RATE datagrams/s (default 500: imflow parses new
sessions' templates within a budget per batch and sheds past it, so a faster announcement
leaves sessions unknown, see bench/ingest/README.md); then prints `ready announced=N seconds=S`
and refreshes every session's templates once every REFRESH_SECONDS, spread evenly (SESSIONS /
REFRESH_SECONDS datagrams/s), templates only, no flow records, until SIGTERM or MAX_SECONDS.
At exit it prints `sent=N errors=E seconds=S`.

VERSION v9 or ipfix sends those; v5 (which has no templates) sends v9 template sessions. The
only destination is 127.0.0.1:PORT; every loop is bounded in count and time.
"""

from __future__ import annotations

import resource
import signal
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import datagrams as D

from collector.netflow import encode as E
from collector.tools.simulate import V4_FIELDS, V6_FIELDS

ANNOUNCE_RATE = 500.0  # datagrams/s of the first announcement of every session (default)
DOMAIN_BASE = 65_536  # observation domains of the sessions: DOMAIN_BASE + i
MAX_SESSIONS = 60_000
SOCKETS = 100  # sockets the sessions share (default)


_SETS = {"ipfix": E.template_set([(D.V4_TID, D.IPFIX_V4), (D.V6_TID, D.IPFIX_V6)], ipfix=True),
         "v9": E.template_set([(D.V4_TID, V4_FIELDS), (D.V6_TID, V6_FIELDS)], ipfix=False)}


def template_datagram(version: str, index: int, sequence: int, now: int) -> bytes:
    """Session `index`'s template announcement (IPv4 and IPv6 flow templates, no data)."""
    domain = DOMAIN_BASE + index
    tset = _SETS[version]
    if version == "ipfix":
        return E.ipfix_message([tset], export_time=now, sequence=0, domain=domain)
    return E.v9_message([tset], uptime_ms=(100_000 + sequence) & 0xFFFF_FFFF, unix_secs=now,
                        sequence=sequence & 0xFFFF_FFFF, source_id=domain, count=2)


def raise_nofile(want: int) -> int:
    """Raise the open-file soft limit toward `want`; the sessions that fit under the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        soft = min(want, hard)
    return soft


def main(argv: list[str]) -> int:
    if len(argv) not in (5, 6, 7):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    port, version, n, refresh, max_seconds = int(argv[0]), argv[1], int(argv[2]), float(argv[3]), float(argv[4])
    announce = float(argv[5]) if len(argv) >= 6 else ANNOUNCE_RATE
    nsock = int(argv[6]) if len(argv) == 7 else SOCKETS
    if (not 1 <= port <= 65535 or version not in D.BUILDERS or not 1 <= n <= MAX_SESSIONS
            or not 0.1 <= refresh <= 3600 or not 0 < max_seconds <= 600 or not 1 <= announce <= 100_000
            or not 1 <= nsock <= MAX_SESSIONS):
        print("bad arguments (port 1-65535, version v5/v9/ipfix, 1-60000 sessions, "
              "0.1 <= refresh <= 3600 s, 0 < seconds <= 600, announce 1-100000/s, 1-60000 sockets)", file=sys.stderr)
        return 2
    kind = "ipfix" if version == "ipfix" else "v9"
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    t0 = time.monotonic()
    deadline = t0 + max_seconds
    nsock = min(nsock, n)
    limit = raise_nofile(nsock + 64)
    if limit < nsock + 64:
        print(f"# open-file limit {limit}: {limit - 64} sockets instead of {nsock}", file=sys.stderr)
        nsock = max(1, limit - 64)
    dest = ("127.0.0.1", port)
    socks: list[socket.socket] = []
    seqs = [0] * n
    sent = errors = 0
    try:
        for _ in range(nsock):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        now = int(time.time())
        # the first announcement of every session, paced
        start = time.monotonic()
        for i in range(n):
            s = socks[i % nsock]
            if stop or time.monotonic() > deadline:
                break
            due = start + i / announce
            wait = due - time.monotonic()
            if wait > 0.0005:
                time.sleep(wait)
            try:
                s.sendto(template_datagram(kind, i, seqs[i], now), dest)
                sent += 1
            except OSError:
                errors += 1
            seqs[i] += 1
        print(f"ready announced={sent} seconds={time.monotonic() - start:.3f}", flush=True)
        # refreshes: session i at start + k * refresh + i * refresh / n
        start, step, k = time.monotonic(), refresh / n, 0
        while not stop and time.monotonic() < deadline:
            i = k % n
            due = start + k * step
            wait = due - time.monotonic()
            if wait > 0.0005:
                time.sleep(min(wait, max(0.0, deadline - time.monotonic()), 0.05))
                continue
            try:
                socks[i % nsock].sendto(template_datagram(kind, i, seqs[i], int(time.time())), dest)
                sent += 1
            except OSError:
                errors += 1
            seqs[i] += 1
            k += 1
    finally:
        for s in socks:
            s.close()
    print(f"sent={sent} errors={errors} seconds={time.monotonic() - t0:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
