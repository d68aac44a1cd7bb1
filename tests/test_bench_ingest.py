"""Smoke test of bench/ingest: one short low-rate v9 trial against imflow only.

Checks the harness's own accounting (the sender's record count, imflow's stored count, the
kernel drop and sender error counters), never a timing or a rate.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from collector.auditlog import DEFAULT_CATEGORIES

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "bench" / "ingest" / "run.py"

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="needs a C compiler for bench/ingest/sender.c")


def test_quick_v9_imflow_counts_every_record(tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "--quick", "--versions", "v9", "--collectors", "imflow",
         "--rate", "300", "--duration", "1", "--records", "2000", "--no-sysctl", "--quiet-wait", "0",
         "--json", str(out)],
        check=False, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    [res] = result["results"]
    assert (res["collector"], res["version"]) == ("imflow", "v9")
    [trial] = res["trials"]
    assert not trial["error"], trial["error"]
    assert trial["sent"] > 0 and trial["errors"] == 0
    # every v9 datagram of the benchmark carries between 1 and 27 flow records
    assert trial["sent"] <= trial["records"] <= 27 * trial["sent"]
    assert trial["drops"] == 0
    assert trial["counted"] == trial["records"], (
        f"imflow stored {trial['counted']} flow records, the sender sent {trial['records']}")
    assert "imflow" in proc.stdout and "v9" in proc.stdout


def test_datagram_file_round_trip(tmp_path):
    sys.path.insert(0, str(HARNESS.parent))
    try:
        import datagrams as D
    finally:
        sys.path.remove(str(HARNESS.parent))
    import struct

    for version in ("v5", "v9", "ipfix"):
        built = D.build(version, 500)
        assert built.total_records >= 500 * (0.9 if version == "v5" else 1)
        per = 30 if version == "v5" else 27
        assert all(1 <= r <= per for r in built.records)
        path = tmp_path / f"{version}.bin"
        D.write(str(path), built)
        data = path.read_bytes()
        assert data[:4] == b"IMFB"
        _, count = struct.unpack_from("<II", data, 4)
        assert count == len(built.datagrams)
        off, seen = 12, 0
        for d, r in zip(built.datagrams, built.records):
            n, rec = struct.unpack_from("<HH", data, off)
            assert (n, rec) == (len(d), r)
            assert data[off + 4:off + 4 + n] == d
            off += 4 + n
            seen += rec
        assert off == len(data) and seen == built.total_records
        assert D.records_sent(built, len(built.datagrams) + 3) == built.total_records + sum(built.records[:3])


def test_searches_run_in_turn_and_find_each_capacity():
    """The search logic of the harness alone: each collector's trial is replaced by a model
    that passes exactly below its capacity (no sockets; what is tested is that the searches of
    several collectors go in turn and each brackets its own capacity within the tolerance)."""
    sys.path.insert(0, str(HARNESS.parent))
    try:
        import run as R
    finally:
        sys.path.remove(str(HARNESS.parent))

    capacity = {"fast": 120_000.0, "slow": 30_000.0}  # datagrams/s each one keeps up with
    order = []

    class Model:
        def __init__(self, name):
            self.name = name

    def trial(self, coll, version, target):
        order.append(coll.name)
        rate = target or 200_000.0  # unpaced: the sender's top speed
        sent = int(rate * 3)
        ok = rate <= capacity[coll.name]
        return R.Trial(coll.name, version, target, sent=sent, records=sent * 26, seconds=3.0,
                       counted=sent * 26 if ok else sent * 20, drops=0 if ok else 100)

    args = R.parse_args(["--versions", "v9", "--no-sysctl"])
    bench = R.Bench(args, Path("."), Path("sender"))
    bench.trial = trial.__get__(bench)
    results = bench.search_together([Model("fast"), Model("slow")], "v9", 600)
    # in turn while both search: fast, slow, fast, slow ...
    both = min(order.count("fast"), order.count("slow"))
    assert order[:2 * both] == ["fast", "slow"] * both
    for res in results:
        cap = capacity[res.collector]
        assert res.datagrams_per_s <= cap  # every confirmation passed, so it is below capacity
        assert res.datagrams_per_s >= cap / (1 + args.tolerance) ** 2 * 0.85, (res.collector, res.datagrams_per_s)
        assert len([t for t in res.trials if t.ok]) >= args.reps


def _kept_logs(stdout: str) -> list[str]:
    """The collector logs of a run made with --keep (and the kept folder removed)."""
    kept = Path(stdout.rsplit("# kept ", 1)[1].split()[0])
    try:
        return [p.read_text(errors="replace") for p in sorted(kept.glob("trial-*/collector.log"))]
    finally:
        shutil.rmtree(kept, ignore_errors=True)


def _sessions_at_stop(log: str) -> int:
    [line] = [ln for ln in log.splitlines() if "imflow stopped" in ln or "app: stopped:" in ln]
    return int(line.split(" sessions ", 1)[1].split()[0])


def test_senders_and_template_sessions_are_separate_sessions(tmp_path):
    """--senders 4 and --template-sessions 300: every record of the four senders is stored, and
    imflow saw 4 + 300 sessions (source ports and observation domains of their own), counted by
    imflow itself at exit, not by the harness."""
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "--versions", "ipfix", "--collectors", "imflow",
         "--rate", "400", "--duration", "1", "--reps", "1", "--records", "2000", "--no-sysctl",
         "--quiet-wait", "0", "--senders", "4", "--template-sessions", "300",
         "--template-announce-rate", "3000", "--keep", "--json", str(out)],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # a trial disturbed by other work runs once more (run.py): the JSON's trial is the last
    log = _kept_logs(proc.stdout)[-1]
    [trial] = json.loads(out.read_text())["results"][0]["trials"]
    assert not trial["error"], trial["error"]
    assert trial["drops"] == 0 and trial["errors"] == 0
    assert trial["counted"] == trial["records"] > 0
    # 300 announcements, then refreshes at 300/10 per second while the sender ran
    assert 300 <= trial["sessions_sent"] <= 300 + 30 * 10
    assert _sessions_at_stop(log) == 4 + 300, log[-600:]


def test_extra_configuration_joins_a_variants_config(tmp_path):
    """The harness's extra TOML (max_sessions for --template-sessions) is added to the config a
    variant passes (audit_cost.py's imflow-noaudit), not put beside it where the last --config
    would win; imflow accepts the result."""
    sys.path.insert(0, str(HARNESS.parent))
    try:
        import audit_cost  # noqa: F401  (registers imflow-noaudit)
        import procs as P
    finally:
        sys.path.remove(str(HARNESS.parent))
    coll = P.COLLECTORS["imflow-noaudit"]()
    coll.extra_toml = "[limits]\nmax_sessions = 10101\n"
    cmd = coll.full_command(tmp_path, 9999)
    assert cmd.count("--config") == 1
    conf = cmd[cmd.index("--config") + 1]
    text = Path(conf).read_text()
    assert "categories = []" in text and "max_sessions = 10101" in text
    check = subprocess.run([sys.executable, "-m", "collector", "check-config", conf], capture_output=True,
                           text=True, timeout=60, cwd=ROOT)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_audit_logs_drops_are_reported_and_add_up(tmp_path):
    """With `audit.max_pending` at 1,000, below what one batch of this rate brings, imflow's
    audit log drops watched flows; the harness reports imflow's own count of them (its stop
    line), and the count adds up: the audit log's stored rows and the dropped ones make the
    watched flows the rollups counted (every record is in the rollups all the same, so the
    trial passes)."""
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(HARNESS), "--versions", "v5", "--collectors", "imflow",
         "--rate", "3000", "--duration", "1", "--reps", "1", "--records", "6000", "--no-sysctl",
         "--quiet-wait", "0", "--imflow-toml", "[audit]\\nmax_pending = 1000", "--keep", "--json", str(out)],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    kept = Path(proc.stdout.rsplit("# kept ", 1)[1].split()[0])
    try:
        [trial] = json.loads(out.read_text())["results"][0]["trials"]
        assert not trial["error"] and trial["counted"] == trial["records"] > 0, trial
        [db] = sorted(kept.glob("trial-*/imflow.db"))[-1:]
        with contextlib.closing(sqlite3.connect(db)) as con:
            watched = con.execute(f"SELECT sum(flows) FROM rollup_1m WHERE category IN "
                                  f"({', '.join('?' * len(DEFAULT_CATEGORIES))})", DEFAULT_CATEGORIES).fetchone()[0]
            stored = con.execute("SELECT sum(rows) FROM audit_chunk").fetchone()[0]
    finally:
        shutil.rmtree(kept, ignore_errors=True)
    assert trial["audit_dropped"] > 0 and stored > 0
    assert stored + trial["audit_dropped"] == watched
    assert f"audit-dropped {trial['audit_dropped']:,}" in proc.stdout and "its audit log dropped" in proc.stdout
