"""The daemon with SNMP: snmpsim serves a recorded edge router whose ifIndex values match the
flows the test sends; names, speeds and counters must arrive in the metrics and the per-interface
rollups (`imflow top --by interface,service`). A wrong community costs SNMP, never flows."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter

from collector.netflow import encode as E
from collector.netflow import fields as F
from tests.daemon.test_daemon import Daemon
from tests.test_metrics import free_port

FLDS = [(F.sourceIPv4Address, 4), (F.destinationIPv4Address, 4), (F.sourceTransportPort, 2),
        (F.destinationTransportPort, 2), (F.protocolIdentifier, 1), (F.octetDeltaCount, 4),
        (F.packetDeltaCount, 4), (F.ingressInterface, 2), (F.egressInterface, 2)]
WAN, LAN = 1, 2  # Gi0/0/0 "WAN: ISP uplink" and Gi0/0/1 "LAN" in edge-router.snmprec
# (client, server, client port, server port, proto, bytes up, bytes down, category)
FLOWS = [("10.1.1.5", "198.51.100.7", 50000, 6881, 6, 40_000, 900_000, "p2p"),
         ("10.1.1.6", "198.51.100.8", 50001, 1863, 6, 3_000, 5_000, "im"),
         ("10.1.1.7", "203.0.113.9", 5060, 5060, 17, 1_200, 1_500, "voip"),
         ("10.1.1.8", "203.0.113.10", 50002, 80, 6, 2_000, 70_000, "other")]


def datagrams() -> list[bytes]:
    rows = []
    for c, s, cp, sp, proto, up, down, _ in FLOWS:
        rows.append({8: c, 12: s, 7: cp, 11: sp, 4: proto, 1: up, 2: 10, 10: LAN, 14: WAN})
        rows.append({8: s, 12: c, 7: sp, 11: cp, 4: proto, 1: down, 2: 20, 10: WAN, 14: LAN})
    t = int(time.time())
    return [E.v9_message([E.template_set([(256, FLDS)], False), E.data_set(256, FLDS, rows)],
                         uptime_ms=1000, unix_secs=t, sequence=0)]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


def value(text: str, name: str, **labels) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def start(tmp_path, snmpsim, community: str):
    cfg = tmp_path / "imflow.toml"
    cfg.write_text(f'[[snmp.targets]]\nexporter = "127.0.0.1"\naddress = "127.0.0.1:{snmpsim.port}"\n'
                   f'version = "2c"\ncommunity = "{community}"\ninterval = 1\ntimeout = 0.5\nretries = 0\n')
    mport = free_port()
    d = Daemon(tmp_path, tmp_path / "imflow.db", "--config", str(cfg), "--metrics", f"127.0.0.1:{mport}",
               "--refresh-time", "3600")
    return d, mport


def wait_for(port: int, name: str, want, **labels) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = scrape(port)
        if value(text, name, **labels) == want:
            return text
        time.sleep(0.3)
    raise AssertionError(f"{name}{labels} never became {want}:\n{text}")


def send(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for d in datagrams():
            s.sendto(d, ("127.0.0.1", port))


def top_interfaces(db) -> dict:
    p = subprocess.run([sys.executable, "-m", "collector", "top", "--db", str(db), "--since", "all", "--by",
                        "interface,direction,category", "--format", "json", "--limit", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return {(r["interface"], r["direction"], r["category"]): r["bytes"] for r in json.loads(p.stdout)}


def expected(wan: str, lan: str) -> dict:
    want = Counter()
    for *_, up, down, cat in FLOWS:
        want[(lan, "in", cat)] += up  # client -> server enters on the LAN side
        want[(wan, "out", cat)] += up
        want[(wan, "in", cat)] += down
        want[(lan, "out", cat)] += down
    return dict(want)


def test_interfaces_from_snmp_name_rollups_and_metrics(tmp_path, snmpsim):
    d, mport = start(tmp_path, snmpsim, "edge-router")
    try:
        text = wait_for(mport, "imflow_snmp_up", 1.0, exporter="127.0.0.1")
        send(d.port)
        assert value(text, "imflow_interface_info", exporter="127.0.0.1", if_index="1", if_name="Gi0/0/0",
                     if_alias="WAN: ISP uplink") == 1
        assert value(text, "imflow_interface_speed_bytes", if_name="Gi0/0/0") == 1e9 / 8
        assert value(text, "imflow_interface_speed_bytes", if_name="Te0/1/0") == 1e10 / 8
        assert value(text, "imflow_interface_bytes_total", if_name="Gi0/0/0", direction="in") == 8123456789012
        assert value(text, "imflow_interface_bytes_total", if_name="Gi0/0/0", direction="out") == 1234567890123
        assert value(text, "imflow_snmp_errors_total", exporter="127.0.0.1", reason="timeout") == 0
    finally:
        assert d.stop() == 0, d.text()
    assert top_interfaces(tmp_path / "imflow.db") == expected("Gi0/0/0", "Gi0/0/1")


def test_flow_bytes_per_interface_and_category_in_metrics(tmp_path, snmpsim):
    d, mport = start(tmp_path, snmpsim, "edge-router")
    try:
        wait_for(mport, "imflow_snmp_up", 1.0, exporter="127.0.0.1")
        send(d.port)
        time.sleep(0.5)
        d.proc.send_signal(__import__("signal").SIGHUP)  # a reload flushes: the metrics see the bins
        deadline = time.monotonic() + 15
        want = expected("Gi0/0/0", "Gi0/0/1")
        while time.monotonic() < deadline:
            text = scrape(mport)
            got = {k: value(text, "imflow_interface_service_bytes_total", exporter="127.0.0.1", if_name=k[0],
                            direction=k[1], category=k[2]) for k in want}
            if got == want:
                break
            time.sleep(0.3)
        assert got == want
    finally:
        assert d.stop() == 0


def test_wrong_community_costs_snmp_not_flows(tmp_path, snmpsim):
    d, mport = start(tmp_path, snmpsim, "no-such-community")
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            text = scrape(mport)
            errors = value(text, "imflow_snmp_errors_total", exporter="127.0.0.1", reason="timeout")
            if errors:
                break
            time.sleep(0.3)
        assert errors and errors >= 1
        assert value(text, "imflow_snmp_up", exporter="127.0.0.1") == 0
        send(d.port)
    finally:
        assert d.stop() == 0
    assert "no-such-community" not in d.text()  # secrets never in logs
    # flows are all there; interfaces are named by their index
    assert top_interfaces(tmp_path / "imflow.db") == expected("1", "2")
    assert re.search(r"flows 8 ", d.stopped_line())
