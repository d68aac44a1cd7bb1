"""How each flow was classified, kept with the stored traffic (issue 19): the classifier's
method per flow through the aggregator (and a refused write's restore) into the method rollups
of a real SQLite store, read back by `imflow top --by service,method`. The truth is the method
the test names for each flow from public facts (Telegram's cidr.txt prefix, MSN's IANA port,
an answer the test put into the learned table, an application id the test mapped), not what
the classifier returned."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter

import numpy as np

from collector.aggregate import Aggregator
from collector.classify.catalogue import load_catalogue
from collector.classify.classifier import Classifier
from collector.dns.table import LearnedAddresses
from collector.netflow.batch import ADDR, FlowBatch, addr_from_str
from collector.store import Store

NOW = 1_764_000_000.0
APP = (13 << 56) | 453
# client, client port, server, server port, proto, app id, bytes -> the service and method expected
FLOWS = [
    (("10.0.0.1", 40001, "192.0.2.80", 443, 6, 0, 1000), ("signal", "dns")),  # answered for chat.signal.org
    (("10.0.0.2", 40002, "149.154.167.50", 443, 6, 0, 2000), ("telegram", "prefix")),  # cidr.txt 149.154.160.0/20
    (("10.0.0.1", 40003, "198.51.100.7", 1863, 6, 0, 3000), ("msn", "port")),  # IANA msnp
    (("10.0.0.3", 40004, "198.51.100.8", 443, 6, APP, 4000), ("teams", "app-id")),  # mapped by the test
    (("10.0.0.3", 40005, "198.51.100.9", 443, 6, 0, 5000), ("other", "none")),
    (("10.0.0.2", 40006, "192.0.2.80", 443, 6, 0, 600), ("signal", "dns")),
]


def batch_of(flows) -> FlowBatch:
    b = FlowBatch.empty(len(flows))
    for i, ((client, cport, server, sport, proto, app, nbytes), _) in enumerate(flows):
        b.src_addr[i], b.dst_addr[i] = addr_from_str(client), addr_from_str(server)
        b.src_port[i], b.dst_port[i], b.proto[i], b.app_id[i] = cport, sport, proto, app
        b.bytes[i], b.packets[i], b.end[i] = nbytes, 1, NOW
    return b


def test_methods_are_stored_and_read_back(tmp_path):
    cat = load_catalogue()
    learned = LearnedAddresses()
    learned.learn(*addr_from_str("192.0.2.80"), "signal", 300, NOW - 10)
    classifier = Classifier(cat, app_ids={APP: "teams"})
    classifier.learned_addresses = learned
    batch = batch_of(FLOWS)
    cls = classifier.classify_batch(batch, now=NOW)
    agg = Aggregator([s.id for s in cat.services], [s.category for s in cat.services])
    agg.add(batch, cls, np.zeros(len(FLOWS), np.uint32), ["192.0.2.1"], NOW)
    rows = agg.drain()
    agg.restore(rows)  # a refused write puts them back: the method must survive that
    rows = agg.drain()
    db = tmp_path / "imflow.db"

    async def write():
        store = Store(str(db), clock=lambda: NOW)
        await store.start()
        await store.write(rows)
        await store.stop()
    asyncio.run(write())
    p = subprocess.run([sys.executable, "-m", "collector", "top", "--db", str(db), "--since", "all",
                        "--by", "service,method", "--format", "json", "--limit", "0"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    got = {(r["service"], r["method"]): r["bytes"] for r in json.loads(p.stdout)}
    want = Counter()
    for (*_, nbytes), key in FLOWS:
        want[key] += nbytes
    assert got == dict(want)
    figures = agg.method_figures()["imflow_classified_bytes"][3]
    assert {(s, m): v for (s, _, m), v in figures.items()} == dict(want)


def test_method_with_host_is_refused_in_one_line(tmp_path):
    db = tmp_path / "imflow.db"

    async def make():
        store = Store(str(db), clock=lambda: NOW)
        await store.start()
        await store.stop()
    asyncio.run(make())
    p = subprocess.run([sys.executable, "-m", "collector", "top", "--db", str(db), "--since", "all",
                        "--by", "host,method"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "method" in p.stderr
