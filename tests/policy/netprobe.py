"""TCP listener and prober run inside test network namespaces (test_firewall_tools.py).

    python netprobe.py listen PORT...          accept and close connections until killed
    python netprobe.py probe SRC DST PORT ...  one triple per probe; prints a JSON list of
                                               booleans: did the connection open within 2 s

Probes run concurrently, so a handful of dropped connections cost one timeout, not several.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

TIMEOUT = 2.0


def listen(ports: list[int]) -> None:
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 too, as mapped
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(64)
        socks.append(s)
    for s in socks:
        threading.Thread(target=_accept, args=(s,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


def _accept(s: socket.socket) -> None:
    while True:
        conn, _ = s.accept()
        conn.close()


def probe(src: str, dst: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.bind((src, 0))
        try:
            s.connect((dst, port))
        except OSError:
            return False
        return True


def main(argv: list[str]) -> None:
    if argv[0] == "listen":
        listen([int(p) for p in argv[1:]])
    elif argv[0] == "probe":
        triples = [(argv[i], argv[i + 1], int(argv[i + 2])) for i in range(1, len(argv), 3)]
        with ThreadPoolExecutor(len(triples)) as pool:
            print(json.dumps(list(pool.map(lambda t: probe(*t), triples))))


if __name__ == "__main__":
    main(sys.argv[1:])
