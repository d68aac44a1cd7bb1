"""The web page's cost: the time `imflow web` takes to answer each page (HTML, and a table as
CSV) over loopback, against the reader calls of the same page made directly (what `imflow top`
pays), on a store of HOSTS internal hosts x SERVICES services with a row every BIN seconds for
DAYS days. The difference is the page's own work: the thread pool, rendering and HTTP.

    python bench/web_pages.py [--hosts 500] [--services 12] [--days 7] [--bin 3600] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector import config as C
from collector.store import BinRow, Store
from collector.web import WebServer, site_of
from collector.web.pages import blockable

SERVICES = [("msn", "im"), ("xmpp", "im"), ("telegram", "im"), ("bittorrent", "p2p"), ("edonkey", "p2p"),
            ("sip", "voip"), ("zoom", "collab"), ("teams", "collab"), ("discord", "im"), ("skype", "voip"),
            ("yahoo", "im"), ("other", "other")]


def fill(path: str, hosts: int, services: int, days: int, width: int, now: float) -> int:
    start = int(now - days * 86400) // width * width
    bins = range(start, int(now), width)

    async def write():
        store = Store(path, clock=lambda: now)
        await store.start()
        n = 0
        for b in bins:
            rows = [BinRow(b, "192.0.2.1", sid, cat, f"10.{h // 250}.{h % 250}.1", 1000 + h * 7 + i, 10, 1)
                    for h in range(hosts) for i, (sid, cat) in enumerate(SERVICES[:services])]
            await store.write(rows)
            n += len(rows)
        await store.stop()
        return n
    return asyncio.run(write())


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hosts", type=int, default=500)
    ap.add_argument("--services", type=int, default=12)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--bin", type=int, default=3600, help="seconds between rows of a key (default 3600)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    now = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "imflow.db")
        t0 = time.perf_counter()
        n = fill(db, args.hosts, args.services, args.days, args.bin, now)
        print(f"store: {n:,} rows ({args.hosts} hosts x {args.services} services, every {args.bin} s for "
              f"{args.days} d) written in {time.perf_counter() - t0:.1f} s")
        cfg = C.validate({"web": {"max_rows": 500, "query_timeout": 600},  # measure, do not cut off
                          "policy": {"categories": {"p2p": "block"}}})
        site = site_of(cfg, db)
        r, since = site.reader, round(now - args.days * 86400, 3)
        blocked = blockable(site)
        direct = {
            "/": lambda: (r.top(since, None, by=("category", "service"), limit=10),
                          r.top(since, None, by=("host",), limit=None), r.usage(since, None, service=blocked),
                          r.time_range(), r.top(since, None, by=("hour", "category"), limit=None)),
            "/hosts": lambda: r.top(since, None, by=("host",), limit=500),
            "/host/10.0.7.1": lambda: (r.usage(since, None, host=["10.0.7.1"]), r.time_range(),
                                       r.top(since, None, by=("hour", "service"), host=["10.0.7.1"], limit=None)),
            "/service/bittorrent": lambda: (r.top(since, None, by=("host",), service=["bittorrent"], limit=500),
                                            r.time_range(), r.top(since, None, by=("hour",), service=["bittorrent"],
                                                                  limit=None)),
            "/violations": lambda: r.usage(since, None, service=blocked),
        }
        server = WebServer(site, "127.0.0.1:0")
        loop = asyncio.new_event_loop()
        loop.run_until_complete(server.start())
        import threading
        threading.Thread(target=loop.run_forever, daemon=True).start()
        query = f"?from={since:.3f}"  # the same start as the direct calls
        print(f"{'page':<24} {'page ms':>9} {'reader ms':>10} {'size kB':>8}")
        try:
            for path, fn in direct.items():
                url = server.url.rstrip("/") + path + query
                size = len(urllib.request.urlopen(url, timeout=60).read())
                page = median_ms(lambda u=url: urllib.request.urlopen(u, timeout=60).read(), args.repeat)
                reader = median_ms(fn, args.repeat)
                print(f"{path:<24} {page:>9.1f} {reader:>10.1f} {size / 1000:>8.1f}")
            url = server.url.rstrip("/") + "/hosts" + query + "&table=hosts&format=csv"
            print(f"{'/hosts CSV':<24} {median_ms(lambda: urllib.request.urlopen(url, timeout=60).read(), args.repeat):>9.1f}")
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
            loop.call_soon_threadsafe(loop.stop)


if __name__ == "__main__":
    main()
