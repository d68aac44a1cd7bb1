"""Fixtures: the fixed test catalogue, the shipped one, and throwaway network namespaces for
the tests that run the real nft and iptables tools."""

from __future__ import annotations

import os
import shutil
import subprocess
from itertools import count

import pytest

from collector.classify.catalogue import load_catalogue
from tests.policy.common import fixed_catalogue

_names = count()


@pytest.fixture(scope="session")
def catalogue():
    return fixed_catalogue()


@pytest.fixture(scope="session")
def shipped():
    return load_catalogue()


@pytest.fixture
def netns():
    """Factory of network namespaces, deleted after the test; skips when none can be made."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 `ip` not installed")
    made: list[str] = []

    def make() -> str:
        name = f"imflow-test-{os.getpid()}-{next(_names)}"
        done = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True,
                              check=False)
        if done.returncode:
            pytest.skip("cannot create a network namespace (needs root or CAP_SYS_ADMIN): "
                        + done.stderr.strip())
        made.append(name)
        return name

    yield make
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
