"""sFlow v5 from a real agent: pmacct's pmacctd with the sfprobe plugin samples a pcap the test
wrote and exports flow samples with raw packet headers, on loopback.

Ground truth is the pcap's own packets (tests.support.pcapgen): at sampling rate 1 every packet
is one sample, so per flow and per (host, service) the totals must be exact, with bytes the
frame as sFlow counts it (the IP packet, the 14-octet Ethernet header pcapgen writes, and the
4-octet FCS the sFlow spec counts in frame_length). At 1:N the totals must agree within the
sampling error. tshark's sflow dissector decodes the same datagrams record by record."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import pytest

from collector.netflow.batch import addr_to_str
from collector.netflow.decoder import Decoder
from collector.sflow.decode import VERSION
from tests.daemon.test_daemon import Daemon, db_totals, truth_totals
from tests.sflow import pmacct, tsharksflow
from tests.support import pcapgen as pg
from tests.support import tshark

pytestmark = pytest.mark.skipif(not pmacct.available(), reason="pmacctd not on PATH")

ETHERNET = 14  # the link header pcapgen writes on every frame


def frame_truth(truth: list[pg.FlowTruth]) -> list[pg.FlowTruth]:
    """The pcap's flows with bytes as sFlow's frame_length counts them."""
    return [dataclasses.replace(f, bytes=f.bytes + (ETHERNET + pmacct.FCS) * f.packets) for f in truth]


def per_flow(batch) -> Counter:
    out: Counter = Counter()
    for i in range(len(batch)):
        key = (addr_to_str(*batch.src_addr[i].tolist()), addr_to_str(*batch.dst_addr[i].tolist()),
               int(batch.src_port[i]), int(batch.dst_port[i]), int(batch.proto[i]))
        out[key + ("bytes",)] += int(batch.bytes[i])
        out[key + ("packets",)] += int(batch.packets[i])
    return out


def test_every_packet_is_a_sample_at_rate_1(sessions):
    pcap, truth = sessions
    got = pmacct.export(pcap)
    dec = Decoder()
    batch = dec.decode([(p, a, 1.0) for p, a in got])
    want: Counter = Counter()
    for f in frame_truth(truth):
        want[f.key + ("bytes",)] += f.bytes
        want[f.key + ("packets",)] += f.packets
    assert per_flow(batch) == want
    assert not dec.stats.errors and not dec.stats.notices
    assert dec.stats.total("seq_lost") == 0
    assert dec.stats.by_second("datagrams") == {VERSION: len(got)}
    assert set(batch.sampling_rate.tolist()) == {1}


def test_daemon_totals_per_host_and_service_are_exact(tmp_path, sessions):
    pcap, truth = sessions
    d = Daemon(tmp_path, tmp_path / "imflow.db")
    pmacct.send(pcap, d.port)
    assert d.stop() == 0, d.text()
    assert db_totals(tmp_path / "imflow.db") == truth_totals(frame_truth(truth))
    assert "errors 0" in d.stopped_line()


RATE = 10


@pytest.fixture(scope="module")
def many_packets(tmp_path_factory):
    """Few flows of many packets each, so that 1:RATE sampling leaves hundreds of samples a flow."""
    tmp = tmp_path_factory.mktemp("sampled")
    sizes = [60, 1500, 576, 1200, 90]
    sessions = [
        pg.Session("10.0.0.5", "149.154.167.50", 40000, 443, pg.TCP,
                   [(k % 2, sizes[k % 5]) for k in range(3000)], gap=0.001),
        pg.Session("10.0.0.6", "198.51.100.7", 50000, 5222, pg.TCP,
                   [(k % 2, sizes[(k + 1) % 5]) for k in range(2000)], gap=0.001),
        pg.Session("fd00::9", "2001:db8::6", 6881, 6882, pg.UDP,
                   [(k % 2, sizes[(k + 2) % 5] + 20) for k in range(2000)], gap=0.001),
    ]
    truth = pg.write_sessions(tmp / "many.pcap", sessions)
    return tmp / "many.pcap", frame_truth(truth)


def test_sampled_totals_agree_within_the_sampling_error(many_packets):
    pcap, truth = many_packets
    got = pmacct.export(pcap, rate=RATE)
    dec = Decoder()
    batch = dec.decode([(p, a, 1.0) for p, a in got])
    assert set(batch.sampling_rate.tolist()) == {RATE}
    flows = per_flow(batch)
    for f in truth:
        # n packets sampled 1 in RATE: the estimate RATE x k has a standard deviation of at
        # most sqrt(n (RATE - 1)) packets; five of them, in bytes at the largest frame
        sd = math.sqrt(f.packets * (RATE - 1))
        est_packets = flows[f.key + ("packets",)]
        assert abs(est_packets - f.packets) <= 5 * sd, (f.key, est_packets, f.packets)
        est_bytes = flows[f.key + ("bytes",)]
        assert abs(est_bytes - f.bytes) <= 5 * sd * (1500 + ETHERNET + pmacct.FCS), (f.key, est_bytes, f.bytes)
        assert est_packets % RATE == 0
    assert not dec.stats.errors


@pytest.mark.skipif(not tshark.available(), reason="tshark not on PATH")
def test_tshark_decodes_the_same_samples(tmp_path, sessions):
    pcap, _ = sessions
    got = pmacct.export(pcap)
    port = 6343
    pg.write_udp_pcap(tmp_path / "export.pcap",
                      [(1.0 + i * 1e-3, a[0], a[1], "127.0.0.1", port, p) for i, (p, a) in enumerate(got)])
    theirs = tsharksflow.decode(tmp_path / "export.pcap", port)
    dec = Decoder()
    batch = dec.decode([(p, a, 1.0) for p, a in got])
    order = batch.seq.argsort(kind="stable")
    mine = []
    for i in order.tolist():
        mine.append({"rate": int(batch.sampling_rate[i]),
                     "frame_length": int(batch.bytes[i]) // int(batch.sampling_rate[i]),
                     "src_addr": addr_to_str(*batch.src_addr[i].tolist()),
                     "dst_addr": addr_to_str(*batch.dst_addr[i].tolist()),
                     "proto": int(batch.proto[i]), "src_port": int(batch.src_port[i]),
                     "dst_port": int(batch.dst_port[i])})
    assert len(theirs) == len(mine) > 0
    assert theirs == mine
