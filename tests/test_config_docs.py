"""docs/configuration.md is generated from the schema: a key added without docs fails here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from collector import config

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_the_docs_are_the_schema():
    assert DOC.read_text() == config.markdown(), \
        "docs/configuration.md is stale: python3 -m collector.config --markdown docs/configuration.md"


def test_the_generator_writes_what_the_test_compares(tmp_path):
    out = tmp_path / "configuration.md"
    subprocess.run([sys.executable, "-m", "collector.config", "--markdown", str(out)], check=True, timeout=60)
    printed = subprocess.run([sys.executable, "-m", "collector.config", "--markdown"], check=True, timeout=60,
                             capture_output=True, text=True).stdout
    assert out.read_text() == printed == config.markdown()


def test_every_key_has_a_row():
    text = DOC.read_text()
    for section, keys in config.SCHEMA.items():
        assert f"## [{section}]" in text
        for name, spec in keys.items():
            assert f"| `{name}` | {spec.check.kind} |" in text
            for sub in getattr(spec.check, "keys", {}):
                assert f"| `{sub}` |" in text
