"""The man page (argparse-manpage) and the bash and zsh completions (shtab), generated from
`build_parser()` so that they name every command and flag the parser has.

    python3 -m collector.cli.docs          # rewrite docs/imflow.1 and completions/
    python3 -m collector.cli.docs --check  # exit 1 naming the files that are out of date

A development tool: the generated files are committed and shipped, and the two generators are
in the `docs` and `test` extras (`pip install -e '.[docs]'`), not among imflow's dependencies.
tests/test_cli_docs.py regenerates and compares. The man page keeps its date while its text
stays the same, so regenerating an unchanged parser changes nothing."""

from __future__ import annotations

import argparse
import datetime
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from collector import __version__
from collector.cli.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
MAN = "docs/imflow.1"
BASH = "completions/imflow.bash"
ZSH = "completions/_imflow"

SUMMARY = "NetFlow v5/v9, IPFIX and sFlow collector: who uses instant messaging, P2P and VoIP"
ENVIRONMENT = (r"""
.TP
.B IMFLOW_KERNELS=0
Turn off the compiled kernels: the decoder, classifier and aggregator do the same work in NumPy
(to compare, or to rule the kernels out). \fBimflow \-\-version\fR says which are in use.""").strip()
SEE_ALSO = "README.md and docs/ in the source tree: configuration, exporters, operations, metrics."
# arguments that name a file or a path complete as files
FILES = {"bash": "_shtab_compgen_files", "zsh": "_files"}


def stamp() -> str:
    """What made the files: a test compares them exactly only when made by the same versions
    (argparse's usage and help wrapping moves between Python releases)."""
    return (f"generated from collector/cli/parser.py by python3 -m collector.cli.docs "
            f"(Python {sys.version_info.major}.{sys.version_info.minor}, "
            f"argparse-manpage {version('argparse-manpage')}, shtab {version('shtab')}): do not edit")


def parser() -> argparse.ArgumentParser:
    p = build_parser()
    for action in _actions(p):
        if action.metavar in ("FILE", "PATH") or (not action.option_strings and action.dest in ("capture", "file")):
            action.complete = FILES  # read by shtab
    return p


def _parsers(p: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def _actions(p: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for each in _parsers(p):
        yield from each._actions


def option_strings() -> set[str]:
    """Every flag and command name, for the test that each generated file names them all."""
    out = set()
    for action in _actions(build_parser()):
        out.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            out.update(action.choices)
    return out


@contextmanager
def _plain_terminal() -> Iterator[None]:
    """argparse wraps usage lines at $COLUMNS and colours help on some terminals: fix both."""
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "PYTHON_COLORS", "NO_COLOR", "FORCE_COLOR")}
    os.environ.update(COLUMNS="80", PYTHON_COLORS="0", NO_COLOR="1")
    os.environ.pop("FORCE_COLOR", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _roff(text: str) -> str:
    return text.replace("\\", "\\\\").replace("-", "\\-")


def man(date: str) -> str:
    from argparse_manpage.manpage import Manpage

    with _plain_terminal():
        p = parser()
        page = Manpage(p, _data={"date": date, "project_name": "imflow", "version": __version__,
                                 "manual_title": "User Commands", "description": SUMMARY})
        examples = [line.strip() for sub in _parsers(p) for line in (sub.epilog or "").splitlines()
                    if line.startswith("  imflow ")]
        page.add_section("examples", "=", ".nf\n" + "\n".join(_roff(x) for x in examples) + "\n.fi")
        page.add_section("environment", "=", ENVIRONMENT)
        page.add_section("see also", "=", _roff(SEE_ALSO))
        return f'.\\" {stamp()}\n{page}'


def completion(shell: str) -> str:
    import shtab

    with _plain_terminal():
        text = shtab.complete(parser(), shell)
    first, _, rest = text.partition("\n")  # zsh reads `#compdef imflow` on the first line
    return f"{first}\n# {stamp()}\n{rest.rstrip()}\n"


def _date_of(text: str) -> str | None:
    m = re.search(r'^\.TH \S+ "\d+" "([^"]*)"', text, re.M)
    return m.group(1).replace("\\-", "-") if m else None


def generate(root: Path = ROOT) -> dict[str, str]:
    """{path: the text it should hold}; the man page dated as the committed one while the rest
    of it is unchanged, else today."""
    old = root / MAN
    date = _date_of(old.read_text()) if old.exists() else None
    page = man(date) if date else None
    if page is None or page != old.read_text():
        page = man(datetime.date.today().isoformat())
    return {MAN: page, BASH: completion("bash"), ZSH: completion("zsh")}


def stale(texts: dict[str, str], root: Path = ROOT) -> list[str]:
    """The files of `texts` missing or different under `root`."""
    return [path for path, text in texts.items()
            if not (root / path).exists() or (root / path).read_text() != text]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m collector.cli.docs", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    args = ap.parse_args(argv)
    texts = generate()
    for path in stale(texts):
        if args.check:
            print(f"{path}: out of date; run python3 -m collector.cli.docs", file=sys.stderr)
        else:
            (ROOT / path).parent.mkdir(parents=True, exist_ok=True)
            (ROOT / path).write_text(texts[path])
            print(f"wrote {path}")
    return 1 if args.check and stale(texts) else 0


if __name__ == "__main__":
    raise SystemExit(main())
