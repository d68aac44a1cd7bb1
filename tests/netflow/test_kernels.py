"""The decoder's compiled field reads (collector/kernels/_kernels.c `fields`) against its NumPy reads.

The NumPy way is checked against softflowd's pcap totals and tshark elsewhere; here random
templates (fields in any order, reduced-size counters of 1-8 octets, IPv4, IPv6, both or no
addresses, every time representation, biflow counters, application ids, odd widths the kernel
leaves to NumPy) carry random records, decoded once with the kernels and once without
(`kernels.use`): the flows must be equal.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector import kernels
from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.netflow.decoder import Decoder

pytestmark = pytest.mark.skipif(not kernels.available(), reason="the kernels were not built")

T0 = 1_764_000_000
ADDRS = {"v4": [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4)],
         "v6": [(F.sourceIPv6Address, 16), (F.destinationIPv6Address, 16)],
         "none": []}
ADDRS["both"] = ADDRS["v4"] + ADDRS["v6"]
TIMES = {"uptime": (F.flowStartSysUpTime, F.flowEndSysUpTime, 4), "ms": (F.flowStartMilliseconds, F.flowEndMilliseconds, 8),
         "s": (F.flowStartSeconds, F.flowEndSeconds, 4), "us": (F.flowStartMicroseconds, F.flowEndMicroseconds, 8),
         "delta": (F.flowStartDeltaMicroseconds, F.flowEndDeltaMicroseconds, 4), "none": None}


@st.composite
def template(draw):
    fields = list(ADDRS[draw(st.sampled_from(list(ADDRS)))])
    for k, widths in ((F.sourceTransportPort, [2, 1, 3]), (F.destinationTransportPort, [2, 4]),
                      (F.protocolIdentifier, [1, 2]), (F.ingressInterface, [2, 4, 3]),
                      (F.egressInterface, [4, 2, 8]),
                      (draw(st.sampled_from([F.octetDeltaCount, F.postOctetDeltaCount, F.initiatorOctets])), [4, 8, 1, 2, 3, 5, 6, 7]),
                      (F.packetDeltaCount, [4, 8, 2, 3]), (F.reverse(F.octetDeltaCount), [4, 8]),
                      (F.applicationId, [4, 3])):
        if draw(st.integers(0, 5)):  # most templates have most fields
            fields.append((k, draw(st.sampled_from(widths))))
    times = TIMES[draw(st.sampled_from(list(TIMES)))]
    if times:
        start, end, w = times
        which = draw(st.sampled_from(["both", "start", "end"]))
        fields += [(start, w)] * (which != "end") + [(end, w)] * (which != "start")
    return draw(st.permutations(fields))


def value(draw, k, width):
    if k in (F.sourceIPv6Address, F.destinationIPv6Address):
        return draw(st.sampled_from([bytes(16), bytes(15) + b"\x01"]) | st.binary(min_size=16, max_size=16))
    if k in (F.flowStartMilliseconds, F.flowEndMilliseconds):
        return draw(st.integers(T0 * 1000 - 10**6, T0 * 1000))
    if k in (F.flowStartSeconds, F.flowEndSeconds):
        return draw(st.integers(T0 - 1000, T0))
    if k in (F.flowStartMicroseconds, F.flowEndMicroseconds):
        return (T0 + F.NTP_EPOCH_OFFSET) << 32 | draw(st.integers(0, 2**32 - 1))
    return draw(st.integers(0, 2 ** (8 * width) - 1))


@st.composite
def exports(draw):
    ipfix = draw(st.booleans())
    tpl = draw(template())
    if not ipfix:  # v9 has no reverse elements (an enterprise bit)
        tpl = [(k, w) for k, w in tpl if k < 1 << 15]
    rows = [{k: value(draw, k, w) for k, w in tpl} for _ in range(draw(st.integers(0, 40)))]
    sets = [E.template_set([(256, tpl)], ipfix), E.data_set(256, tpl, rows)]
    if ipfix:
        d = E.ipfix_message(sets, export_time=T0, sequence=0)
    else:
        d = E.v9_message(sets, uptime_ms=90_000, unix_secs=T0, sequence=0)
    # then the records again in two more datagrams, decoded in a call of their own: the bulk
    # path, whose records are read where they lie in the datagrams
    more = [E.ipfix_message([sets[1]], export_time=T0, sequence=len(rows) * i) if ipfix else
            E.v9_message([sets[1]], uptime_ms=91_000, unix_secs=T0 + 1, sequence=i) for i in (1, 2)]
    return [[(d, ("192.0.2.1", 2055), float(T0))], [(m, ("192.0.2.1", 2055), T0 + 1.0) for m in more]]


COLS = ("src_addr", "dst_addr", "src_port", "dst_port", "proto", "in_if", "out_if", "bytes", "packets",
        "start", "end", "app_id", "sampling_rate", "seq", "session")


def _decode(calls, on: bool):
    with kernels.use(on):
        dec = Decoder()
        return [{c: getattr(batch, c).tolist() for c in COLS} for batch in map(dec.decode, calls)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exports())
def test_kernel_reads_equal_numpy_reads(calls):
    with_kernels = _decode(calls, True)
    without = _decode(calls, False)
    assert with_kernels == without


def test_reads_are_the_records_values():
    """One record, known values: both ways read them (a check on the check above)."""
    tpl = [(F.destinationTransportPort, 2), (F.sourceIPv4Address, 4), (F.octetDeltaCount, 3),
           (F.destinationIPv6Address, 16), (F.ingressInterface, 4), (F.flowEndSeconds, 4)]
    row = {F.destinationTransportPort: 5050, F.sourceIPv4Address: "10.1.2.3", F.octetDeltaCount: 70_000,
           F.destinationIPv6Address: "2001:db8::9", F.ingressInterface: 7, F.flowEndSeconds: T0 - 5}
    d = E.ipfix_message([E.template_set([(300, tpl)], True), E.data_set(300, tpl, [row])], export_time=T0, sequence=0)
    for on in (True, False):
        got, = _decode([[(d, ("192.0.2.1", 4739), float(T0))]], on)
        assert got["dst_port"] == [5050] and got["bytes"] == [70_000] and got["in_if"] == [7]
        assert got["src_addr"] == [(0, 0xFFFF_0A01_0203)]
        assert got["end"] == [T0 - 5.0]
        assert got["dst_addr"] == [(0x2001_0DB8_0000_0000, 9)]
