"""What issue 19 costs the ingest loss-free rate: `imflow-noasn` (an empty ASN snapshot: the
classifier as before, but for the method codes), `imflow` (the shipped ASN snapshot, always on)
and `imflow-dns100k` (dnstap on, 100,000 addresses learned before the trial: a feeder sends that
many answers for *.whatsapp.net names to its socket and waits until the table holds them), side
by side in one run of the ingest harness (run.py; its flags pass through).

    python bench/ingest/dns_cost.py --versions v9 --quick
    python bench/ingest/dns_cost.py --versions v9 --cpu-at 40000 --rounds 6

`--cpu-at RATE`: no search; the CPU per flow of each collector at one fixed rate (datagrams/s,
below every collector's loss-free rate), the collectors in turn for `--rounds` rounds (the
order reversed every other round), and per round noasn's CPU over dns100k's. The loss-free
rate moves with what the confirmations meet; CPU per flow at a rate all of them sustain is the
steadier figure of what the learned table costs (the same trials as run.py --rate: a lossy
trial is reported and left out).
"""

from __future__ import annotations

import shutil
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
sys.path.insert(0, str(HERE))

import procs as P
import run

LEARNED = 100_000
_FRAMES: list[bytes] = []


def frames() -> bytes:
    """LEARNED dnstap CLIENT_RESPONSE frames (unidirectional stream: START, data), made once."""
    import dns.message
    import dns.rrset
    import fstrm
    from dnstap_pb import dnstap_pb2

    if not _FRAMES:
        codec = fstrm.FstrmCodec()
        _FRAMES.append(codec.encode_ctrlstart(b"protobuf:dnstap.Dnstap"))
        q = dns.message.make_query("n.whatsapp.net.", "A")
        base = dns.message.make_response(q)
        for i in range(LEARNED):
            base.answer = [dns.rrset.from_text("n.whatsapp.net.", 3600, "IN", "A",
                                               socket.inet_ntoa((0xC6120000 + i).to_bytes(4, "big")))]
            d = dnstap_pb2.Dnstap()
            d.type = dnstap_pb2.Dnstap.MESSAGE
            d.message.type = dnstap_pb2.Message.CLIENT_RESPONSE
            d.message.response_message = base.to_wire()
            _FRAMES.append(codec.encode_data(d.SerializeToString()))
    return b"".join(_FRAMES)


class ImflowNoAsn(P.Imflow):
    name = "imflow-noasn"

    def command(self, workdir: Path, port: int) -> list[str]:
        (workdir / "empty-asn.txt").write_text("# date: 2026-12-04\n")
        cfg = workdir / "noasn.toml"
        cfg.write_text(f'[classify]\nasn_prefixes = "{workdir / "empty-asn.txt"}"\n')
        return super().command(workdir, port) + ["--config", str(cfg)]


class ImflowDns(P.Imflow):
    name = "imflow-dns100k"

    def command(self, workdir: Path, port: int) -> list[str]:
        self.sock = workdir / "dnstap.sock"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.mport = s.getsockname()[1]
        cfg = workdir / "dns.toml"
        cfg.write_text(f'[dns]\ndnstap = "unix:{self.sock}"\nmax_addresses = {LEARNED}\n')
        return super().command(workdir, port) + ["--config", str(cfg), "--metrics", f"127.0.0.1:{self.mport}"]

    def start(self, workdir: Path, port: int, extra: list[str] | None = None) -> P.Running:
        running = super().start(workdir, port, extra)
        data = frames()
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.sock))
            s.sendall(data)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                text = urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=10).read().decode()
                if f"imflow_dns_learned_addresses {LEARNED:.1f}" in text:
                    break
                time.sleep(0.5)
            else:
                raise P.CollectorError("the learned-address table did not fill")
        time.sleep(1.5)  # the listener brings the classifier's view up to date once a second
        return running


P.COLLECTORS["imflow-noasn"] = ImflowNoAsn
P.COLLECTORS["imflow-dns100k"] = ImflowDns

COLLECTORS = "imflow-noasn,imflow,imflow-dns100k"


def cpu_at(rate: float, rounds: int, rest: list[str]) -> int:
    """The --cpu-at mode: alternating fixed-rate trials, CPU per flow record (µs) of each."""
    args = run.parse_args(["--collectors", COLLECTORS, "--rate", f"{rate:g}", *rest])
    P.Imflow.refresh = args.imflow_refresh
    rmem = P.RmemMax(P.RCVBUF)
    rmem.raise_()
    workdir = Path(tempfile.mkdtemp(prefix="imflow-dns-cpu-"))
    try:
        bench = run.Bench(args, workdir, run.build_sender(workdir))
        colls = [P.COLLECTORS[name]() for name in args.collectors]
        print(f"# CPU per flow at {rate:,.0f} datagrams/s, trials of {args.duration:g} s, {rounds} rounds; "
              f"{rmem.note}", flush=True)
        for version in args.versions:
            bench.datagram_file(version)
            cpu: dict[str, list] = {c.name: [] for c in colls}  # per round: µs per flow, or None
            for r in range(rounds):
                for c in colls if r % 2 == 0 else colls[::-1]:
                    t = bench.trial(c, version, rate)
                    cpu[c.name].append(t.cpu / t.records * 1e6 if t.ok else None)
            print(f"\n{version}: CPU µs per flow record, median (min-max) of the passed trials")
            for name, v in cpu.items():
                good = [x for x in v if x is not None]
                print(f"  {name:15} " + (f"{statistics.median(good):.3f} ({min(good):.3f}-{max(good):.3f})"
                                         if good else "no trial passed") + f"  {len(good)}/{rounds} passed")
            pairs = [a / b for a, b in zip(cpu["imflow-noasn"], cpu["imflow-dns100k"], strict=True)
                     if a is not None and b is not None]
            if pairs:
                print(f"  noasn CPU / dns100k CPU per round: {' '.join(f'{x:.3f}' for x in pairs)}; "
                      f"median {statistics.median(pairs):.3f}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def main(argv: list[str]) -> int:
    if "--cpu-at" not in argv:
        return run.main(["--collectors", COLLECTORS, *argv])
    i = argv.index("--cpu-at")
    rate, rest = float(argv[i + 1]), argv[:i] + argv[i + 2:]
    rounds = 6
    if "--rounds" in rest:
        j = rest.index("--rounds")
        rounds, rest = int(rest[j + 1]), rest[:j] + rest[j + 2:]
    return cpu_at(rate, rounds, rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
