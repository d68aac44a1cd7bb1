"""What issue 19 costs the ingest loss-free rate: `imflow-noasn` (an empty ASN snapshot: the
classifier as before, but for the method codes), `imflow` (the shipped ASN snapshot, always on)
and `imflow-dns100k` (dnstap on, 100,000 addresses learned before the trial: a feeder sends that
many answers for *.whatsapp.net names to its socket and waits until the table holds them), side
by side in one run of the ingest harness (run.py; its flags pass through).

    python bench/ingest/dns_cost.py --versions v9 --quick
"""

from __future__ import annotations

import socket
import sys
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

if __name__ == "__main__":
    sys.exit(run.main(["--collectors", "imflow-noasn,imflow,imflow-dns100k", *sys.argv[1:]]))
