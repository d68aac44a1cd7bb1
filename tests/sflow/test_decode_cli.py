"""`imflow decode` on a capture of a real agent's sFlow (pmacctd sfprobe): every sampled packet
of the test's pcap comes back as a record, with the agent, the frame as bytes and the summary's
sampling figures."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from tests.sflow import pmacct
from tests.sflow.test_pmacctd import frame_truth
from tests.support import pcapgen as pg

pytestmark = pytest.mark.skipif(not pmacct.available(), reason="pmacctd not on PATH")


def test_decode_prints_every_sample(tmp_path, sessions):
    pcap, truth = sessions
    got = pmacct.export(pcap)
    pg.write_udp_pcap(tmp_path / "sflow.pcap", [(1_700_000_000 + i * 1e-3, a[0], a[1], "127.0.0.1", 6343, p)
                                                 for i, (p, a) in enumerate(got)])
    p = subprocess.run([sys.executable, "-m", "collector", "decode", str(tmp_path / "sflow.pcap")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    records = [json.loads(line) for line in p.stdout.splitlines()]
    mine: Counter = Counter()
    for r in records:
        assert (r["version"], r["agent"], r["sub_agent"], r["sampling_rate"], r["packets"]) == ("sflow5", "127.0.0.1",
                                                                                                   0, 1, 1)
        key = (r["src_addr"], r["dst_addr"], r["src_port"], r["dst_port"], r["proto"])
        mine[key] += r["bytes"]
    assert mine == Counter({f.key: f.bytes for f in frame_truth(truth)})
    packets = sum(f.packets for f in truth)
    assert f"decoded: {packets} flows (sflow5 {len(got)} datagrams {packets} flows)" in p.stderr
    assert f"sflow: 1 agent sessions, {packets} flow samples" in p.stderr
    assert "errors: none" in p.stderr
