"""Catalogue text is checked at load (issue 16, row 10): a newline in a service name once
injected a whole nftables table into `imflow policy render`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from collector.classify.catalogue import CatalogueError, load_catalogue

INJECTED = 'evil\n}\ntable inet pwned { chain x { type filter hook input priority 0; accept; } }\n#'


def _imflow(*args, cwd):
    return subprocess.run([sys.executable, "-m", "collector", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=60)


def _toml_string(text: str) -> str:
    """A TOML basic string holding `text`, control characters as escapes (TOML allows them so)."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(f"\\u{ord(c):04X}" if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in out) + '"'


@pytest.mark.parametrize("key, value", [
    ("name", INJECTED), ("notes", "line one\rline two"), ("name", "bell\x07"), ("name", "esc\x1b]0;title\x07"),
    ("name", "x" * 101), ("app_names", ["ok", "two\nlines"]), ("ports", ["tcp/4000\n"]),
])
def test_control_characters_and_overlong_text_are_refused_in_the_config(tmp_path, key, value):
    table = {"id": "mine", "name": "Mine", "category": "im", "ports": ["tcp/4000"], key: value}
    lines = [f"{k} = " + (f"[{', '.join(_toml_string(v) for v in x)}]" if isinstance(x, list) else _toml_string(x))
             for k, x in table.items()]
    cfg = tmp_path / "imflow.toml"
    cfg.write_text("[[classify.service]]\n" + "\n".join(lines) + "\n")
    r = _imflow("check-config", str(cfg), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and f"classify.service[0].{key}" in err, err
    assert "pwned" not in err  # the value itself is not echoed into the terminal


def test_a_catalogue_file_with_a_newline_in_a_name_is_refused(tmp_path):
    cat = tmp_path / "services.toml"
    cat.write_text(f'snapshot = "2026-11-01"\n[[service]]\nid = "x"\nname = {_toml_string(INJECTED)}\n'
                   'category = "p2p"\nports = ["tcp/6881"]\n')
    with pytest.raises(CatalogueError, match=r"service\[0\]\.name: control character U\+000A"):
        load_catalogue(str(cat))


def test_policy_render_cannot_be_injected(tmp_path):
    cfg = tmp_path / "imflow.toml"
    cfg.write_text(f'[[classify.service]]\nid = "mine"\nname = {_toml_string(INJECTED)}\ncategory = "p2p"\n'
                   'ports = ["tcp/4000"]\n[policy]\ndefault = "block"\n')
    r = _imflow("policy", "render", "--config", str(cfg), "--format", "nftables", cwd=tmp_path)
    assert r.returncode == 2
    assert "table inet pwned" not in r.stdout
