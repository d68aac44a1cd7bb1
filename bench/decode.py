"""Decode benchmark: prebuilt datagrams, in process, one core.

    python bench/decode.py [--runs 5] [--datagrams 20000]

v5 with 30 records per datagram; v9 and IPFIX with a softflowd-like template and 27 records
per datagram, a template refresh every 1000 datagrams. Every run goes through `Decoder.decode`
as the daemon calls it, in batches like the daemon's: the data datagrams take the bulk path,
each refresh the per-datagram path. Prints flows/s per version (median of the runs) and, as
the reference, the pure-Python `netflow` package (PyPI) on the same datagrams.
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


def run_imflow(datagrams, batch: int) -> float:
    """Flows per second of this process's CPU time (the machine is a shared VM: wall time
    includes whatever else ran; CPU time is what one core spent on decoding)."""
    dec = Decoder()
    t0 = time.process_time()
    flows = 0
    for i in range(0, len(datagrams), batch):
        flows += len(dec.decode(datagrams[i:i + batch]))
    dt = time.process_time() - t0
    assert flows == len(datagrams) * (30 if datagrams[0][0][1] == 5 else 27)
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


if __name__ == "__main__":
    main()
