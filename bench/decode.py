"""Decode benchmark: prebuilt datagrams, in process, one core.

    python bench/decode.py [--runs 5] [--datagrams 20000]

v5 with 30 records per datagram; v9 and IPFIX with a softflowd-like template and 27 records
per datagram, a template refresh every 1000 datagrams. Every run goes through `Decoder.decode`
as the daemon calls it, in batches like the daemon's: the data datagrams take the bulk path,
each refresh the per-datagram path. Prints flows/s per version (median of the runs) and, as
the reference, the pure-Python `netflow` package (PyPI) on the same datagrams.

sFlow v5: datagrams of 7 flow samples with 128-octet raw packet headers (as agents send them by
default: Ethernet, a quarter 802.1Q-tagged, a fifth IPv6, TCP and UDP), one counter sample every
10 datagrams; samples/s through the same `Decoder.decode`, then with the per-datagram path only
(`Decoder(bulk=False)`, the reference the bulk path is tested against). Then the sampled-header parser alone:
the batch's headers parsed as columns (`sflow.headers.parse`) against the same headers parsed
one by one in Python (`header_one_by_one`, the straightforward way), headers/s.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.netflow import encode as E  # noqa: E402
from collector.netflow import fields as F  # noqa: E402
from collector.netflow.decoder import Decoder  # noqa: E402
from collector.daemon.tuning import tune_malloc  # noqa: E402
from collector.sflow import encode as S  # noqa: E402
from collector.sflow import headers as H  # noqa: E402

V9_FIELDS = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.flowEndSysUpTime, 4),
             (F.flowStartSysUpTime, 4), (F.octetDeltaCount, 4), (F.packetDeltaCount, 4),
             (F.ingressInterface, 4), (F.egressInterface, 4), (F.sourceTransportPort, 2),
             (F.destinationTransportPort, 2), (6, 1), (F.protocolIdentifier, 1), (5, 1), (60, 1)]
IPFIX_FIELDS = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4),
                (F.flowStartMilliseconds, 8), (F.flowEndMilliseconds, 8), (F.octetDeltaCount, 8),
                (F.packetDeltaCount, 8), (F.ingressInterface, 4), (F.egressInterface, 4),
                (F.sourceTransportPort, 2), (F.destinationTransportPort, 2), (6, 1),
                (F.protocolIdentifier, 1), (5, 1), (60, 1)]
PORTS = [1863, 5050, 5190, 5222, 6881, 5060, 443, 80, 53, 3478, 8801]


def _rows(rng: random.Random, n: int, now_ms: int) -> list[dict]:
    rows = []
    for _ in range(n):
        rows.append({
            F.sourceIPv4Address: f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            F.destinationIPv4Address: f"198.51.100.{rng.randrange(1, 255)}",
            F.sourceTransportPort: rng.randrange(1024, 65535), F.destinationTransportPort: rng.choice(PORTS),
            F.protocolIdentifier: rng.choice((6, 17)), F.octetDeltaCount: rng.randrange(40, 10**6),
            F.packetDeltaCount: rng.randrange(1, 1000), F.flowStartSysUpTime: 1000, F.flowEndSysUpTime: 2000,
            F.flowStartMilliseconds: now_ms - 5000, F.flowEndMilliseconds: now_ms,
            F.ingressInterface: 1, F.egressInterface: 2})
    return rows


def build(version: int, count: int, per: int, seed: int = 1) -> list[tuple[bytes, tuple, float]]:
    rng = random.Random(seed)
    now = 1_764_000_000
    out = []
    seq = 0
    for i in range(count):
        rows = _rows(rng, per, now * 1000)
        if version == 5:
            recs = [dict(src=r[8], dst=r[12], sport=r[7], dport=r[11], proto=r[4], packets=r[2],
                         bytes=r[1] % (1 << 32), first=1000, last=2000) for r in rows]
            data = E.v5_datagram(recs, uptime_ms=5000, unix_secs=now, sequence=seq)
        else:
            flds = V9_FIELDS if version == 9 else IPFIX_FIELDS
            sets = [E.data_set(256, flds, rows)]
            if i % 1000 == 0:  # template refresh
                sets.insert(0, E.template_set([(256, flds)], version == 10))
            if version == 9:
                data = E.v9_message(sets, uptime_ms=5000, unix_secs=now, sequence=i)
            else:
                data = E.ipfix_message(sets, export_time=now, sequence=seq)
        seq += per
        out.append((data, ("192.0.2.1", 40000), float(now)))
    return out


SFLOW_SAMPLES = 7  # flow samples per datagram: ~1,400 octets with 128-octet headers


def _frame(rng: random.Random) -> bytes:
    import struct

    v6 = rng.random() < 0.2
    proto = rng.choice((6, 17))
    sport, dport = rng.randrange(1024, 65535), rng.choice(PORTS)
    l4 = struct.pack(">HH", sport, dport) + bytes(16 if proto == 6 else 4)
    size = rng.randrange(60, 1500)
    if v6:
        src = bytes([0xFD, 0]) + rng.randbytes(14)
        ip = struct.pack(">IHBB", 6 << 28, size - 40, proto, 64) + src + bytes([0x20, 1, 0xD, 0xB8]) + rng.randbytes(12)
        etype = 0x86DD
    else:
        ip = struct.pack(">BBHHHBBH", 0x45, 0, size, 0, 0, 64, proto, 0) + bytes([10, rng.randrange(4)]) \
            + rng.randbytes(2) + bytes([198, 51, 100, rng.randrange(1, 255)])
        etype = 0x0800
    tags = struct.pack(">HH", 0x8100, rng.randrange(1, 4095)) if rng.random() < 0.25 else b""
    head = bytes(12) + tags + struct.pack(">H", etype) + ip + l4
    return (head + bytes(128))[:128], size + len(head) - len(ip) - len(l4) + 4


def build_sflow(count: int, seed: int = 1) -> list[tuple[bytes, tuple, float]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        samples = []
        for k in range(SFLOW_SAMPLES):
            header, frame = _frame(rng)
            seq = i * SFLOW_SAMPLES + k + 1
            samples.append(S.flow_sample([S.raw_header(header, frame)], seq=seq, rate=1000, pool=seq * 1000,
                                         in_if=1, out_if=2))
        if i % 10 == 0:
            samples.append(S.counter_sample([S.if_counters(1, 10**10, i * 10**6, i * 10**6)], seq=i // 10 + 1))
        out.append((S.datagram(samples, seq=i + 1), ("192.0.2.1", 6343), 1_764_000_000.0))
    return out


def header_one_by_one(header: bytes) -> tuple | None:
    """One Ethernet header the straightforward way (the reference for the column parser)."""
    import struct

    pos, etype = 14, struct.unpack_from(">H", header, 12)[0]
    while etype in (0x8100, 0x88A8) and pos + 4 <= len(header):
        etype, pos = struct.unpack_from(">H", header, pos + 2)[0], pos + 4
    if etype == 0x0800 and pos + 20 <= len(header):
        ihl, proto = (header[pos] & 15) * 4, header[pos + 9]
        src, dst, l4 = header[pos + 12:pos + 16], header[pos + 16:pos + 20], pos + ihl
    elif etype == 0x86DD and pos + 40 <= len(header):
        proto, src, dst, l4 = header[pos + 6], header[pos + 8:pos + 24], header[pos + 24:pos + 40], pos + 40
    else:
        return None
    ports = struct.unpack_from(">HH", header, l4) if proto in (6, 17) and l4 + 4 <= len(header) else (0, 0)
    return src, dst, proto, ports


def run_headers(n: int, runs: int) -> tuple[float, float]:
    rng = random.Random(2)
    headers = [_frame(rng)[0] for _ in range(n)]
    proto = [H.ETHERNET] * n
    cols, one = [], []
    for _ in range(runs):
        t0 = time.process_time()
        mat, lengths = H.matrix(headers)
        H.parse(mat, lengths, proto)
        cols.append(n / (time.process_time() - t0))
        t0 = time.process_time()
        for h in headers:
            header_one_by_one(h)
        one.append(n / (time.process_time() - t0))
    return statistics.median(cols), statistics.median(one)


def run_imflow(datagrams, batch: int, bulk: bool = True) -> float:
    """Flows per second of this process's CPU time (the machine is a shared VM: wall time
    includes whatever else ran; CPU time is what one core spent on decoding)."""
    dec = Decoder(bulk=bulk)
    t0 = time.process_time()
    flows = 0
    for i in range(0, len(datagrams), batch):
        flows += len(dec.decode(datagrams[i:i + batch]))
    dt = time.process_time() - t0
    first = datagrams[0][0]
    assert flows == len(datagrams) * (SFLOW_SAMPLES if first[:4] == b"\0\0\0\5" else 30 if first[1] == 5 else 27)
    return flows / dt


def run_netflow_pkg(datagrams, version: int, limit: int) -> float | None:
    try:
        import netflow.v5
        import netflow.v9
        import netflow.ipfix
    except ImportError:
        return None
    sample = datagrams[:limit]
    templates = {"netflow": {}, "ipfix": {}}
    t0 = time.process_time()
    flows = 0
    for data, _, _ in sample:
        if version == 5:
            p = netflow.v5.V5ExportPacket(data)
        elif version == 9:
            p = netflow.v9.V9ExportPacket(data, templates["netflow"])
        else:
            p = netflow.ipfix.IPFIXExportPacket(data, templates["ipfix"])
        flows += len(p.flows)
    return flows / (time.process_time() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--datagrams", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1024, help="datagrams per decode call (the daemon's collector.batch_size)")
    args = ap.parse_args()
    tune_malloc()  # as the imflow command does
    targets = {5: 5e6, 9: 3e6, 10: 3e6}
    print(f"{'version':<8} {'records/dgram':>13} {'imflow flows/s':>15} {'netflow pkg':>12} {'ratio':>7} "
          f"{'target':>8}  runs")
    for version, per in ((5, 30), (9, 27), (10, 27)):
        dgrams = build(version, args.datagrams, per)
        rates = [run_imflow(dgrams, args.batch) for _ in range(args.runs)]
        med = statistics.median(rates)
        ref = run_netflow_pkg(dgrams, version, min(2000, len(dgrams)))
        ratio = f"{med / ref:6.0f}x" if ref else "   n/a"
        refs = f"{ref:12,.0f}" if ref else f"{'n/a':>12}"
        name = {5: "v5", 9: "v9", 10: "ipfix"}[version]
        ok = "met" if med >= targets[version] else "MISSED"
        print(f"{name:<8} {per:>13} {med:15,.0f} {refs} {ratio} {targets[version]/1e6:>5.0f}M {ok:<6} "
              + " ".join(f"{r/1e6:.2f}M" for r in rates))
    dgrams = build_sflow(args.datagrams)
    rates = [run_imflow(dgrams, args.batch) for _ in range(args.runs)]
    print(f"{'sflow5':<8} {SFLOW_SAMPLES:>13} {statistics.median(rates):15,.0f} {'n/a':>12} {'n/a':>7} {'':>8}  "
          + " ".join(f"{r/1e6:.2f}M" for r in rates) + "  (samples/s)")
    rates = [run_imflow(dgrams, args.batch, bulk=False) for _ in range(args.runs)]
    print(f"{'sflow5':<8} {SFLOW_SAMPLES:>13} {statistics.median(rates):15,.0f} {'n/a':>12} {'n/a':>7} {'':>8}  "
          + " ".join(f"{r/1e6:.2f}M" for r in rates) + "  (samples/s, per-datagram path only)")
    cols, one = run_headers(args.batch * SFLOW_SAMPLES, args.runs)
    print(f"sampled headers, {args.batch * SFLOW_SAMPLES} a batch: as columns {cols:,.0f}/s, one by one in "
          f"Python {one:,.0f}/s ({cols / one:.1f}x)")


if __name__ == "__main__":
    main()
