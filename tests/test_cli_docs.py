"""The man page and the shell completions say what the argument parser says: regenerated here and
compared with the committed files (collector/cli/docs.py), so that a flag added without
`python3 -m collector.cli.docs` fails; and each of them loads in its program."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess

import pytest

from collector.cli import docs

FILES = (docs.MAN, docs.BASH, docs.ZSH)


def read(path: str) -> str:
    return (docs.ROOT / path).read_text()


def made_here() -> bool:
    """Whether the committed files were made by this Python and these generators (argparse
    wraps usage lines a little differently from one Python release to the next)."""
    return all(docs.stamp() in read(path) for path in FILES)


def test_the_committed_files_are_regenerated_unchanged():
    if not made_here():
        stamp = re.search(r"\(Python .*?\)", read(docs.MAN))
        pytest.skip(f"made by {stamp and stamp.group(0)}, here {docs.stamp()}; the next test still checks the flags")
    assert docs.stale(docs.generate()) == [], "run python3 -m collector.cli.docs"
    assert docs.main(["--check"]) == 0


def words(text: str) -> set[str]:
    """Flags and command names as a shell or man reader sees them (roff escapes taken out)."""
    text = re.sub(r"\\f[BIRP]|\\[,/]", "", text).replace("\\-", "-")
    return set(re.findall(r"(?<![\w-])-{0,2}[a-z][\w-]*", text))


@pytest.mark.parametrize("path", FILES)
def test_every_command_and_flag_is_in_each_file(path):
    missing = docs.option_strings() - words(read(path))
    assert not missing, f"{path} lacks {sorted(missing)}: run python3 -m collector.cli.docs"


def test_a_new_flag_makes_every_file_stale(monkeypatch):
    def build_parser():
        p = real()
        sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices["run"].add_argument("--new-flag", help="not in the committed files")
        return p

    real = docs.build_parser
    monkeypatch.setattr(docs, "build_parser", build_parser)
    assert docs.stale(docs.generate()) == list(FILES)
    assert "--new-flag" in docs.option_strings()


def test_the_man_page_keeps_its_date_while_its_text_stays(tmp_path):
    today = docs.generate(tmp_path)[docs.MAN]  # no page yet: dated today
    (tmp_path / "docs").mkdir()
    (tmp_path / docs.MAN).write_text(today.replace(docs._date_of(today).replace("-", "\\-"), "2000\\-01\\-02"))
    assert '"2000\\-01\\-02"' in docs.generate(tmp_path)[docs.MAN]
    (tmp_path / docs.MAN).write_text(read(docs.MAN).replace("IMFLOW_KERNELS", "X", 1))  # text changed
    assert docs.generate(tmp_path)[docs.MAN] == today


def test_every_command_and_flag_is_explained():
    """What the man page shows under each command: its description and each flag's help."""
    parsers = list(docs._parsers(docs.build_parser()))
    assert [p.prog for p in parsers if not p.description] == []
    unexplained = [(p.prog, a.option_strings or a.dest) for p in parsers for a in p._actions
                   if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert unexplained == []


@pytest.mark.skipif(shutil.which("groff") is None, reason="no groff here")
def test_the_man_page_renders_without_warnings():
    out = subprocess.run(["groff", "-man", "-Tascii", "-ww", str(docs.ROOT / docs.MAN)],
                         capture_output=True, text=True, check=True)
    assert out.stderr == ""
    text = re.sub(r".\x08", "", out.stdout)  # overstrike bold
    assert "imflow - NetFlow v5/v9, IPFIX and sFlow collector" in re.sub(r"\s+", " ", text)  # justified
    for section in ("SYNOPSIS", "COMMANDS", "COMMAND 'imflow run'", "EXAMPLES", "ENVIRONMENT"):
        assert section in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_bash_completion_loads_and_completes():
    script = f"""
source {docs.ROOT / docs.BASH}
complete -p imflow
complete_at() {{ COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _shtab_imflow; echo "${{COMPREPLY[*]}}"; }}
complete_at imflow to
complete_at imflow top --format ''
complete_at imflow policy render --for
"""
    out = subprocess.run(["bash", "--norc", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["complete -o bashdefault -F _shtab_imflow imflow", "top", "table json csv",
                                       "--format"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="no zsh here")
def test_zsh_completion_parses_and_registers():
    subprocess.run(["zsh", "-n", str(docs.ROOT / docs.ZSH)], check=True)
    script = f"fpath=({docs.ROOT / 'completions'} $fpath); autoload -Uz compinit; compinit -u -D; print $_comps[imflow]"
    out = subprocess.run(["zsh", "-f", "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "_imflow"
