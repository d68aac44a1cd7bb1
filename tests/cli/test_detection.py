"""Item 5 of issue 17: `imflow services` and the report say how each service is detected, and
which ones this install cannot see without application ids; no column is cut."""

from __future__ import annotations

import json

from collector.classify.catalogue import load_catalogue
from tests.cli.conftest import imflow

CATALOGUE = load_catalogue()


def methods(s) -> list[str]:
    """Worked out from the catalogue entry, the way the classifier uses it."""
    out = []
    if any(p not in s.shared_ports for p in s.ports):
        out.append("ports")
    if s.prefixes:
        out.append("prefixes")
    if s.app_names:
        out.append("application id")
    return out


def test_services_json_says_how_each_is_detected(site):
    p = imflow("services", "--format", "json", cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    got = {s["id"]: s for s in json.loads(p.stdout)}
    for s in CATALOGUE.services[1:]:
        assert got[s.id]["detected_by"] == methods(s), s.id
        assert got[s.id]["needs_app_ids"] == (not {"ports", "prefixes"} & set(methods(s))), s.id
    assert got["whatsapp"]["needs_app_ids"] and got["signal"]["needs_app_ids"]
    assert not got["bittorrent"]["needs_app_ids"]


def test_services_table_is_not_cut_and_names_the_unseen(site):
    p = imflow("services", cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    assert "…" not in p.stdout
    lines = {line.split()[0]: line for line in p.stdout.splitlines()[1:] if line and not line[0].isspace()}
    assert "application id only" in lines["whatsapp"]
    whatsapp = CATALOGUE.by_id["whatsapp"]
    for port in whatsapp.shared_ports:  # every port, in full
        assert port in lines["whatsapp"]
    # the footer lists what nothing of this install sees: read from the JSON's methods
    j = json.loads(imflow("services", "--format", "json", cwd=site["cwd"]).stdout)
    unseen = [s["name"] for s in j if not set(s["methods"]) - {"app-id", "name"}]
    assert "Signal" in unseen and "BitTorrent" not in unseen  # no ports, prefixes, ASN or dnstap for Signal
    footer = p.stdout.split("seen here only when the exporter sends")[-1]
    assert f"{len(unseen)} services are seen here only when the exporter sends" in p.stdout
    assert all(name in footer for name in unseen)
    assert "dns.dnstap would learn their addresses" in footer


def test_services_csv(site):
    p = imflow("services", "--format", "csv", cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    head, *rows = p.stdout.splitlines()
    assert head.startswith("id,category,name,")
    assert len(rows) == len(CATALOGUE.services) - 1


def test_report_names_what_it_cannot_see(site):
    p = imflow("report", "--config", str(site["config"]), "--since", "all", "--format", "json", cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    # what nothing of this install sees, by the services' methods here (imflow services)
    j = json.loads(imflow("services", "--config", str(site["config"]), "--format", "json", cwd=site["cwd"]).stdout)
    unseen = sorted(s["id"] for s in j if not set(s["methods"]) - {"app-id", "name"})
    assert "signal" in unseen and "bittorrent" not in unseen
    assert sorted(rep["catalogue"]["needs_app_ids"]) == unseen
    assert any("Signal" in n and "application ids" in n for n in rep["notes"])
