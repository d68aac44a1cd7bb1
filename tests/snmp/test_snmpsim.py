"""Polling recorded devices served by snmpsim: values arrive exactly as recorded."""

from __future__ import annotations

import dataclasses

from collector.snmp import Poller, parse_targets
from tests.snmp.peers import FIXTURES, read_snmprec, run

IF = (1, 3, 6, 1, 2, 1, 2, 2, 1)
IFX = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
EXPORTER = "192.0.2.1"


def target(agent, community, **extra):
    table = {"exporter": EXPORTER, "address": f"127.0.0.1:{agent.port}", "community": community, **extra}
    return parse_targets({"timeout": 1, "retries": 1, "targets": [table]})[0]


def poll_sequence(*targets):
    """Poll the targets in turn with one Poller (one exporter): the states after each."""
    async def go():
        poller = Poller([targets[0]])
        try:
            return [await poller.poll_once(t) for t in targets], poller
        finally:
            await poller.stop()
    return run(go())


def recorded(name):
    """What the recording says, read independently of the poller: {ifIndex: {column: value}}."""
    rec = read_snmprec(FIXTURES / f"{name}.snmprec")
    rows: dict[int, dict] = {}
    for oid, (_, value) in rec.items():
        for base, columns in ((IF, {2: "descr", 5: "speed", 8: "oper", 10: "in32", 16: "out32"}),
                              (IFX, {1: "name", 6: "in64", 10: "out64", 15: "high", 18: "alias"})):
            if oid[:len(base)] == base and oid[len(base)] in columns:
                rows.setdefault(oid[-1], {})[columns[oid[len(base)]]] = value
    return rows, rec


def test_edge_router_arrives_as_recorded(snmpsim):
    (state,), poller = poll_sequence(target(snmpsim, "edge-router"))
    rows, rec = recorded("edge-router")

    assert state.up and not state.errors, state.last_error
    assert state.sys_name == "edge-rtr-01.example.net"
    assert state.sys_descr == rec[(1, 3, 6, 1, 2, 1, 1, 1, 0)][1].decode()
    assert "\r\n" in state.sys_descr  # multi-line, recorded as hex
    assert state.uptime == 12_345_678.90
    assert state.counters_64
    assert sorted(state.interfaces) == sorted(rows) == [1, 2, 3, 4, 5, 6, 7, 12]
    for index, row in rows.items():
        got = state.interfaces[index]
        assert got.index == index
        assert got.name == row["name"].decode()
        assert got.descr == row["descr"].decode()
        assert got.alias == row["alias"].decode("utf-8")
        assert got.oper_up == (row["oper"] == 1)
        assert (got.in_octets, got.out_octets) == (row["in64"], row["out64"])  # not the 32-bit ones
        assert got.counter_bits == 64

    wan = state.interfaces[1]
    assert (wan.name, wan.alias, wan.speed_bits) == ("Gi0/0/0", "WAN: ISP uplink", 1_000_000_000)
    assert wan.in_octets == 8_123_456_789_012 > 2**32
    assert (state.interfaces[2].name, state.interfaces[2].alias) == ("Gi0/0/1", "LAN")
    assert state.interfaces[4].name == "Tu0"
    assert state.interfaces[12].alias == "Gäste-WLAN"
    assert not state.interfaces[3].oper_up
    speeds = {i: f.speed_bits for i, f in state.interfaces.items()}
    assert speeds == {1: 10**9, 2: 10**9, 3: 10**9,
                      4: 100_000,  # ifHighSpeed 0: ifSpeed
                      5: 8 * 10**9, 6: 10 * 10**9, 7: 10 * 10**9,  # ifSpeed saturated: ifHighSpeed
                      12: 10**9}
    assert poller.interface_name(EXPORTER, 1) == "Gi0/0/0"
    assert poller.interface_name(EXPORTER, 4) == "Tu0"
    assert poller.interface_name(EXPORTER, 8) is None


