"""Polling a real net-snmp agent, checked against net-snmp's own command-line tools."""

from __future__ import annotations

import asyncio
import time

from collector.snmp import Poller, parse_targets
from tests.snmp.peers import free_udp_port, run, snmp_cli

IF_DESCR = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_SPEED = (1, 3, 6, 1, 2, 1, 2, 2, 1, 5)
IF_OPER = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
IF_NAME = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)
IF_HC_IN = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6)
IF_HC_OUT = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10)
IF_HIGH_SPEED = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15)


def v2c(agent, community, **extra):
    table = {"exporter": "127.0.0.1", "address": f"127.0.0.1:{agent.port}", "community": community}
    return {**table, **extra}


def v3(agent, user, **extra):
    table = {"exporter": "127.0.0.1", "address": f"127.0.0.1:{agent.port}", "version": "3", "user": user}
    return {**table, **extra}


def one(table, **section):
    return parse_targets({"timeout": 0.5, "retries": 1, **section, "targets": [table]})[0]


def poll(target, clock=time.time):
    async def go():
        poller = Poller([target], clock=clock)
        try:
            return await poller.poll_once(target)
        finally:
            await poller.stop()
    return run(go())


def column(values, prefix):
    return {oid[-1]: v for oid, v in values.items() if oid[:-1] == prefix}


def walk(agent, community, base):
    return snmp_cli(agent.workdir, "snmpbulkwalk", ["-v2c", "-c", community, f"127.0.0.1:{agent.port}",
                                                    "." + ".".join(map(str, base))])


def test_v2c_system_and_interfaces_match_net_snmp_tools(snmpd, secrets):
    target = one(v2c(snmpd, secrets.community))
    before = walk(snmpd, secrets.community, (1, 3, 6, 1, 2, 1, 31, 1, 1, 1))
    state = poll(target)
    after = walk(snmpd, secrets.community, (1, 3, 6, 1, 2, 1, 31, 1, 1, 1))
    table = walk(snmpd, secrets.community, (1, 3, 6, 1, 2, 1, 2, 2, 1))
    system = snmp_cli(snmpd.workdir, "snmpget", ["-v2c", "-c", secrets.community, f"127.0.0.1:{snmpd.port}",
                                                 ".1.3.6.1.2.1.1.5.0", ".1.3.6.1.2.1.1.1.0"])

    assert state.up and not state.errors
    assert state.sys_name == "imflow-snmpd-test" == system[(1, 3, 6, 1, 2, 1, 1, 5, 0)]
    assert state.sys_descr == "imflow test agent (net-snmp)" == system[(1, 3, 6, 1, 2, 1, 1, 1, 0)]
    assert state.uptime > 0 and state.counters_64

    names = column(after, IF_NAME)
    assert {i: f.name for i, f in state.interfaces.items()} == names
    lo = next(f for f in state.interfaces.values() if f.name == "lo")
    assert lo.descr == column(table, IF_DESCR)[lo.index]
    assert lo.oper_up and column(table, IF_OPER)[lo.index] == "1"
    assert lo.speed_bits == int(column(table, IF_SPEED)[lo.index]) == int(column(after, IF_HIGH_SPEED)[lo.index]) * 10**6
    assert lo.counter_bits == 64
    # the loopback counters only grow (our own SNMP traffic runs over lo): ours lie between
    # two independent reads taken before and after our poll
    for ours, col in ((lo.in_octets, IF_HC_IN), (lo.out_octets, IF_HC_OUT)):
        assert int(column(before, col)[lo.index]) <= ours <= int(column(after, col)[lo.index])
    assert lo.in_octets > 0


def test_v3_authpriv_sha_aes(snmpd, secrets):
    target = one(v3(snmpd, "imflow", auth_protocol="SHA", auth_key=secrets.auth_key,
                    priv_protocol="AES", priv_key=secrets.priv_key))
    assert target.security_level == "authPriv"
    state = poll(target)
    assert state.up and not state.errors, state.last_error
    assert state.sys_name == "imflow-snmpd-test"
    assert any(f.name == "lo" for f in state.interfaces.values())


def test_v3_sha512_aes256_authnopriv_and_noauth(snmpd, secrets):
    # net-snmp's AES-256 extends the key as draft-blumenthal does: our "aes256"
    strong = one(v3(snmpd, "strong", auth_protocol="SHA-512", auth_key=secrets.auth_key2,
                    priv_protocol="AES-256", priv_key=secrets.priv_key2))
    signonly = one(v3(snmpd, "signonly", auth_protocol="sha256", auth_key=secrets.auth_key))
    plain = one(v3(snmpd, "plain"))
    for target, level in ((strong, "authPriv"), (signonly, "authNoPriv"), (plain, "noAuthNoPriv")):
        assert target.security_level == level
        state = poll(target)
        assert state.up, (level, state.last_error)
        assert state.sys_name == "imflow-snmpd-test"


