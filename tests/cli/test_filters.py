"""Item 3 of issue 17: a filter naming a service or category that does not exist is a usage
error (exit 2) that suggests the close name, not an empty answer."""

from __future__ import annotations

import pytest

from tests.cli.conftest import imflow


@pytest.mark.parametrize("command", [
    ["top", "--service", "bitorrent"],
    ["top", "--service", "msn", "--service", "bitorrent"],
    ["violations", "--service", "bitorrent"],
])
def test_unknown_service_suggests(site, command):
    p = imflow(*command, "--config", str(site["config"]), "--since", "all", cwd=site["cwd"])
    assert p.returncode == 2, p.stdout
    assert "bitorrent" in p.stderr and "did you mean bittorrent" in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("command", [["top"], ["violations"], ["services"]])
def test_unknown_category_names_the_known_ones(site, command):
    p = imflow(*command, "--category", "chat", "--config", str(site["config"]),
               *(["--since", "all"] if command[0] != "services" else []), cwd=site["cwd"])
    assert p.returncode == 2, p.stdout
    assert "'chat'" in p.stderr and "im, p2p, voip, collab, other" in p.stderr
    p = imflow(*command, "--category", "p2pp", "--config", str(site["config"]),
               *(["--since", "all"] if command[0] != "services" else []), cwd=site["cwd"])
    assert p.returncode == 2 and "did you mean p2p" in p.stderr


def test_known_but_unused_service_is_an_empty_answer(site):
    p = imflow("top", "--service", "zoom", "--config", str(site["config"]), "--since", "all", "--format", "json",
               cwd=site["cwd"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
