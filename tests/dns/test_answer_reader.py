"""dnstap.learn_answer reads DNS answers with dnspython's wire parser record by record; here
dnspython's whole-message parser (`dns.message.from_wire`) is the second decoder: for answers
of any mix of A, AAAA, CNAME and other records, names compressed or not, the addresses learned
and their TTLs are the ones it reads. Hostile octets never raise, and a message cut short is
never learned from beyond what it holds."""

from __future__ import annotations

import ipaddress

import dns.message
import dns.rdatatype
import dns.rrset
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.classify.catalogue import load_catalogue
from collector.classify.domains import DomainMatcher
from collector.dns.dnstap import learn_answer
from collector.dns.table import LearnedAddresses
from collector.netflow.batch import addr_from_str

CAT = load_catalogue()
MATCHER = DomainMatcher(CAT.services)

names = st.sampled_from(["web.whatsapp.net.", "chat.signal.org.", "x.example.com.", "cdn.example.net."])
v4 = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
v6 = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))
record = st.one_of(
    st.tuples(names, st.integers(0, 2**31 - 1), st.just("A"), v4),
    st.tuples(names, st.integers(0, 2**31 - 1), st.just("AAAA"), v6),
    st.tuples(names, st.integers(0, 2**31 - 1), st.just("CNAME"), names),
    st.tuples(names, st.integers(0, 2**31 - 1), st.just("TXT"), st.just('"hello"')),
)


def message(qname: str, records) -> bytes:
    q = dns.message.make_query(qname, "A")
    r = dns.message.make_response(q)
    for owner, ttl, rtype, text in records:
        r.answer.append(dns.rrset.from_text(owner, ttl, "IN", rtype, text))
    return r.to_wire()


def learned(wire: bytes) -> tuple[str, dict]:
    t = LearnedAddresses(grace=0, max_ttl=2**32)
    outcome = learn_answer(wire, MATCHER, t, 0.0, "10.0.0.1")
    return outcome, {k: v for k, v in t.entries.items()}


@settings(max_examples=200, deadline=None)
@given(names, st.lists(record, max_size=8))
def test_the_addresses_of_dnspythons_own_reading(qname, records):
    wire = message(qname, records)
    outcome, got = learned(wire)
    full = dns.message.from_wire(wire)  # the second decoder
    service = MATCHER.match(full.question[0].name.to_text(omit_final_dot=True))
    if not service:
        assert outcome == "unmatched" and not got
        return
    want = {}
    for rrset in full.answer:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            for rdata in rrset:
                want[addr_from_str(rdata.address)] = (MATCHER.ids[service], float(rrset.ttl))
    # the TTL: one of the address's own records' (the test's records, not a decoder's: dnspython
    # merges records of one name and type into an rrset of the lowest TTL, and an address that
    # comes twice is learned twice, the later answer winning)
    ttls = {}
    for _, ttl, rtype, text in records:
        if rtype in ("A", "AAAA"):
            ttls.setdefault(addr_from_str(text), set()).add(float(ttl))
    assert set(got) == set(want)
    for key, (sid, ttl) in got.items():
        assert sid == want[key][0] and ttl in ttls[key]
    assert outcome == ("matched" if want else "matched_no_address")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_octets_never_raise(junk):
    outcome, got = learned(junk)
    assert outcome in ("bad_dns", "unmatched", "matched", "matched_no_address")


def test_a_message_cut_short_is_bad_or_learns_only_what_it_holds():
    wire = message("web.whatsapp.net.", [("web.whatsapp.net.", 60, "A", "192.0.2.1"),
                                         ("web.whatsapp.net.", 60, "AAAA", "2001:db8::1")])
    whole = learned(wire)[1]
    assert len(whole) == 2
    for cut in range(len(wire)):
        outcome, got = learned(wire[:cut])
        assert outcome == "bad_dns" and not got  # counts say 2 records: a cut one is missing
