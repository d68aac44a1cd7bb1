"""Agents shared by the SNMP tests: one snmpd and one snmpsim per test session."""

from __future__ import annotations

import secrets as _secrets
from types import SimpleNamespace

import pytest

from tests.snmp import peers


@pytest.fixture(scope="session")
def secrets():
    """Secrets distinctive enough to grep for in every message."""
    t = _secrets.token_hex
    return SimpleNamespace(community=f"comm-{t(6)}", auth_key=f"auth-{t(8)}", priv_key=f"priv-{t(8)}",
                           auth_key2=f"auth2-{t(8)}", priv_key2=f"priv2-{t(8)}",
                           sim_auth=f"simauth-{t(6)}", sim_priv=f"simpriv-{t(6)}")


@pytest.fixture(scope="session")
def snmpd(tmp_path_factory, secrets):
    if not peers.snmpd_available():
        pytest.skip("snmpd / snmp not installed (apt-get install snmpd snmp)")
    users = [
        peers.V3User("imflow", "SHA", secrets.auth_key, "AES", secrets.priv_key),
        peers.V3User("strong", "SHA-512", secrets.auth_key2, "AES-256", secrets.priv_key2),
        peers.V3User("signonly", "SHA-256", secrets.auth_key),
        peers.V3User("plain"),
    ]
    agent = peers.start_snmpd(tmp_path_factory.mktemp("snmpd"), secrets.community, users,
                              sys_name="imflow-snmpd-test", sys_descr="imflow test agent (net-snmp)")
    agent.extra["users"] = {u.name: u for u in users}
    yield agent
    agent.stop()


@pytest.fixture(scope="session")
def snmpsim(tmp_path_factory, secrets):
    if not peers.snmpsim_available():
        pytest.skip("snmpsim not installed (pip install snmpsim pysmi)")
    recordings = {name: peers.FIXTURES / f"{name}.snmprec" for name in
                  ("edge-router", "legacy-switch", "legacy-switch-wrapped", "legacy-switch-rebooted")}
    users = [
        peers.V3User("simuser", "SHA256", secrets.sim_auth, "AES", secrets.sim_priv),
        peers.V3User("desuser", "SHA", secrets.sim_auth, "DES", secrets.sim_priv),
    ]
    agent = peers.start_snmpsim(tmp_path_factory.mktemp("snmpsim"), recordings, users)
    yield agent
    agent.stop()


def pytest_configure(config):
    # pysnmp 7 imports pysmi's old camelCase names when pysmi is installed (snmpsim needs it)
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pysnmp.smi.compiler")
