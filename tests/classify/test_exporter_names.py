"""Server names from the exporter (issue 19): IPFIX records carrying the TLS SNI or HTTP Host in
the enterprise elements of ntop nProbe (35632/188, /187), CESNET ipfixprobe (8057/808,
39499/1) and Cisco AVC (9/12235, after 4 octets of application and 2 of sub-application),
built here with the project's encoder, checked with tshark as a second decoder, then sent to
`imflow run`: per (host, service) totals and the method `name` must be what the names the
test wrote call for by the issue's patterns (*.whatsapp.com, *.signal.org ...), not what
imflow returned. Names of no service, hostile names, and names in a template that also has an
applicationId classify nothing by name."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.netflow import encode as E
from collector.netflow import fields as F
from collector.netflow.templates import server_name_id
from tests.daemon.test_daemon import Daemon, db_totals
from tests.support import pcapgen as pg

NTOP_SNI, NTOP_HOST = F.key(188, 35632), F.key(187, 35632)
CESNET_SNI, CESNET_HOST = F.key(808, 8057), F.key(1, 39499)
CISCO_HOST = F.key(12235, 9)
STD = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8), (2, 8), (151, 4)]
CISCO_PREFIX = b"\x0d\x00\x00\x50\x00\x00"  # application 13:80, sub-application 0

# (element, value as sent, the service the name calls for); one exporter session each
CASES = [
    (NTOP_SNI, b"web.whatsapp.com", "whatsapp"),
    (NTOP_HOST, b"CHAT.Signal.org:443", "signal"),  # Host with a port, mixed case
    (CESNET_SNI, b"gateway.discord.gg", "discord"),
    (CESNET_HOST, b"www.example.org", "other"),  # no service's name
    (CISCO_HOST, CISCO_PREFIX + b"mmg.whatsapp.net", "whatsapp"),
    (NTOP_SNI, b"\x1b[31mweb.whatsapp.com", "other"),  # control characters: not a DNS name
]


def message(element: int, value: bytes, client: str, server: str, nbytes: int, now: int, app: int = 0) -> bytes:
    flds = STD + [(element, F.VARLEN)] + ([(F.applicationId, 4)] if app else [])
    row = {8: client, 12: server, 7: 40000, 11: 443, 4: 6, 1: nbytes, 2: 3, 151: now, element: value}
    if app:
        row[F.applicationId] = app
    return E.ipfix_message([E.template_set([(256, flds)], True), E.data_set(256, flds, [row])],
                           export_time=now, sequence=0)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not on PATH")
def test_tshark_reads_the_names_the_test_wrote(tmp_path):
    now = int(time.time())
    dgrams = [(1.0 + i, "127.0.0.1", 5000 + i, "127.0.0.1", 4739,
               message(el, value, "10.9.0.1", "192.0.2.1", 1000, now)) for i, (el, value, _) in enumerate(CASES)]
    pcap = tmp_path / "names.pcap"
    pg.write_udp_pcap(pcap, dgrams)
    out = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==4739,cflow", "-T", "fields", "-E",
                          "separator=|", "-e", "cflow.pie.ntop.ssl_server_name", "-e", "cflow.pie.ntop.http_host",
                          "-e", "cflow.pie.cisco.application_http_host_app_id", "-e",
                          "cflow.pie.cisco.application_http_host"], capture_output=True, text=True, timeout=60)
    rows = [line.split("|") for line in out.stdout.splitlines()]
    assert rows[0][0] == "web.whatsapp.com" and rows[1][1] == "CHAT.Signal.org:443"
    assert rows[4][2] == CISCO_PREFIX[:4].hex() and rows[4][3].endswith("mmg.whatsapp.net")
    verbose = subprocess.run(["tshark", "-r", str(pcap), "-d", "udp.port==4739,cflow", "-V"],
                             capture_output=True, text=True, timeout=60).stdout
    for value in (b"gateway.discord.gg", b"www.example.org"):  # CESNET's: tshark shows their octets
        assert " ".join(f"{b:02x}" for b in value) in verbose


def test_names_classify_flows_per_exporter(tmp_path):
    db = tmp_path / "imflow.db"
    d = Daemon(tmp_path, db)
    now = int(time.time())
    expected: Counter = Counter()
    methods: Counter = Counter()
    try:
        for i, (element, value, service) in enumerate(CASES):
            client, nbytes = f"10.9.0.{i + 1}", 1000 * (i + 1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(message(element, value, client, f"192.0.2.{i + 1}", nbytes, now), ("127.0.0.1", d.port))
            expected[(client, service, "bytes")] += nbytes
            expected[(client, service, "packets")] += 3
            methods[(service, "name" if service != "other" else "none")] += nbytes
        # an applicationId in the same template wins: the name is not read
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(message(NTOP_SNI, b"web.whatsapp.com", "10.9.1.1", "192.0.2.99", 500, now, app=(13 << 24) | 99),
                     ("127.0.0.1", d.port))
        expected[("10.9.1.1", "other", "bytes")] += 500
        expected[("10.9.1.1", "other", "packets")] += 3
        methods[("other", "none")] += 500
        time.sleep(2.5)
    finally:
        assert d.stop() == 0, d.text()
    assert db_totals(db) == dict(expected)
    p = subprocess.run([sys.executable, "-m", "collector", "top", "--db", str(db), "--since", "all", "--by",
                        "service,method", "--format", "json", "--limit", "0"], capture_output=True, text=True,
                       timeout=60)
    assert {(r["service"], r["method"]): r["bytes"] for r in json.loads(p.stdout)} == dict(methods)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 8))
def test_any_octets_give_a_dns_name_or_nothing(octets, skip):
    ident, text = server_name_id(octets, skip)
    assert (ident == 0) == (text == "")
    if text:
        assert len(text) <= 253 and re.fullmatch(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*", text)
        assert ident >> 56 == F.NAME_ENGINE and server_name_id(text.encode()) == (ident, text)
