"""Secrets never appear in logs, states, reprs or error messages, whatever goes wrong."""

from __future__ import annotations

import logging

import pytest

from collector.config import ConfigError
from collector.snmp import Poller, parse_targets
from tests.snmp.peers import free_udp_port, run, start_error_agent


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets if s in text]


def test_no_error_path_shows_a_secret(snmpd, snmpsim, secrets, caplog):
    every = [secrets.community, secrets.auth_key, secrets.priv_key, secrets.auth_key2,
             secrets.priv_key2, secrets.sim_auth, secrets.sim_priv]
    wrong = {name: value + "-WRONG" for name, value in vars(secrets).items()}
    every += list(wrong.values())
    env = {"IMFLOW_SNMP_COMMUNITY": secrets.community, "IMFLOW_SNMP_AUTH": secrets.auth_key,
           "IMFLOW_SNMP_PRIV": secrets.priv_key, "SHORT": secrets.auth_key[:6]}

    # configuration errors that involve a secret's value
    bad_configs = [
        {"exporter": "192.0.2.1", "version": "3", "user": "u", "auth_protocol": "sha",
         "auth_key": secrets.auth_key[:6]},
        {"exporter": "192.0.2.1", "version": "3", "user": "u", "auth_protocol": "sha", "auth_key_env": "SHORT"},
        {"exporter": "192.0.2.1", "version": "3", "user": "u", "auth_protocol": "sha",
         "auth_key": secrets.auth_key, "priv_protocol": "rot13", "priv_key": secrets.priv_key},
        {"exporter": "192.0.2.1", "community": secrets.community, "community_env": "IMFLOW_SNMP_COMMUNITY"},
        {"exporter": "192.0.2.1", "community": secrets.community, "user": secrets.auth_key},
        {"exporter": "192.0.2.1", "community": [secrets.community]},
        {"exporter": "192.0.2.1", "version": "3", "user": "u", "auth_protocol": "sha",
         "auth_key": secrets.auth_key + "\n"},
        {"exporter": "192.0.2.1", "address": "127.0.0.1:0", "community": secrets.community},
    ]
    messages = []
    for table in bad_configs:
        with pytest.raises(ConfigError) as info:
            parse_targets({"targets": [table]}, env=env)
        messages.append(str(info.value))
        messages.append(repr(info.value))

    port = free_udp_port()

    async def polls():
        generr, _, generr_port = await start_error_agent()
        base = {"timeout": 0.3, "retries": 0}
        tables = [
            # timeout: wrong community, and nobody listening
            {"exporter": "10.0.0.1", "address": f"127.0.0.1:{snmpd.port}", "community": wrong["community"]},
            {"exporter": "10.0.0.2", "address": f"127.0.0.1:{port}", "community_env": "IMFLOW_SNMP_COMMUNITY"},
            # auth: wrong authentication key, unknown user; timeout: wrong privacy key
            {"exporter": "10.0.0.3", "address": f"127.0.0.1:{snmpd.port}", "version": "3", "user": "imflow",
             "auth_protocol": "sha", "auth_key": wrong["auth_key"], "priv_protocol": "aes",
             "priv_key_env": "IMFLOW_SNMP_PRIV"},
            {"exporter": "10.0.0.4", "address": f"127.0.0.1:{snmpd.port}", "version": "3", "user": "nobody",
             "auth_protocol": "sha", "auth_key_env": "IMFLOW_SNMP_AUTH", "priv_protocol": "aes",
             "priv_key": secrets.priv_key},
            {"exporter": "10.0.0.5", "address": f"127.0.0.1:{snmpd.port}", "version": "3", "user": "imflow",
             "auth_protocol": "sha", "auth_key": secrets.auth_key, "priv_protocol": "aes",
             "priv_key": wrong["priv_key"]},
            # decryption: snmpsim's DES user asked with AES
            {"exporter": "10.0.0.6", "address": f"127.0.0.1:{snmpsim.port}", "version": "3", "user": "desuser",
             "auth_protocol": "sha", "auth_key": secrets.sim_auth, "priv_protocol": "aes",
             "priv_key": secrets.sim_priv},
            # other: an agent that answers genErr
            {"exporter": "10.0.0.7", "address": f"127.0.0.1:{generr_port}", "community": secrets.community},
            # and a success, whose state must not carry the secrets either
            {"exporter": "10.0.0.8", "address": f"127.0.0.1:{snmpd.port}", "community": secrets.community},
        ]
        targets = parse_targets({**base, "targets": tables}, env=env)
        poller = Poller(targets)
        try:
            for t in targets:
                await poller.poll_once(t)
            return targets, poller.state()
        finally:
            await poller.stop()
            generr.close()

    with caplog.at_level(logging.DEBUG):
        targets, states = run(polls())

    reasons = {e: dict(s.errors) for e, s in states.items()}
    assert reasons == {
        "10.0.0.1": {"timeout": 1}, "10.0.0.2": {"timeout": 1}, "10.0.0.3": {"auth": 1},
        "10.0.0.4": {"auth": 1}, "10.0.0.5": {"timeout": 1}, "10.0.0.6": {"decryption": 1},
        "10.0.0.7": {"other": 1}, "10.0.0.8": {},
    }
    assert "genErr" in states["10.0.0.7"].last_error
    texts = messages + [caplog.text] + [r.getMessage() for r in caplog.records]
    texts += [repr(s) for s in states.values()] + [str(s.last_error) for s in states.values()]
    texts += [repr(t) for t in targets] + [str(t) for t in targets]
    assert caplog.records, "the failures were logged"
    for text in texts:
        assert not leaks(text, every), text
