"""Link share without SNMP: an sFlow agent's counter samples (if_counters) become the exporter's
interface state (`imflow_interface_*` series, named by ifIndex), its flow samples' input and
output ports the per-interface bins, and their sequence numbers, pools and drops the
`imflow_sflow_*` sampling figures, through `imflow run`, in one process and with `--workers`
(the counters cross the workers' pipes). The counters and bytes are those the
test sent (flows: frame length x rate of headers it built)."""

from __future__ import annotations

import signal
import socket
import time
from collections import Counter

import pytest

from collector.sflow import encode as E
from tests.daemon.test_daemon import Daemon
from tests.daemon.test_workers import wait_workers
from tests.snmp.test_daemon_snmp import scrape, top_interfaces, value, wait_for
from tests.support import pcapgen as pg
from tests.test_metrics import free_port

WAN, LAN = 1, 2
RATE = 100
SEQ = [1, 2, 3, 4, 5, 8]  # the sample sequence numbers of one data source: 6 and 7 lost
# (client, server, client port, server port, proto, IP length, category)
FLOWS = [("10.1.1.5", "198.51.100.7", 50000, 6881, pg.UDP, 1000, "p2p"),
         ("10.1.1.6", "198.51.100.8", 50001, 1863, pg.TCP, 400, "im"),
         ("10.1.1.7", "203.0.113.9", 5060, 5060, pg.UDP, 300, "voip")]


def frame(c, s, cp, sp, proto, length) -> bytes:
    l4len = length - 20 - (20 if proto == pg.TCP else 8)
    seg = (pg.tcp_segment(c, s, cp, sp, 1, 0, pg.ACK, bytes(l4len)) if proto == pg.TCP
           else pg.udp_segment(c, s, cp, sp, bytes(l4len)))
    return pg.ether_frame(pg.ip_packet(c, s, proto, seg))


def datagrams() -> tuple[list[bytes], Counter]:
    want: Counter = Counter()
    samples = []
    for k, (c, s, cp, sp, proto, length, cat) in enumerate(FLOWS):
        up = frame(c, s, cp, sp, proto, length)
        down = frame(s, c, sp, cp, proto, length)
        s1, s2 = SEQ[2 * k], SEQ[2 * k + 1]
        samples.append(E.flow_sample([E.raw_header(up[:128], len(up) + 4)], seq=s1, rate=RATE, pool=s1 * RATE,
                                     drops=s1 // 3, in_if=LAN, out_if=WAN))
        samples.append(E.flow_sample([E.raw_header(down[:128], len(down) + 4)], seq=s2, rate=RATE, pool=s2 * RATE,
                                     drops=s2 // 3, in_if=WAN, out_if=LAN, expanded=True))
        for key in ((str(LAN), "in", cat), (str(WAN), "out", cat), (str(WAN), "in", cat), (str(LAN), "out", cat)):
            want[key] += (len(up) + 4) * RATE
    counters = E.counter_sample([E.if_counters(WAN, 10**9, 8_123_456_789_012, 1_234_567_890_123),
                                 E.if_counters(LAN, 10**10, 5, 6)], seq=1)
    return [E.datagram([counters], seq=1), E.datagram(samples, seq=2)], want


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one-process", "workers"])
def test_counter_samples_and_ports_give_link_share_without_snmp(tmp_path, workers):
    mport = free_port()
    d = Daemon(tmp_path, tmp_path / "imflow.db", "--metrics", f"127.0.0.1:{mport}", "--refresh-time", "3600",
               *workers)
    grams, want = datagrams()
    if workers:
        wait_workers(d, 2)  # each listening on the port before anything is sent
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for g in grams:
                s.sendto(g, ("127.0.0.1", d.port))
        time.sleep(2.0 if workers else 0.5)  # workers hand on their bins and counters every second
        d.proc.send_signal(signal.SIGHUP)  # a reload flushes: the metrics see the bins and the counters
        text = wait_for(mport, "imflow_interface_bytes_total", 8_123_456_789_012.0, exporter="127.0.0.1",
                        if_name=str(WAN), direction="in")
        assert value(text, "imflow_interface_bytes_total", exporter="127.0.0.1", if_name=str(WAN),
                     direction="out") == 1_234_567_890_123
        assert value(text, "imflow_interface_speed_bytes", exporter="127.0.0.1", if_name=str(LAN)) == 1e10 / 8
        assert value(text, "imflow_snmp_up", exporter="127.0.0.1") is None  # nothing was polled
        # the sampling figures: what the samples' sequence numbers, pools and drops say
        assert value(text, "imflow_sflow_samples_total", exporter="127.0.0.1") == len(SEQ)
        assert value(text, "imflow_sflow_samples_lost_total", exporter="127.0.0.1") == 2
        assert value(text, "imflow_sflow_sample_pool_packets_total", exporter="127.0.0.1") == (SEQ[-1] - SEQ[0]) * RATE
        assert value(text, "imflow_sflow_agent_drops_total", exporter="127.0.0.1") == SEQ[-1] // 3 - SEQ[0] // 3
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            text = scrape(mport)
            got = {k: value(text, "imflow_interface_service_bytes_total", exporter="127.0.0.1", if_name=k[0],
                            direction=k[1], category=k[2]) for k in want}
            if got == want:
                break
            time.sleep(0.3)
        assert got == dict(want)
    finally:
        assert d.stop() == 0, d.text()
    assert top_interfaces(tmp_path / "imflow.db") == dict(want)
