"""Agents that do not answer, or answer with an error: each failure is counted by reason."""

from __future__ import annotations


from collector.snmp import Poller, parse_targets
from tests.snmp.peers import GEN_ERR, TOO_BIG, free_udp_port, run, start_error_agent


def one(table, **section):
    return parse_targets({"timeout": 0.5, "retries": 1, **section, "targets": [table]})[0]


def poll(target):
    async def go():
        poller = Poller([target])
        try:
            return await poller.poll_once(target)
        finally:
            await poller.stop()
    return run(go())


def test_unreachable_port_is_a_timeout():
    port = free_udp_port()  # nobody listens there: ICMP port unreachable, then silence
    target = one({"exporter": "127.0.0.1", "address": f"127.0.0.1:{port}", "community": "public"},
                 timeout=0.2, retries=1)
    state = poll(target)
    assert state.last_duration < 3  # 2 tries of 0.2-0.3 s
    assert not state.up and state.errors == {"timeout": 1}


def test_agent_errors_are_other_and_toobig_shrinks_the_request_until_one_row():
    async def go(status):
        transport, agent, port = await start_error_agent(status)
        target = one({"exporter": "127.0.0.1", "address": f"127.0.0.1:{port}", "community": "public"})
        poller = Poller([target])
        try:
            return await poller.poll_once(target), agent.requests
        finally:
            await poller.stop()
            transport.close()

    state, requests = run(go(GEN_ERR))
    assert state.errors == {"other": 1} and "genErr" in state.last_error and requests == 1
    state, requests = run(go(TOO_BIG))
    assert state.errors == {"other": 1} and "tooBig" in state.last_error
    assert requests == 3  # 5 rows, then 2, then 1 per column
