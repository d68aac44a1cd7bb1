"""The sessions behind tests/fixtures: internal hosts (10/8, 192.168/16, fd00::/8) talking
to external ones on the ports of IM, P2P and VoIP services, and the softflowd runs that
export them. Shared by tests/fixtures/make_fixtures.py and the tests that re-run it."""

from __future__ import annotations

from .pcapgen import TCP, UDP, Session, write_udp_pcap

EXPORT_PORT = 2055  # where the fixture export captures say the datagrams went
T0 = 1_700_000_000.0


# (direction, IP length): 0 client to server, 1 back. Every length >= 46.
_HANDSHAKE = [(0, 60), (1, 60), (0, 52)]
_CLOSE = [(0, 52), (1, 52), (0, 52)]

# proto, client, server, client port, server port, start (s after T0), packets between the
# TCP handshake and close (UDP: all packets)
_NAMED = [
    # MSN Messenger, Yahoo! Messenger, AIM / ICQ (OSCAR), XMPP
    (TCP, "10.1.1.10", "198.51.100.10", 49152, 1863, 0.0, [(0, 180), (1, 320), (0, 96)]),
    (TCP, "10.1.1.11", "198.51.100.20", 49153, 5050, 0.3, [(0, 210), (1, 140)]),
    (TCP, "192.168.10.5", "203.0.113.30", 49154, 5190, 0.6, [(0, 120), (1, 640), (1, 1500)]),
    (TCP, "192.168.10.6", "203.0.113.40", 49155, 5222, 0.9, [(0, 300), (1, 90), (0, 90)]),
    # BitTorrent peer wire, then DHT over UDP
    (TCP, "10.1.1.12", "198.51.100.50", 49156, 6881, 1.2, [(0, 120)] + [(1, 1500)] * 3 + [(0, 52)]),
    (UDP, "10.1.1.12", "203.0.113.60", 6881, 6881, 1.5, [(0, 120), (1, 360), (0, 110), (1, 400)]),
    # SIP signalling; the external address is numerically lower than the internal one
    (UDP, "192.168.10.7", "192.0.2.70", 5060, 5060, 1.8, [(0, 540), (1, 420), (1, 680), (0, 430)]),
    # HTTPS to an address in a Telegram prefix (149.154.160.0/20)
    (
        TCP,
        "10.1.1.13",
        "149.154.167.50",
        49160,
        443,
        2.1,
        [(0, 517), (1, 1500), (1, 1200), (0, 80)],
    ),
    # IPv6: XMPP from a ULA host to a documentation-prefix server (IPv6 TCP needs >= 60 bytes)
    (TCP, "fd00::10", "2001:db8:1::5", 49170, 5222, 2.4, [(0, 200), (1, 350)]),
]
_V6_HANDSHAKE = [(0, 80), (1, 80), (0, 72)]
_V6_CLOSE = [(0, 72), (1, 72), (0, 72)]


def _session(proto, client, server, cport, sport, start, packets) -> Session:
    if proto == UDP:
        return Session(client, server, cport, sport, UDP, packets, start=T0 + start, gap=0.02)
    v6 = ":" in client
    packets = (_V6_HANDSHAKE if v6 else _HANDSHAKE) + packets + (_V6_CLOSE if v6 else _CLOSE)
    return Session(client, server, cport, sport, TCP, packets, start=T0 + start, gap=0.05)


IM_SESSIONS: list[Session] = [_session(*row) for row in _NAMED]
# BitTorrent DHT lookups: many small flows, so every export spans several datagrams and the
# later ones depend on templates sent in the first.
IM_SESSIONS += [
    _session(UDP, "10.1.1.12", f"198.51.100.{100 + i}", 6881, 6881 + i, 3.0 + i * 0.01,
             [(0, 100 + i), (1, 200 + 3 * i)])
    for i in range(60)
]  # fmt: skip

# fixture file stem -> softflowd arguments
SOFTFLOWD_VARIANTS: dict[str, list[str]] = {
    "softflowd-v5-a": ["-v", "5", "-a"],
    "softflowd-v9-a": ["-v", "9", "-a"],
    "softflowd-v10-A-milli": ["-v", "10", "-A", "milli"],
    "softflowd-v10-a": ["-v", "10", "-a"],
    "softflowd-v10-b-A-milli": ["-v", "10", "-b", "-A", "milli"],
}


def write_export_pcap(path, datagrams, start: float) -> None:
    """Store what softflowd.export returned as Ethernet/IPv4/UDP frames to
    127.0.0.1:EXPORT_PORT from the exporter's real source port, 1 ms apart from `start`
    (the arrival times on loopback are not reproducible, so they are not kept)."""
    write_udp_pcap(
        path,
        [
            (start + i / 1000, addr[0], addr[1], "127.0.0.1", EXPORT_PORT, payload)
            for i, (payload, addr) in enumerate(datagrams)
        ],
    )
