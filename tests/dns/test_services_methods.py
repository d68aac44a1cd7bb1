"""`imflow services` says which methods this install has per service (issue 19): dns only with
dns.dnstap on, asn only with prefixes for the service's ASNs in the snapshot in use; and
`imflow catalogue update --asn-database` writes that snapshot from a MaxMind-format database
(written here with mmdb-writer: the truth is what the test put in it)."""

from __future__ import annotations

import json

import pytest

from collector.classify.catalogue import load_catalogue
from tests.cli.conftest import imflow

CAT = load_catalogue()


def services(tmp_path, *toml: str) -> dict:
    cfg = tmp_path / "imflow.toml"
    cfg.write_text("\n".join(toml) + "\n")
    p = imflow("services", "--config", str(cfg), "--format", "json", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    return {s["id"]: s for s in json.loads(p.stdout)}


def test_dns_method_only_with_dnstap(tmp_path):
    off = services(tmp_path)
    on = services(tmp_path, "[dns]", 'dnstap = "unix:/run/imflow/dnstap.sock"')
    for s in CAT.services[1:]:
        assert ("dns" in on[s.id]["methods"]) == bool(s.domains), s.id
        assert "dns" not in off[s.id]["methods"]
        assert any(c.startswith("dns:") for c in off[s.id]["cannot_see"]) == bool(s.domains)
    assert "dns" in on["signal"]["methods"] and on["signal"]["cannot_see"][:1] != ["dns"]


def test_asn_method_follows_the_snapshot_and_the_update_writes_it(tmp_path):
    mmdb_writer = pytest.importorskip("mmdb_writer")
    from netaddr import IPSet

    meta = CAT.by_id["whatsapp"].asns[0]
    w = mmdb_writer.MMDBWriter(ip_version=6, database_type="GeoLite2-ASN", ipv4_compatible=True)
    w.insert_network(IPSet(["198.51.100.0/24", "2001:db8:5::/48"]), {"autonomous_system_number": meta})
    w.insert_network(IPSet(["203.0.113.0/24"]), {"autonomous_system_number": 64512})  # in no service
    db = tmp_path / "asn.mmdb"
    w.to_db_file(str(db))
    out = tmp_path / "asn.txt"
    (tmp_path / "empty.toml").write_text("")
    p = imflow("catalogue", "update", "--config", str(tmp_path / "empty.toml"), "--asn-database", str(db),
               "--asn-out", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    lines = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert sorted(lines) == sorted([f"{meta} 198.51.100.0/24", f"{meta} 2001:db8:5::/48"])
    got = services(tmp_path, "[classify]", f'asn_prefixes = "{out}"')
    for s in CAT.services[1:]:
        has = meta in s.asns and any(p not in ("tcp/443", "udp/443", "tcp/80", "udp/80")
                                     for p in (*s.ports, *s.shared_ports))
        assert ("asn" in got[s.id]["methods"]) == has, s.id
    assert "asn" in got["whatsapp"]["methods"]  # tcp/5222
    assert any("AS" in c for c in got["telegram"]["cannot_see"])


def test_asn_update_refuses_what_is_not_a_database(tmp_path):
    bad = tmp_path / "x.mmdb"
    bad.write_bytes(b"\x00" * 100)
    (tmp_path / "empty.toml").write_text("")
    p = imflow("catalogue", "update", "--config", str(tmp_path / "empty.toml"), "--asn-database", str(bad),
               cwd=tmp_path)
    assert p.returncode == 1 and "nothing written" in p.stderr and len(p.stderr.splitlines()) == 1
