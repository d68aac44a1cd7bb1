"""The flow audit log in SQLite (collector/store/audit.py): written with the rollups in one
transaction, bounded by rows and by age, migrated onto a version-1 database, and read back by
`query.flows` with filters whose expected answers are computed here with `ipaddress` and plain
Python over the rows the test wrote."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import shutil
import sqlite3
import struct
from collections import Counter
from pathlib import Path

import pytest

from collector.store import Store, StoreError, audit, query, schema, segments
from collector.store.rows import AuditRow
from tests.store.helpers import T0, row, run, table_contents

HOSTS = ["10.1.2.3", "10.1.2.77", "10.9.0.1", "192.168.5.5", "fd00::5", "fd00:1::9"]
PEERS = ["198.51.100.10", "198.51.100.200", "203.0.113.7", "192.0.2.1", "2001:db8:1::5", "2001:db8:1:ff::1",
         "2001:db8:2::1"]
SERVICES = [("msn", "im"), ("sip", "voip"), ("bittorrent", "p2p"), ("teams", "collab")]
EXPORTERS = ["192.0.2.250", "2001:db8::250"]


def make_rows(n: int, seed: int = 7, t0: float = T0) -> list[AuditRow]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        start = t0 + rnd.randrange(0, 3600 * 1000) / 1000
        end = start + rnd.randrange(0, 120 * 1000) / 1000
        service, category = rnd.choice(SERVICES)
        host, peer = rnd.choice(HOSTS), rnd.choice(PEERS)
        out.append(AuditRow(start, end, rnd.choice(EXPORTERS), host, peer, rnd.choice([1863, 5060, 49152, 6881]),
                            rnd.choice([443, 5060, 6881, 50000 + i % 7]), rnd.choice([6, 17]), service, category,
                            rnd.randrange(40, 10**7), rnd.randrange(1, 10**4), rnd.randrange(0, 4),
                            rnd.randrange(0, 4), rnd.choice(["in", "out", "none"])))
    return out


def write(db, batches, **kw) -> None:
    async def go():
        store = Store(str(db), **kw)
        await store.start()
        for rows, audit_rows in batches:
            await store.write(rows, [], audit_rows)
        await store.stop()
    run(go())


def as_tuple(r) -> tuple:
    """A row read back (dict) or written (AuditRow), times to the millisecond."""
    d = r._asdict() if isinstance(r, AuditRow) else dict(r)
    d["start"], d["end"] = round(d["start"] * 1000), round(d["end"] * 1000)
    return tuple(d[k] for k in AuditRow._fields)


ROWS = make_rows(2000)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("audit") / "imflow.db"
    write(path, [([row(T0)], ROWS[:700]), ([], ROWS[700:])])
    return path


def test_rows_read_back_as_written_in_time_order(db):
    got = query.flows(str(db), None, None, limit=None)
    want = sorted(ROWS, key=lambda r: (round(r.start * 1000), ROWS.index(r)))
    assert [as_tuple(r) for r in got] == [as_tuple(r) for r in want]
    assert set(got[0]) >= {"start", "end", "exporter", "host", "peer", "host_port", "peer_port", "proto", "service",
                           "category", "bytes", "packets"}


def _in(addr: str, nets: list[str]) -> bool:
    a = ipaddress.ip_address(addr)
    return any(a.version == n.version and a in n for n in (ipaddress.ip_network(x, strict=False) for x in nets))


@pytest.mark.parametrize("kw, keep", [
    ({"host": ["10.1.2.0/24"]}, lambda r: _in(r.host, ["10.1.2.0/24"])),
    ({"host": ["10.1.2.3", "fd00::/32"]}, lambda r: _in(r.host, ["10.1.2.3/32", "fd00::/32"])),
    ({"peer": ["2001:db8:1::/48"]}, lambda r: _in(r.peer, ["2001:db8:1::/48"])),
    ({"peer": ["198.51.100.128/25"], "proto": ["udp"]}, lambda r: _in(r.peer, ["198.51.100.128/25"]) and r.proto == 17),
    ({"port": ["5060"]}, lambda r: 5060 in (r.host_port, r.peer_port)),
    ({"port": ["443", "6881"], "proto": ["6"]}, lambda r: {443, 6881} & {r.host_port, r.peer_port} and r.proto == 6),
    ({"service": ["msn", "sip"]}, lambda r: r.service in ("msn", "sip")),
    ({"category": ["p2p"], "exporter": ["2001:db8::250"]}, lambda r: r.category == "p2p" and r.exporter == "2001:db8::250"),
    ({"host": ["0.0.0.0/0"]}, lambda r: ":" not in r.host),  # IPv4 networks never match IPv6 hosts
])
def test_filters_select_what_python_selects(db, kw, keep):
    got = query.flows(str(db), None, None, limit=None, **kw)
    want = [r for r in ROWS if keep(r)]
    assert 0 < len(want) < len(ROWS)
    assert sorted(as_tuple(r) for r in got) == sorted(as_tuple(r) for r in want)


def test_a_flow_is_listed_when_it_overlaps_the_period(db):
    lo, hi = T0 + 1000, T0 + 1300
    got = query.flows(str(db), lo, hi, limit=None)
    want = [r for r in ROWS if round(r.end * 1000) >= lo * 1000 and round(r.start * 1000) < hi * 1000]
    assert sorted(as_tuple(r) for r in got) == sorted(as_tuple(r) for r in want)


@pytest.mark.parametrize("sort, key", [("bytes", lambda r: -r.bytes), ("packets", lambda r: -r.packets),
                                       ("end", lambda r: round(r.end * 1000))])
def test_sort_and_limit(db, sort, key):
    got = query.flows(str(db), None, None, sort=sort, limit=25)
    assert len(got) == 25
    keys = [key(AuditRow(**r)) for r in got]
    assert keys == sorted(keys) and keys[-1] <= sorted(map(key, ROWS))[24]


def test_top_peer_networks_add_up_per_24_and_48(db):
    got = query.flows(str(db), None, None, by=("peer-net",), limit=None)
    want: dict[str, Counter] = {}
    hosts: dict[str, set] = {}
    for r in ROWS:
        net = str(ipaddress.ip_network(f"{r.peer}/{24 if '.' in r.peer else 48}", strict=False))
        want.setdefault(net, Counter()).update(bytes=r.bytes, packets=r.packets, flows=1)
        hosts.setdefault(net, set()).add(r.host)
    assert {g["peer-net"]: Counter(bytes=g["bytes"], packets=g["packets"], flows=g["flows"]) for g in got} == want
    assert {g["peer-net"]: g["hosts"] for g in got} == {k: len(v) for k, v in hosts.items()}
    assert [g["bytes"] for g in got] == sorted((g["bytes"] for g in got), reverse=True)
    total = sum(r.bytes for r in ROWS)
    assert sum(g["share_pct"] for g in got) == pytest.approx(100.0)
    assert got[0]["share_pct"] == pytest.approx(100.0 * got[0]["bytes"] / total)


def test_group_by_host_and_service_with_a_filter(db):
    got = query.flows(str(db), None, None, by=("host", "service"), category=["im", "voip"], limit=None)
    want: Counter = Counter()
    for r in ROWS:
        if r.category in ("im", "voip"):
            want[(r.host, r.service)] += r.bytes
    assert {(g["host"], g["service"]): g["bytes"] for g in got} == want


@pytest.mark.parametrize("kw", [{"host": ["10.1.2.300"]}, {"peer": ["nonsense/8"]}, {"port": ["70000"]},
                                {"proto": ["tcpx"]}, {"sort": "size"}, {"by": ("peer-net", "colour")},
                                {"by": ("peer-net",), "prefix": (20, 48)}, {"limit": 0},
                                {"host": ["10.0.0.1"] * 1001}])
def test_bad_arguments_are_value_errors(db, kw):
    with pytest.raises(ValueError):
        query.flows(str(db), None, None, **kw)


def test_the_row_bound_keeps_the_newest_whole_chunks(tmp_path):
    """Each flush of 300 rows is one chunk (the last one 100); at most 1000 rows are kept, the
    oldest chunks go whole: the newest ones that add up to at most 1000 stay (100 + 3 x 300)."""
    db = tmp_path / "imflow.db"
    rows = make_rows(2500, seed=3)
    write(db, [([], rows[i:i + 300]) for i in range(0, 2500, 300)], audit_max_rows=1000)
    got = query.flows(str(db), None, None, limit=None)
    assert sorted(as_tuple(r) for r in got) == sorted(as_tuple(r) for r in rows[-1000:])


def test_the_trim_does_not_write_the_pages_it_frees(tmp_path):
    """At the row bound each flush deletes the oldest chunks. The pages they free are reused
    as they are (SQLite's secure_delete FAST): the flush that drops some 2 MB of chunks writes
    a few pages to the WAL, not the 2 MB again as zeros (Debian's SQLite zeroes freed pages
    unless told otherwise). The WAL is empty at start (the last close checkpointed and removed
    it), so its size after the flush counts the pages that flush wrote. The chunks are in the
    database, as before schema version 4 put them in segment files (and as they stay in a
    database written before)."""
    db = tmp_path / "imflow.db"
    old, new = make_rows(60_000, seed=11), make_rows(500, seed=12, t0=T0 + 7200)
    write(db, [([], old)], page_size=16384, audit_segments=False)
    wal = Path(str(db) + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (stored,) = conn.execute("SELECT sum(length(data)) FROM audit_chunk").fetchone()
    assert stored > 1_500_000  # what the trim frees: a hundred pages and more
    frames = []

    async def go():
        store = Store(str(db), audit_max_rows=1000, audit_segments=False)
        await store.start()
        before = wal.stat().st_size if wal.exists() else 0
        await store.write([], [], new)
        frames.append((wal.stat().st_size - before) // (16384 + 24))
        await store.stop()
    run(go())
    got = query.flows(str(db), None, None, limit=None)
    assert sorted(as_tuple(r) for r in got) == sorted(as_tuple(r) for r in new)  # the trim happened
    assert frames[0] < stored // 16384 // 4, f"{frames[0]} pages written to drop {stored} octets"


def test_a_big_flush_is_cut_into_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(audit, "CHUNK_ROWS", 256)
    db = tmp_path / "imflow.db"
    write(db, [([], ROWS[:1000])], audit_max_rows=600)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert [n for (n,) in conn.execute("SELECT rows FROM audit_chunk ORDER BY id")] == [256, 232]
    got = query.flows(str(db), None, None, limit=None)
    assert sorted(as_tuple(r) for r in got) == sorted(as_tuple(r) for r in ROWS[512:1000])


def test_prune_deletes_rows_past_the_age_bound_only(tmp_path):
    db = tmp_path / "imflow.db"
    now = T0 + 30 * 86400
    old = make_rows(300, seed=4, t0=now - 9 * 86400)
    new = make_rows(300, seed=5, t0=now - 3 * 86400)

    async def go():
        store = Store(str(db), clock=lambda: now, audit_max_age=7 * 86400)
        await store.start()
        await store.write([], [], old)  # two flushes: two chunks
        await store.write([], [], new)
        await store.prune()
        await store.stop()
        return store.audit_pruned
    assert run(go()) == 300
    got = query.flows(str(db), None, None, limit=None)
    assert sorted(as_tuple(r) for r in got) == sorted(as_tuple(r) for r in new)


def test_a_failed_audit_insert_writes_no_rollup_either(tmp_path):
    """One transaction: SQLite itself refuses the audit rows (a trigger), and the rollups of the
    same flush are not written; the next write, once the fault is gone, writes both."""
    db = tmp_path / "imflow.db"
    write(db, [])
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON audit_chunk BEGIN SELECT RAISE(ABORT, 'refused'); END")
        conn.commit()

    async def go():
        store = Store(str(db))
        await store.start()
        try:
            with pytest.raises(StoreError):
                await store.write([row(T0 + 60)], [], ROWS[:10])
            async with store._conn.execute("DROP TRIGGER refuse"):
                pass
            await store.write([row(T0 + 60)], [], ROWS[:10])
        finally:
            await store.stop()
    run(go())
    assert table_contents(db, "minute") == {(T0 + 60, "192.0.2.1", "msn", "10.0.0.1"): (100, 2, 1)}
    assert len(query.flows(str(db), None, None, limit=None)) == 10


def _version_1(db) -> None:
    """A database as imflow with schema version 1 left it (its migration run by hand)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        for stmt in schema.MIGRATIONS[1]:
            conn.execute(stmt)
        conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
        conn.execute("INSERT INTO meta VALUES ('created_at', '2026-01-01T00:00:00+00:00')")
        conn.execute("INSERT INTO meta VALUES ('schema.1', '2026-01-01T00:00:00+00:00')")
        for table in ("rollup_1m", "rollup_1h", "rollup_1d"):
            conn.execute(f"INSERT INTO {table} VALUES (?, '192.0.2.1', 'msn', '10.0.0.1', 'im', 500, 5, 1, 0)", (T0,))
        conn.execute("PRAGMA user_version = 1")
        conn.commit()


def test_a_version_1_database_answers_rollups_and_is_migrated_at_start(tmp_path):
    db = tmp_path / "old.db"
    _version_1(db)
    assert query.top(str(db), None, None, by=("host",))[0]["bytes"] == 500
    with pytest.raises(StoreError) as err:
        query.flows(str(db), None, None)
    assert err.value.reason == "schema" and "start the imflow daemon once" in str(err.value)
    write(db, [([row(T0)], ROWS[:5])])
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    assert meta["created_at"] == "2026-01-01T00:00:00+00:00" and "schema.2" in meta
    assert table_contents(db, "minute") == {(T0, "192.0.2.1", "msn", "10.0.0.1"): (600, 7, 2)}
    assert sorted(as_tuple(r) for r in query.flows(str(db), None, None)) == sorted(map(as_tuple, ROWS[:5]))


def test_constant_columns_are_kept_in_the_header_and_come_back():
    rows = [r._replace(exporter="192.0.2.250", in_if=0) for r in make_rows(500, seed=12)]
    batch = audit.AuditBatch.from_rows(rows)
    data = batch.encode()
    assert len(data) < len(audit.AuditBatch.from_rows(make_rows(500, seed=12)).encode())
    assert [as_tuple(r) for r in audit.AuditBatch.decode(data)] == [as_tuple(r) for r in rows]


@pytest.mark.parametrize("where", ["segment", "database"])
@pytest.mark.parametrize("cut", [lambda d: d[:-1], lambda d: b"XXXX" + d[4:], lambda d: d[:10] + b"{" + d[11:]])
def test_a_damaged_chunk_is_a_clear_error(tmp_path, cut, where):
    db = tmp_path / "imflow.db"
    write(db, [([], ROWS[:50])], audit_segments=where == "segment")
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (data, seg, at, size) = conn.execute("SELECT data, segment, at, size FROM audit_chunk").fetchone()
        if where == "database":
            conn.execute("UPDATE audit_chunk SET data = ?", (cut(data),))
            conn.commit()
    if where == "segment":
        assert not data and at == 0
        path = Path(segments.directory(str(db))) / segments.name(seg)
        octets = path.read_bytes()
        assert len(octets) == size
        path.write_bytes(cut(octets))  # cut short: the segment ends before the chunk does
    with pytest.raises(ValueError, match="audit log: (a stored chunk cannot be read|segment .* ends before)"):
        query.flows(str(db), None, None)


def test_a_missing_segment_or_a_damaged_place_is_a_clear_error(tmp_path):
    """A copy of the database without its -audit directory, a segment cut short, an index row
    whose place is damaged: each a one-line error, no traceback, no huge read."""
    db = tmp_path / "imflow.db"
    write(db, [([], ROWS[:50]), ([], ROWS[50:90])])
    folder = Path(segments.directory(str(db)))
    (path,) = folder.iterdir()  # both flushes appended to the one segment of this run
    octets = path.read_bytes()
    path.write_bytes(octets[:-5])
    with pytest.raises(ValueError, match="ends before its chunk"):
        query.flows(str(db), None, None)
    path.write_bytes(octets)
    assert len(query.flows(str(db), None, None, limit=None)) == 90
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE audit_chunk SET size = ? WHERE id = 2", (1 << 40,))
        conn.commit()
    with pytest.raises(ValueError, match="place in segment .* is damaged"):
        query.flows(str(db), None, None)
    for seg in ("'x'", "-1", "1e30"):
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute(f"UPDATE audit_chunk SET size = 10, segment = {seg} WHERE id = 2")
            conn.commit()
        with pytest.raises(ValueError, match="segment number is damaged"):
            query.flows(str(db), None, None)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE audit_chunk SET segment = 1 WHERE id = 2")
        conn.commit()
    shutil.rmtree(folder)
    with pytest.raises(ValueError, match="is missing .* needs its -audit directory"):
        query.flows(str(db), None, None)


def test_segments_no_chunk_points_into_are_removed_after_their_grace(tmp_path, monkeypatch):
    """At the row bound the oldest chunks go, and a segment with none left goes too, but only
    once its grace has passed (a reader may have it open); the segment being appended to
    stays. What is left on disk is what the kept chunks need and the current segment."""
    monkeypatch.setattr(segments, "SEGMENT_OCTETS", 1)  # a segment per write
    monkeypatch.setattr(segments, "SWEEP_EVERY", 0.0)  # a sweep after every write
    db = tmp_path / "imflow.db"
    rows = make_rows(3000, seed=21)
    writes = [(1000.0 + k, rows[i:i + 500]) for k, i in enumerate(range(0, 3000, 500))]
    seen = _segments_after_writes(db, 1000, writes + [(1006 + segments.GRACE, rows[:1])])  # the last after the grace
    assert [len(s) for s in seen[:-1]] == [1, 2, 3, 4, 5, 6]  # within the grace, none went
    with contextlib.closing(sqlite3.connect(db)) as conn:
        kept = {s for (s,) in conn.execute("SELECT DISTINCT segment FROM audit_chunk")}
    on_disk = set(seen[-1])
    assert kept == {6, 7}  # segment N is the id of its first chunk: a chunk a write here
    assert on_disk == kept | {5}  # 1-4 waited out their grace; 5, freed by the last trim, waits
    assert sorted(as_tuple(r) for r in query.flows(str(db), None, None, limit=None)) == \
        sorted(as_tuple(r) for r in rows[2500:] + rows[:1])


def test_a_reader_keeps_its_snapshot_while_the_writer_removes_segments(tmp_path, monkeypatch):
    """`imflow flows` opens the segments of its snapshot as it starts: a trim and a sweep that
    remove them while it reads (grace 0 here) take nothing from its answer."""
    monkeypatch.setattr(segments, "SEGMENT_OCTETS", 1)
    monkeypatch.setattr(segments, "GRACE", 0.0)
    monkeypatch.setattr(segments, "SWEEP_EVERY", 0.0)
    db = tmp_path / "imflow.db"
    rows = make_rows(1200, seed=22)
    write(db, [([], rows[i:i + 300]) for i in range(0, 1200, 300)])
    conn = query.connect(str(db), need=2)
    try:
        chunks = audit.chunks_of(conn, audit._Filter(None, None, *[None] * 7))
        first = next(chunks)  # the snapshot taken, its segments open

        async def trim():
            store = Store(str(db), audit_max_rows=300)
            await store.start()
            await store.write([], [], make_rows(300, seed=23))
            await store.stop()
        run(trim())
        assert len(list(Path(segments.directory(str(db))).iterdir())) == 1  # the old ones went
        got = [r for b in [first, *chunks] for r in b]
    finally:
        conn.close()
    assert sorted(map(as_tuple, got)) == sorted(map(as_tuple, rows))


def test_one_ipv6_flow_does_not_widen_a_chunks_ipv4_addresses():
    """Format 2 keeps the rows that are not IPv4 apart: one IPv6 flow among IPv4 ones costs its
    own octets, not 12 more for every flow of the chunk (as format 1's 16-octet widths did)."""
    v4 = [r for r in make_rows(2000, seed=3) if ":" not in r.host + r.peer]
    mixed = v4 + [v4[0]._replace(host="fd00::5", peer="2001:db8:1::5")]
    v4_size = len(audit.AuditBatch.from_rows(v4).encode())
    assert len(audit.AuditBatch.from_rows(mixed).encode()) - v4_size < 64
    assert v4_size < 40 * len(v4)  # format 1 widened every address column to 8 octets for it
    for rows in (v4, mixed, mixed[::-1]):
        assert [as_tuple(r) for r in audit.AuditBatch.decode(audit.AuditBatch.from_rows(rows).encode())] == \
            [as_tuple(r) for r in rows]


FIXTURES = Path(__file__).parent / "fixtures"


def test_a_database_written_in_format_1_still_answers_and_takes_new_rows(tmp_path):
    """audit-format1.db was written by the imflow of 2026-12-04 (chunks in format 1, commit
    68f9786) from the rows in audit-format1.truth.json; today's reader answers the same rows,
    and a collector started on it appends format-2 chunks beside them."""
    db = tmp_path / "old.db"
    shutil.copy(FIXTURES / "audit-format1.db", db)
    truth = [AuditRow(**r) for r in json.loads((FIXTURES / "audit-format1.truth.json").read_text())]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert {bytes(d[8:8 + 40]).count(b'"format": 1') for (d,) in conn.execute("SELECT data FROM audit_chunk")} \
            == {1}
    assert sorted(as_tuple(r) for r in query.flows(str(db), None, None, limit=None)) == sorted(map(as_tuple, truth))
    new = make_rows(50, seed=99)
    write(db, [([], new)])
    assert open(db, "rb").read(18)[16:18] == (4096).to_bytes(2, "big")  # keeps its pages (docs/stores.md)
    assert sorted(as_tuple(r) for r in query.flows(str(db), None, None, limit=None)) == \
        sorted(map(as_tuple, truth + new))
    got = query.flows(str(db), None, None, host=["10.1.2.0/24"], sort="bytes", limit=5)
    want = sorted((r for r in truth + new if ipaddress.ip_address(r.host) in ipaddress.ip_network("10.1.2.0/24")),
                  key=lambda r: -r.bytes)[:5]
    assert [as_tuple(r) for r in got] == [as_tuple(r) for r in want]


@pytest.mark.parametrize("fmt", ["format1", "format2"])
def test_any_damage_to_a_chunk_decodes_or_is_the_clear_error(fmt):
    """Random octets overwritten, cut or inserted anywhere in a stored chunk (old format or new):
    `imflow flows` either reads some rows or says the chunk cannot be read, never a traceback."""
    if fmt == "format1":
        with contextlib.closing(sqlite3.connect(FIXTURES / "audit-format1.db")) as conn:
            (good,) = conn.execute("SELECT data FROM audit_chunk ORDER BY id LIMIT 1").fetchone()
    else:
        good = bytes(audit.AuditBatch.from_rows(make_rows(60, seed=4)).encode())
    rnd = random.Random(18)
    for _ in range(400):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            at = rnd.randrange(len(data))
            kind = rnd.randrange(3)
            if kind == 0:
                data[at] = rnd.randrange(256)
            elif kind == 1:
                del data[at:at + rnd.randint(1, 8)]
            else:
                data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        try:
            audit._decoded(bytes(data))
        except ValueError as exc:
            assert "audit log: a stored chunk cannot be read" in str(exc)


def _with_header(data: bytes, change) -> bytes:
    (n,) = struct.unpack_from("<I", data, 4)
    header = change(json.loads(data[8:8 + n]))
    text = json.dumps(header).encode()
    return data[:4] + struct.pack("<I", len(text)) + text + data[8 + n:]


def _set_column(name, base=None, count=None):
    def change(h):
        for c in h["columns"]:
            if c[0] == name:
                c[1] = c[1] if base is None else base
                c[3] = c[3] if count is None else count
        return h
    return change


@pytest.mark.parametrize("change", [
    _set_column("bytes", base=-1),  # a negative base for an unsigned column
    _set_column("bytes", base=1 << 70),
    _set_column("peer_x", count=1000),  # more values than rows
    lambda h: [h],  # a header that is not an object
    lambda h: {**h, "columns": 5},
    lambda h: {**h, "columns": [["bytes", 0, 3, 1]]},  # a width that is none
    lambda h: {**h, "rows": -1},
], ids=["negative-base", "huge-base", "count", "list", "columns-number", "width", "rows"])
def test_a_hostile_chunk_header_is_the_clear_error(change):
    rows = make_rows(40, seed=8) + [make_rows(1, seed=9)[0]._replace(peer="2001:db8:1::5")]
    data = _with_header(bytes(audit.AuditBatch.from_rows(rows).encode()), change)
    with pytest.raises(ValueError, match="audit log: a stored chunk cannot be read"):
        audit._decoded(data)


def test_the_writes_sweep_once_every_few_seconds(tmp_path, monkeypatch):
    """A sweep takes the event loop's turns, and a busy loop gives them late: the writes sweep
    at most once every SWEEP_EVERY seconds (by the writer's clock), so a trimmed segment goes
    after its grace and at the next sweep after that."""
    monkeypatch.setattr(segments, "SEGMENT_OCTETS", 1)
    db = tmp_path / "imflow.db"
    rows = make_rows(2400, seed=24)
    seen = _segments_after_writes(db, 500, [(t, rows[i * 400:(i + 1) * 400])
                                            for i, t in enumerate((1.0, 2.0, 31.0, 35.0, 45.0, 62.0))])
    # the store starts (a sweep) at 0; each write's chunk is a segment of its own, and the row
    # bound keeps the newest only. 1 and 2: no sweep due; 31: a sweep, segments 1 and 2 seen
    # unreferenced (their grace starts); 35: none due; 45: a sweep, 3 and 4 seen so, 1 and 2
    # within their grace; 62: a sweep, 1 and 2 past theirs and gone
    assert [len(s) for s in seen] == [1, 2, 3, 4, 5, 4]
    assert seen[-1] == [3, 4, 5, 6]


def _segments_after_writes(db, max_rows: int, writes) -> list[list[int]]:
    """One store, started at 0 by its segment writer's clock, writing (time, audit rows) in
    turn: the segment numbers on disk after each write."""
    now = [0.0]
    folder = Path(segments.directory(str(db)))
    after = []

    async def go():
        store = Store(str(db), audit_max_rows=max_rows)
        store.segments.clock = lambda: now[0]
        await store.start()
        for t, audit_rows in writes:
            now[0] = t
            await store.write([], [], audit_rows)
            after.append(sorted(int(p.name.split(".")[0]) for p in folder.iterdir()))
        await store.stop()
    run(go())
    return after