def test_edge_router_over_snmpv3_sha256_aes(snmpsim, secrets):
    # snmpsim serves the empty v3 context from self.snmprec (a copy of edge-router)
    t = parse_targets({"targets": [{
        "exporter": EXPORTER, "address": f"127.0.0.1:{snmpsim.port}", "version": "3", "user": "simuser",
        "auth_protocol": "SHA-256", "auth_key": secrets.sim_auth,
        "priv_protocol": "AES-128", "priv_key": secrets.sim_priv}], "timeout": 1})[0]
    (state,), _ = poll_sequence(t)
    assert state.up, state.last_error
    assert state.sys_name == "edge-rtr-01.example.net"
    assert state.interfaces[1].alias == "WAN: ISP uplink"


def test_agent_without_64bit_counters_falls_back_to_32bit(snmpsim):
    (state,), _ = poll_sequence(target(snmpsim, "legacy-switch"))
    rows, _ = recorded("legacy-switch")
    assert state.up
    assert not state.errors  # a fallback, not an error
    assert not state.counters_64
    assert sorted(state.interfaces) == [1, 2, 3]
    for index, row in rows.items():
        got = state.interfaces[index]
        assert "in64" not in row and "high" not in row
        assert got.counter_bits == 32
        assert (got.in_octets, got.out_octets) == (row["in32"], row["out32"])
        assert got.speed_bits == row["speed"]  # no ifHighSpeed: ifSpeed
        assert (got.name, got.alias) == (row["name"].decode(), row["alias"].decode())
    assert state.interfaces[1].alias == "to core" and state.interfaces[3].speed_bits == 10_000_000


def test_32bit_wrap_between_polls_then_agent_restart(snmpsim):
    first = target(snmpsim, "legacy-switch")
    wrapped = dataclasses.replace(first, community="legacy-switch-wrapped")
    rebooted = dataclasses.replace(first, community="legacy-switch-rebooted")
    (s1, s2, s3), _ = poll_sequence(first, wrapped, rebooted)

    assert all(s.up for s in (s1, s2, s3)), [s.last_error for s in (s1, s2, s3)]
    up1, up2 = s1.interfaces[1], s2.interfaces[1]
    assert (up1.in_octets, up1.out_octets) == (4_294_960_000, 123_456)
    # ifInOctets went 4294960000 -> 5000 while sysUpTime went 1000 s -> 1300 s: a wrap
    assert up2.in_octets == 4_294_960_000 + (2**32 - 4_294_960_000) + 5_000 == 2**32 + 5_000
    assert up2.out_octets == 223_456
    assert s2.interfaces[2].in_octets == s1.interfaces[2].in_octets  # unchanged, not a wrap
    assert s2.restarts == 0 and s2.uptime == 1300.0
    # then sysUpTime went back to 42 s and the counters to small values: a restart, not a wrap;
    # the totals start over from what the agent says, as a 64-bit counter's would
    assert s3.uptime == 42.0 and s3.restarts == 1
    assert (s3.interfaces[1].in_octets, s3.interfaces[1].out_octets) == (1_500, 900)
    assert s3.interfaces[2].in_octets == 12_345_678
    assert not s3.errors  # the rebooted recording ends at its last ifAlias: endOfMibView is fine


def test_undecryptable_request_is_a_decryption_error(snmpsim, secrets):
    # desuser encrypts with DES; an AES request cannot be decrypted and snmpsim reports
    # usmStatsDecryptionErrors
    t = parse_targets({"targets": [{
        "exporter": EXPORTER, "address": f"127.0.0.1:{snmpsim.port}", "version": "3", "user": "desuser",
        "auth_protocol": "SHA", "auth_key": secrets.sim_auth,
        "priv_protocol": "AES", "priv_key": secrets.sim_priv}], "timeout": 1, "retries": 0})[0]
    (state,), _ = poll_sequence(t)
    assert not state.up
    assert state.errors == {"decryption": 1}, state.last_error
    assert "decryption" in state.last_error.lower()


def test_des_user_with_des_works(snmpsim, secrets):
    t = parse_targets({"targets": [{
        "exporter": EXPORTER, "address": f"127.0.0.1:{snmpsim.port}", "version": "3", "user": "desuser",
        "auth_protocol": "SHA", "auth_key": secrets.sim_auth,
        "priv_protocol": "DES", "priv_key": secrets.sim_priv}], "timeout": 1})[0]
    (state,), _ = poll_sequence(t)
    assert state.up, state.last_error
