"""Addresses learned from DNS and networks by ASN in the classifier: precedence (application id
> DNS > prefix > ASN > owned port), the ASN port rule, and ASN snapshots from a MaxMind-format
database written here with mmdb-writer (the truth is what the test wrote into it)."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from collector.classify import asn as asn_data
from collector.classify.catalogue import CatalogueError, load_catalogue
from collector.classify.classifier import METHODS, Classifier
from collector.dns.table import LearnedAddresses
from collector.netflow.batch import ADDR, addr_from_str

SNAP = asn_data.parse_snapshot("# date: 2026-12-01\n64500 203.0.113.0/24\n64501 198.51.100.0/24\n"
                               "64501 2001:db8:77::/48\n", "test")
CAT = load_catalogue(extra={"service": [{"id": "zoom", "asns": [64500]},
                                        {"id": "whatsapp", "asns": [64501]},
                                        {"id": "messenger", "asns": [64501]}]})


def run(flows, learned=None, app_ids=None, now=100.0):
    c = Classifier(CAT, app_ids=app_ids, asn=SNAP)
    c.learned_addresses = learned
    src = np.zeros(len(flows), ADDR)
    dst = np.zeros(len(flows), ADDR)
    for i, f in enumerate(flows):
        src[i], dst[i] = addr_from_str(f[0]), addr_from_str(f[2])
    cols = [np.array([f[k] for f in flows], t) for k, t in ((1, np.uint16), (3, np.uint16), (4, np.uint8))]
    app = np.array([f[5] if len(f) > 5 else 0 for f in flows], np.uint64)
    out = c.classify(src, dst, *cols, app_id=app, session=np.zeros(len(flows), np.uint32), now=now)
    return [(CAT.services[s].id, METHODS[m]) for s, m in zip(out.service, out.method)]


def test_asn_needs_a_port_one_service_of_the_as_lists():
    got = run([("10.0.0.1", 40000, "203.0.113.9", 3478, 17),      # zoom lists udp/3478 (shared)
               ("10.0.0.1", 40000, "203.0.113.9", 443, 6),        # web port: never by ASN
               ("10.0.0.1", 40000, "203.0.113.9", 8801, 17),      # its own port too: ASN first
               ("10.0.0.1", 40000, "198.51.100.5", 5222, 6),      # only whatsapp lists tcp/5222
               ("2001:db8:77::5", 5222, "fd00::1", 40001, 6),     # the same, IPv6, server is src
               ("10.0.0.1", 40000, "198.51.100.5", 3478, 17),     # both list it: the port owner (stun)
               ("10.0.0.1", 40000, "198.51.100.5", 9999, 6)])     # no service lists it
    assert got == [("zoom", "asn"), ("other", "none"), ("zoom", "asn"), ("whatsapp", "asn"),
                   ("whatsapp", "asn"), ("stun", "port"), ("other", "none")]


def test_dns_beats_prefix_and_ports_and_loses_to_app_ids():
    t = LearnedAddresses(grace=10)
    t.learn(*addr_from_str("192.0.2.80"), "signal", 60, now=0.0)
    t.learn(*addr_from_str("149.154.167.50"), "whatsapp", 60, now=0.0)  # inside Telegram's prefixes
    t.learn(*addr_from_str("2001:db8::53"), "threema", 60, now=0.0)
    flows = [("10.0.0.1", 40000, "192.0.2.80", 443, 6),
             ("192.0.2.80", 443, "10.0.0.1", 40000, 6),
             ("10.0.0.1", 40000, "149.154.167.50", 443, 6),
             ("fd00::1", 40000, "2001:db8::53", 5222, 6),
             ("10.0.0.1", 40000, "192.0.2.80", 443, 6, (13 << 56) | 453)]
    got = run(flows, t, app_ids={(13 << 56) | 453: "teams"}, now=50.0)
    assert got == [("signal", "dns"), ("signal", "dns"), ("whatsapp", "dns"), ("threema", "dns"),
                   ("teams", "app-id")]
    later = run(flows, t, app_ids={(13 << 56) | 453: "teams"}, now=71.0)  # TTL 60 + grace 10 over
    assert later == [("other", "none"), ("other", "none"), ("telegram", "prefix"), ("xmpp", "port"),
                     ("teams", "app-id")]


def test_snapshot_errors_name_the_line():
    with pytest.raises(CatalogueError, match="line 2"):
        asn_data.parse_snapshot("# date: 2026-12-01\n64500 203.0.113.0/33\n", "x")
    with pytest.raises(CatalogueError, match="date"):
        asn_data.parse_snapshot("64500 203.0.113.0/24\n", "x")


def test_shipped_snapshot_covers_the_catalogue_asns():
    snap = asn_data.shipped()
    shipped_cat = load_catalogue()
    wanted = {a for s in shipped_cat.services for a in s.asns}
    assert wanted and wanted <= set(snap.prefixes)
    assert snap.date and "CC BY 4.0" in snap.source


def test_from_mmdb_reads_the_networks_written(tmp_path):
    mmdb_writer = pytest.importorskip("mmdb_writer")
    from netaddr import IPSet

    nets = {64500: ["203.0.113.0/25", "2001:db8:1::/48"], 64501: ["198.51.100.0/24"], 65000: ["192.0.2.0/24"]}
    w = mmdb_writer.MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    for number, cidrs in nets.items():
        w.insert_network(IPSet(cidrs), {"autonomous_system_number": number,
                                        "autonomous_system_organization": f"Org {number}"})
    path = tmp_path / "asn.mmdb"
    w.to_db_file(str(path))
    got = asn_data.from_mmdb(str(path), {64500, 64501})
    assert {k: sorted(map(str, v)) for k, v in got.items()} == {
        64500: sorted(["203.0.113.0/25", "2001:db8:1::/48"]), 64501: ["198.51.100.0/24"]}
    text = asn_data.format_snapshot("2026-12-04", "test", got)
    again = asn_data.parse_snapshot(text, "again")
    assert {k: set(v) for k, v in again.prefixes.items()} == {
        k: {ipaddress.ip_network(n) for n in v} for k, v in ((64500, nets[64500]), (64501, nets[64501]))}