def test_ipv6_loopback(snmpd, secrets):
    target = one({"exporter": "::1", "address": f"[::1]:{snmpd.port}", "community": secrets.community})
    assert (target.host, target.port) == ("::1", snmpd.port)
    state = poll(target)
    assert state.up, state.last_error
    assert any(f.name == "lo" for f in state.interfaces.values())


def test_wrong_community_is_a_timeout(snmpd, secrets):
    target = one(v2c(snmpd, secrets.community + "-wrong"), timeout=0.3, retries=1)
    state = poll(target)
    assert state.last_duration < 3  # 2 tries of 0.2-0.3 s
    assert not state.up
    assert state.errors == {"timeout": 1}
    assert "no answer" in state.last_error and "community" in state.last_error


def test_wrong_v3_auth_key_and_unknown_user_are_auth_errors(snmpd, secrets):
    wrong_key = one(v3(snmpd, "imflow", auth_protocol="SHA", auth_key=secrets.auth_key + "x",
                       priv_protocol="AES", priv_key=secrets.priv_key))
    unknown = one(v3(snmpd, "nobody", auth_protocol="SHA", auth_key=secrets.auth_key,
                     priv_protocol="AES", priv_key=secrets.priv_key))
    wrong_proto = one(v3(snmpd, "imflow", auth_protocol="MD5", auth_key=secrets.auth_key,
                         priv_protocol="AES", priv_key=secrets.priv_key))
    # asking a priv-only user without privacy: the agent answers authorizationError
    too_weak = one(v3(snmpd, "imflow", auth_protocol="SHA", auth_key=secrets.auth_key))
    for target in (wrong_key, unknown, wrong_proto, too_weak):
        state = poll(target)
        assert not state.up
        assert state.errors == {"auth": 1}, (target.user, state.last_error)


def test_wrong_v3_priv_key_gets_no_answer_from_net_snmp(snmpd, secrets):
    # net-snmp decrypts with the wrong key, cannot parse the result and drops the request
    target = one(v3(snmpd, "imflow", auth_protocol="SHA", auth_key=secrets.auth_key,
                    priv_protocol="AES", priv_key=secrets.priv_key + "x"), timeout=0.3, retries=0)
    state = poll(target)
    assert state.errors == {"timeout": 1}


def test_failure_keeps_last_known_interfaces_and_counts(snmpd, secrets):
    good = one(v2c(snmpd, secrets.community))
    bad = one(v2c(snmpd, secrets.community + "-wrong"), timeout=0.2, retries=0)

    async def go():
        poller = Poller([good])
        try:
            first = await poller.poll_once(good)
            second = await poller.poll_once(bad)
            third = await poller.poll_once(bad)
            return first, second, third, poller
        finally:
            await poller.stop()

    first, second, third, poller = run(go())
    assert first.up and not second.up and not third.up
    assert third.errors == {"timeout": 2} and third.polls == 3
    assert third.interfaces.keys() == first.interfaces.keys()  # negative caching: names stay
    assert third.sys_name == first.sys_name and third.last_success == first.last_success
    lo = next(i for i, f in first.interfaces.items() if f.name == "lo")
    assert poller.interface_name("127.0.0.1", lo) == "lo"
    assert poller.interface_name("::ffff:127.0.0.1", lo) == "lo"
    assert poller.interface_name("127.0.0.1", 999_999) is None
    assert poller.interface_name("192.0.2.99", lo) is None
    assert poller.state()["127.0.0.1"] is third


def test_start_polls_at_once_and_stop_ends_every_task(snmpd, secrets):
    target = one(v2c(snmpd, secrets.community, interval=3600))

    async def go():
        poller = Poller([target])
        assert poller.state()["127.0.0.1"].up is False  # known before the first poll
        await poller.start()
        for _ in range(200):
            if poller.state()["127.0.0.1"].polls:
                break
            await asyncio.sleep(0.05)
        state = poller.state()["127.0.0.1"]
        await poller.stop()
        leftover = [t for t in asyncio.all_tasks()
                    if t.get_name().startswith("snmp ") or "pysnmp" in repr(t.get_coro())]
        return state, leftover

    state, leftover = run(go())
    assert state.up and state.polls == 1
    assert leftover == []


def test_backoff_grows_to_its_cap_and_resets_after_success(snmpd, secrets):
    port = free_udp_port()
    target = one({"exporter": "127.0.0.1", "address": f"127.0.0.1:{port}", "community": "public",
                  "interval": 10}, timeout=0.1, retries=0, backoff_max=35)
    good = one(v2c(snmpd, secrets.community, interval=10))

    async def go():
        poller = Poller([target])
        delays = [poller.next_delay(target)]
        for _ in range(4):
            await poller.poll_once(target)
            delays.append(poller.next_delay(target))
        await poller.poll_once(good)
        delays.append(poller.next_delay(good))
        await poller.stop()
        return delays

    assert run(go()) == [10, 10, 20, 35, 35, 10]

