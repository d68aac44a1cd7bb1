"""sFlow from Open vSwitch (tests/sflow/ovs.py): the test's pcap written into a userspace
bridge sampling every frame; the flows imflow decodes must be the pcap's own, exactly (bytes as
sFlow counts a frame: the IP packet, the Ethernet header and the FCS), and the port counters
OVS sends in counter samples must reach the agent's interface state."""

from __future__ import annotations

from collections import Counter

import pytest

from collector.netflow.decoder import Decoder
from tests.sflow import ovs
from tests.sflow.test_pmacctd import frame_truth, per_flow

pytestmark = pytest.mark.skipif(not ovs.available(), reason="needs root, Open vSwitch and iproute2")


def test_every_frame_is_a_sample_and_the_ports_are_counted(sessions):
    pcap, truth = sessions
    try:
        got = ovs.export(pcap)
    except Exception as exc:  # the switch could not be set up here (no veth, no AF_PACKET)
        pytest.skip(f"Open vSwitch could not run: {exc}")
    dec = Decoder()
    batch = dec.decode([(p, a, 1.0) for p, a in got])
    want: Counter = Counter()
    for f in frame_truth(truth):
        want[f.key + ("bytes",)] += f.bytes
        want[f.key + ("packets",)] += f.packets
    assert per_flow(batch) == want
    assert not dec.stats.errors
    assert dec.stats.total("seq_lost") == 0
    ins = set(batch.in_if.tolist())
    assert len(ins) == 1 and 0 not in ins  # one port frames came in on, a real ifIndex
    agent = next(s.sflow for s in dec.sessions.values() if s.sflow is not None)
    assert agent.interfaces, "no counter samples from OVS"
    port = agent.interfaces.get(ins.pop())
    assert port is not None and port.in_octets > 0
